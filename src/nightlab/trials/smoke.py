"""Generated modules (`[trial] generated`): a module an agent writes is smoke-checked in a
subprocess before any trial uses it (see smoke_script.py for what each kind must do).

The check runs the code to be run, exported from its commit into a scratch folder, with
the training Python (`[repair] python`, default nightlab's), in the trial sandbox, under
`[smoke] timeout_seconds`; a module that fails is rejected with its error.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from nightlab.config import Config, matches
from nightlab.store.redact import trial_env
from nightlab.trials import process, sandbox, smoke_script
from nightlab.trials.workspace import Workspace


def written(cfg: Config, files: list[str]) -> list[str]:
    """The files among `files` that are generated modules."""
    return [f for f in files if matches(f, cfg.trial.generated)]


SCRIPT = "_nightlab_smoke.py"  # smoke_script.py's copy at the root of the exported code


def vet(
    cfg: Config,
    lab: Path,
    ws: Workspace,
    commit: str,
    files: list[str],
    tick: Callable[[], bool] = lambda: True,
) -> list[str]:
    """Smoke-check each generated module in `files` at `commit`; the reasons to reject
    (empty when all pass). `tick` is called while a check runs (the loop watches its
    trials there); when it returns False the check is abandoned and the module rejected."""
    modules = written(cfg, files)
    if not modules:
        return []
    state = lab / ".nightlab"
    scratch = Path(tempfile.mkdtemp(prefix="smoke-", dir=state if state.is_dir() else None))
    try:
        ws.export(commit, scratch)
        shutil.copyfile(smoke_script.__file__, scratch / SCRIPT)
        return [r for m in modules if (r := _check(cfg, lab, scratch, m, tick))]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check(
    cfg: Config, lab: Path, workdir: Path, module: str, tick: Callable[[], bool]
) -> str | None:
    kind = smoke_script.kind_of(module)
    fail = f"generated module {module} failed its smoke check ({kind})"
    opts = {
        "batch": cfg.smoke.batch,
        "input_shape": cfg.smoke.input_shape,
        "num_classes": cfg.smoke.num_classes,
    }
    python = cfg.repair.interpreter(lab)
    if python is None:
        return f"{fail}: [repair] python = {cfg.repair.python!r} is not an executable"
    argv = [python, SCRIPT, kind, module, json.dumps(opts)]
    env = {**trial_env(cfg), "PYTHONDONTWRITEBYTECODE": "1"}
    done = process.run(
        [*sandbox.prefix(cfg, lab, sandbox.smoke_box(cfg, lab, workdir)), *argv], cwd=workdir,
        env=env,
        timeout=cfg.smoke.timeout_seconds, apart=True, tick=tick,
    )  # fmt: skip
    if done.killed == "deadline":
        return f"{fail}: it ran past {cfg.smoke.timeout_seconds:g} s ([smoke] timeout_seconds)"
    if done.killed is not None:
        return f"{fail}: the night is stopping"
    if done.ok:
        return None
    lines = [line for line in done.errors.strip().splitlines() if line.strip()]
    why = lines[-1] if lines else f"the check exited with {done.exit_code} and said nothing"
    return f"{fail}: {why}"
