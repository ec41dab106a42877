"""Recording a trial that ended: the ratchet's verdict against the best (with the noise
from the baseline), the outcome in the store and the trial folder, the best branch moved
when it was kept, the worker told, MLflow fed, and a failure handed to auto-repair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nightlab import ratchet
from nightlab.agents import Worker
from nightlab.loop.finishup import Finisher
from nightlab.loop.night import Night
from nightlab.loop.repair_queue import Repairs
from nightlab.store import folder
from nightlab.trials import local


class Recorder:
    def __init__(
        self, night: Night, worker: Worker, finisher: Finisher, repairs: Repairs,
        progress: Callable[[], None],
    ) -> None:  # fmt: skip
        self.night, self.worker, self.finisher, self.repairs = night, worker, finisher, repairs
        self.progress = progress  # told after each recorded trial
        self.tracking: Any = None  # the MLflow mirror, once started
        self._tracking_gone = False

    def __call__(self, trial_id: int, trace: str, kind: str, out: local.Outcome) -> None:
        night = self.night
        best, verdict = night.best(), None
        out = self.finisher.screen(trial_id, kind, out)
        if kind in ("baseline", "confirm", "test"):
            label = {"confirm": "confirmation"}.get(kind, kind)
        elif out.status == "succeeded" and best is not None:
            verdict = ratchet.judge(night.cfg, out.objective, best.objective, night.sigma())
            label = verdict.verdict
        else:
            label = "discarded"
        row, line = night.journal.close_trial(trial_id, trace, out, label, verdict)
        night.forget()  # a recorded trial may have moved the best or the noise
        folder.finish(night.trial_dir(trial_id), row.record(trace), out.history)
        if label == "kept":
            night.ws.set_best(row.commit)
        if kind in ("baseline", "trial"):
            self.worker.observe(row)
        if self.tracking:
            self.tracking.submit(trial_id)
            if not self.tracking.alive() and not self._tracking_gone:
                self._tracking_gone = True
                night.report(
                    "MLflow: the tracking process has exited (see .nightlab/tracking.log); "
                    "trials stay in the store and are logged next start"
                )
        night.report(line)
        if kind in ("baseline", "trial") and out.status == "failed":
            self.repairs.start(row, out)
        self.progress()
