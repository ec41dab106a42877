"""Recording a trial that ended: the ratchet's screen against the best (with the pooled
noise) and, once a screened trial's confirmation runs have all ended, its verdict; the
outcome in the store and the trial folder, the best branch moved when one is kept, the
worker told, MLflow fed, and a failure handed to auto-repair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nightlab import ratchet
from nightlab.agents import Worker
from nightlab.loop.confirm import Confirmations
from nightlab.loop.finishup import Finisher
from nightlab.loop.night import Night
from nightlab.loop.repair_queue import Repairs
from nightlab.store import folder, paths
from nightlab.trials import local


class Recorder:
    def __init__(
        self, night: Night, worker: Worker, finisher: Finisher, repairs: Repairs,
        confirmations: Confirmations, progress: Callable[[], None],
    ) -> None:  # fmt: skip
        self.night, self.worker, self.finisher, self.repairs = night, worker, finisher, repairs
        self.confirmations = confirmations
        self.progress = progress  # told after each recorded trial
        self.tracking: Any = None  # the MLflow mirror, once started
        self.pruning: Any = None  # the loop's Pruning: the lab's study hears how trials end
        self._tracking_gone = False

    def __call__(self, trial_id: int, trace: str, kind: str, out: local.Outcome) -> None:
        night = self.night
        best, verdict = night.best(), None
        out = self.finisher.screen(trial_id, kind, out)
        if kind in ("baseline", "confirm", "test"):
            label = {"confirm": "confirmation"}.get(kind, kind)
        elif out.status == "succeeded" and best is not None:
            verdict = ratchet.screen(night.cfg, out.objective, best, night.noise(),
                                     night.challengers(best.trial) + 1)  # fmt: skip
            label = verdict.verdict
        else:
            label = "discarded"
        row, line = night.journal.close_trial(trial_id, trace, out, label, verdict)
        night.forget()  # a recorded trial may have moved the best, the noise, what is due
        folder.finish(night.trial_dir(trial_id), row.record(trace), out.history)
        if label == "kept":
            night.ws.set_best(row.commit)
            night.notices.kept(trial_id, row.hypothesis, row.params, row.judgement)
        if kind in ("baseline", "trial"):
            if self.pruning is not None:
                self.pruning.ended(row)
            self.worker.observe(row)
        self.track(trial_id)
        night.report(line)
        if kind == "confirm":
            self.settle()
        if kind in ("baseline", "trial") and out.status == "failed":
            self.repairs.start(row, out)
        self.progress()

    def settle(self) -> None:
        """Judge the screened trials whose confirmation runs have all ended."""
        for trial_id, record in self.confirmations.settle():
            folder.write_json(self.night.trial_dir(trial_id) / paths.RESULT, record)
            self.track(trial_id)

    def track(self, trial_id: int) -> None:
        """Hand a recorded trial to the MLflow mirror (a screened one waits for its verdict)."""
        if not self.tracking:
            return
        self.tracking.submit(trial_id)
        if not self.tracking.alive() and not self._tracking_gone:
            self._tracking_gone = True
            self.night.report.warning(
                "MLflow: the tracking process has exited (see .nightlab/tracking.log); "
                "trials stay in the store and are logged next start"
            )
