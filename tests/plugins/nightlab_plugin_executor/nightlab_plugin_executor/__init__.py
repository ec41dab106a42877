"""A nightlab executor plugin for the tests: trials run as the built-in `local` executor runs
them, and each is marked (a file `executor` in its folder, NIGHTLAB_EXECUTOR in its
environment), so a test can tell they went through the plugin."""

from __future__ import annotations

from nightlab.config import Config
from nightlab.trials.executor import Handle, Trial, TrialSpec
from nightlab.trials.local import LocalExecutor

KIND = "marked"


class MarkedExecutor:
    kind = KIND
    local_gpus = True

    def __init__(self, cfg: Config) -> None:
        self.local = LocalExecutor(cfg)
        self.slots = self.local.slots
        self.started: list[int] = []

    def start(self, spec: TrialSpec) -> Trial:
        spec.trial_dir.mkdir(parents=True, exist_ok=True)
        (spec.trial_dir / "executor").write_text(KIND)
        spec.env["NIGHTLAB_EXECUTOR"] = KIND
        self.started.append(spec.trial_id)
        return self.local.start(spec)

    def attach(self, spec: TrialSpec, handle: Handle, started_at: float) -> Trial | None:
        return self.local.attach(spec, handle, started_at)
