"""The loop: the night on one page. Open (or resume) the night, then until a stop
condition: watch the slots, record what ended, and fill free slots with what runs next —
a retry after auto-repair, a confirmation run of a screened trial, a finish-up run, a
baseline repeat, or a worker cycle.

One process owns a lab at a time (the lock). Every state change is one transaction (the
journal); a heartbeat thread keeps the run's heartbeat fresh and hears `nightlab stop` and
`nightlab finishup`; MLflow is fed by a separate process. A loop that died is reconciled by
the next one: trials it left running are watched to their end (or recorded as killed) and
the night carries on.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlab.agents import make_mentor, make_worker
from nightlab.config import Config
from nightlab.loop import extras, opening
from nightlab.loop.baseline import Baseline
from nightlab.loop.budget import Budget
from nightlab.loop.confirm import WORKER as RATCHET
from nightlab.loop.confirm import Confirmations
from nightlab.loop.cycle import Cycles
from nightlab.loop.finish_request import FinishUp
from nightlab.loop.finishup import WORKER as FINISH_WORKER
from nightlab.loop.finishup import Done, Finisher
from nightlab.loop.heartbeat import Heartbeat
from nightlab.loop.journal import Journal
from nightlab.loop.library import Library
from nightlab.loop.lines import Lines
from nightlab.loop.lock import LabLock
from nightlab.loop.loop_job_signals import LoopJob
from nightlab.loop.night import Next, Night, NightError, Run
from nightlab.loop.notices import Notices
from nightlab.loop.notify import targets
from nightlab.loop.pruning import Pruning
from nightlab.loop.recording import Recorder
from nightlab.loop.repair_queue import Repairs
from nightlab.loop.slots import CHECK_S, POLL_S, Slots
from nightlab.store import history, kinds, read
from nightlab.store.db import Store, Trial
from nightlab.store.paths import LabPaths
from nightlab.trials import executor, sandbox
from nightlab.trials.workspace import Workspace

__all__ = ["Loop", "NightError"]

MAX_IDLE_CYCLES = 20
LOG = logging.getLogger(__name__)


class Loop:
    def __init__(
        self,
        lab: Path,
        cfg: Config,
        *,
        worker: str | None = None,
        max_trials: int | None = None,
        hours: float | None = None,
        slots: int | None = None,
        report: Callable[[str], None] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        finish: FinishUp | None = None,
    ) -> None:
        self.lab, self.cfg = Path(lab).resolve(), cfg
        self.worker_choice = worker or cfg.agents.worker
        extras.check(cfg, self.worker_choice)  # a missing extra fails before anything runs
        self.max_trials = max_trials if max_trials is not None else cfg.budget.max_trials
        self.hours = hours  # given for this run; else [budget] hours, unless resuming
        self.executor = executor.executor_for(cfg)  # a missing plugin fails here, at once
        self.notify_to = targets(cfg.notify.urls) if cfg.notify.urls else []  # so does a bad URL
        self.slot_count = slots or self.executor.slots
        self.report = Lines(report)  # also logged: `nightlab.loop` records
        self.progress = progress  # (trials ended, max_trials) after each recorded trial
        self.finish_request = finish  # from `run --finishup-minutes`: stored at start
        self.stop_reason: str | None = None
        self.report_top_k: int | None = None  # set when finish-up is done: the report is due
        self._graceful = threading.Event()  # stop after the running trials
        self.loop_job = LoopJob(self.executor.kind, self.report)  # under `start --slurm`
        self.stop_now, self._next_ask, self._ended = False, 0.0, False
        self._report: Path | None = None  # the report written when the night ended

    # ------------------------------------------------------------------ the night
    def run(self) -> dict[str, Any]:
        state = LabPaths(self.lab).state
        lock = LabLock(state)
        lock.acquire()
        store = Store(state / "state.db")
        journal = Journal(store, state, self.cfg.lab.name, self.cfg.objective.metric)
        try:
            self.loop_job.hold(self._signal)  # a loop job's signals: heard from open to close
            store.migrate()
            sandbox.require(self.cfg)
            ws = Workspace(self.lab, state, self.cfg.lab.name)
            for stale in ws.clear_stale_locks():
                self.report(f"removed a git lock a killed loop left behind: {stale}")
            if warning := sandbox.unsealed_warning(self.cfg):
                self.report.warning(warning)
            self.cfg = opening.knob_defaults(self.lab, self.cfg, store, self.report, ws)  # hydra
            self.night = Night(self.lab, self.cfg, store, journal, ws, self.report, self.slot_count)
            self._assemble(self.night)
            self._open(self.night)
            previous = self.loop_job.take(self._signal, signal.SIGTERM, signal.SIGINT)
            try:
                end = self._main()
            except NightError as exc:
                self.slots.kill_all(f"{kinds.INTERRUPTED}: {exc}")
                self._close("stopped", str(exc))
                raise
            finally:
                self.loop_job.give_back(previous)
            final = self._close(end, self.loop_job.why(end) or self.stop_reason or "")
            self.loop_job.requeue_if_due(self.lab, end)
            return final
        except BaseException as exc:
            if journal.run_id is not None:
                if not isinstance(exc, NightError):
                    self.night.notices.crashed(exc)
                try:  # best effort: the store may be what failed (a full disk)
                    self._close("crashed", f"{type(exc).__name__}: {exc}")
                except Exception as again:
                    LOG.error("could not close the run: %s", again)
            raise
        finally:
            store.close()
            lock.release()
            self.loop_job.release()

    def _assemble(self, night: Night) -> None:
        night.notices = Notices(night, self.notify_to)
        self.worker = make_worker(self.worker_choice, self.cfg, self.lab)
        mentor = None
        if self.cfg.agents.mentor:
            mentor = make_mentor(self.cfg.agents.mentor, self.cfg, self.lab)
        self.finisher = Finisher(night)
        self.repairs = Repairs(
            self.cfg, self.lab, night.state, night.store, night.journal, self.report
        )
        self.confirmations = Confirmations(night)
        self.budget = Budget(night, self.max_trials, self.finisher, self.repairs,
                             self.confirmations)  # fmt: skip
        self.record = Recorder(night, self.worker, self.finisher, self.repairs,
                               self.confirmations, self._progress)  # fmt: skip
        self.pruning = Pruning(night, None)
        self.record.pruning = self.pruning
        self.slots = Slots(night, self.executor, self.record, self.pruning)
        self.budget.running = self.slots.kinds
        self.baseline = Baseline(night)
        self.heartbeat = Heartbeat(night, self.finisher, self._graceful)
        self.cycles = Cycles(night, self.worker, mentor, self.budget, self.slots,
                             self.finisher, self._watch)
        library = Library(self.cfg, night.store, report=self.report)  # sources: on first use
        self.cycles.research.library = library  # the research action's searches
        view = self.cycles.lab_view()
        view.papers = library  # search_papers / read_paper, for the worker and the mentor
        self.worker.view = view
        if mentor is not None and hasattr(mentor, "view"):
            mentor.view = view

    def _open(self, night: Night) -> None:
        self.loop_job.resume(self, night.store)  # a loop job's restart: the clocks stand
        options = {"worker": self.worker_choice, "max_trials": self.max_trials,
                   "slots": self.slot_count, "hours": self.hours}
        if self.loop_job.job:
            options["loop_job"] = self.loop_job.job
        opening.open_run(night, self.hours, options)
        self.finisher.refresh()
        if self.finish_request is not None:
            self.finisher.save(self.finish_request)
        elif self.finisher.pending:
            self.report(self.finisher.request.describe(self.finisher.night_started))
        self.heartbeat.start()
        self.budget.load()
        self.pruning.open(self.worker)  # before reattach: re-attached trials report to it
        self.slots.reattach()
        self.record.settle()  # confirmations a dead loop had finished but not judged
        opening.rewrite_results(night)
        self.budget.load()  # without the trials it cut short
        self.repairs.resume(night.run_id)
        self.slots.open(opening.gpus(night), opening.trial_runs(night))
        night.ws.set_best(night.base())
        finished = night.store.trials(Trial.status != "running", Trial.kind != "test")  # held out
        self.worker.resume(finished, history.decisions_by(night.store, self.worker.name))
        night.journal.render_storyline()
        self.record.tracking = opening.start_tracking(night)  # the recorder feeds it
        if (limit := self.budget.limit_reached()) and not self.slots.running:
            self.report(
                f"nothing to do: {limit} (raise it, e.g. --max-trials "
                f"{self.budget.trials + 10}, or `nightlab reset` for a new night)"
            )
        self.report(f"run {night.run_id} started on {self.lab} (worker {self.worker.name}, "
                    f"{self.slot_count} slot(s), pid {os.getpid()})")
        night.notices.started(self.worker.name, self.slot_count, self.max_trials)

    def _main(self) -> str:
        slots, idle = self.slots, 0
        while True:
            slots.poll()
            self.repairs.collect()
            if self.loop_job.detach and not self.stop_now:
                return kinds.REQUEUED  # the trial jobs run on; the requeued loop re-attaches
            if self.stop_now:
                slots.kill_all(f"{kinds.INTERRUPTED}: stopped by the user", wait=False)
                self.stop_reason = self.stop_reason or "stopped now by the user"
            if self._graceful.is_set() and self.stop_reason is None:
                self.stop_reason = "stop requested"
            if slots.free and not self.stop_reason:
                self._check_limits()
            if self.stop_reason:
                if not slots.running:  # a repair still going is done again next start
                    return "stopped" if self._graceful.is_set() or self.stop_now else "finished"
            elif slots.free and time.time() >= self._next_ask:
                while slots.free and not self.stop_reason and not self.loop_job.detach:
                    step = self._next()  # a detach heard mid-launch takes no more trials
                    if step is not Next.STARTED:
                        if step is Next.IDLE:
                            self.night.notices.stall(self.cycles.stalled)
                            idle += 1  # ask again later, longer after each worker error
                            self._next_ask = time.time() + min(2.0**self.cycles.errors, 60.0)
                        break
                    idle = 0
                    self._check_limits()  # spent by that decision?
                if idle >= MAX_IDLE_CYCLES and not slots.running:
                    self.stop_reason = f"the worker made no runnable decision in {idle} cycles"
            if not slots.free and not self.stop_reason and self.baseline.done:
                self.cycles.plan()
            # wake the moment a trial ends or a thought is ready; else check limits each CHECK_S
            thinker = self.cycles.thinker
            wake = None if thinker.idle else thinker.fileno()
            if slots.running or wake is not None:
                slots.wait(CHECK_S, wake)
            else:
                time.sleep(min(max(self._next_ask - time.time(), POLL_S), CHECK_S))

    def _next(self) -> Next:
        """Fill one free slot: a retry, a confirmation, a finish-up run, a baseline repeat
        or a cycle."""
        if self.repairs.retries:
            return self._start_retry()
        if self.repairs.running and (not self.baseline.done or self.budget.at_max_trials()):
            return Next.WAIT  # a repaired trial runs in its failure's place, before anything new
        if self.finisher.room() and (confirmation := self.confirmations.next()) is not None:
            self._start(confirmation, RATCHET)  # a screened trial's runs before new work
            return Next.STARTED
        step: Run | Next | Done | None = Next.EXPLORE
        if self.finisher.active():
            step = self.finisher.step(self.slots.kinds(), self.baseline.complete())
        if step is Next.EXPLORE and self.budget.at_max_trials():
            return Next.WAIT  # no new idea; a running trial may yet need confirming
        if step is Next.EXPLORE and not self.baseline.done:
            waiting = {row.id for row, _ in self.repairs.retries}
            step = self.baseline.next(waiting) or Next.EXPLORE
        if step is Next.EXPLORE:
            step = self.cycles.next()
            self.stop_reason = self.cycles.stop_reason or self.stop_reason
        if isinstance(step, Done):
            self.report_top_k, self.stop_reason = step.top_k, "finish-up complete"
            return Next.IDLE
        if isinstance(step, Run):
            self._start(step)
            return Next.STARTED
        return step

    def _start(self, run: Run, worker: str | None = None) -> int:
        worker = worker or {"baseline": "baseline", "trial": self.worker.name}.get(
            run.kind, FINISH_WORKER
        )
        trial_id = self.slots.launch(run, worker)
        if run.kind in ("baseline", "trial"):  # finish-up runs do not count against max_trials
            self.budget.trials += 1
        if run.notes:
            self.night.event("spec_normalized", trial_id=trial_id, notes=list(run.notes))
            self.report(f"trial {trial_id}: {'; '.join(run.notes)}")
        return trial_id

    def _start_retry(self) -> Next:
        row, retry, decision = self.repairs.next_retry()
        new = self._start(Run(decision, row.kind, row.commit, row.seed))
        self.night.event("run_outcome_retry", run_id=self.night.run_id, trial_id=new,
                         retry_of=row.id, note=retry.note)  # fmt: skip
        return Next.STARTED

    def _progress(self) -> None:
        self.night.notices.stall(self.cycles.stalled)
        if self.progress:
            self.progress(self.budget.trials - len(self.slots.running), self.max_trials)

    def _watch(self) -> bool:
        """Called while admission waits (a smoke check): the running trials stay watched;
        False once the night must stop now."""
        self.slots.poll()
        return not (self.stop_now or self.loop_job.detach)

    def _check_limits(self) -> None:
        """A limit reached ends the night, or starts its finish-up when one is pending."""
        limit = self.budget.limit_reached()
        if limit:
            self.night.notices.budget(limit)
        if limit and self.finisher.pending and not self._graceful.is_set():
            self.finisher.forced = self.finisher.forced or limit
        else:
            self.stop_reason = limit

    # ------------------------------------------------------------------ signals, heartbeat
    def _signal(self, signum: int, _frame: Any) -> None:
        if self.loop_job.heard(signum):
            return
        if signum == signal.SIGINT and not self._graceful.is_set():
            self._graceful.set()
            self.report("stopping after the running trial(s); Ctrl-C again to kill them")
        else:
            self.stop_now = True

    def _close(self, state: str, reason: str) -> dict[str, Any]:
        """End this run once: release the worktrees and the MLflow mirror, record what an
        unused thought cost, close the run, write the report when due. The run is closed
        and the heartbeat stopped even when a release fails."""
        night = self.night
        if not self._ended:
            self._ended = True
            try:
                self.slots.close()
                if self.record.tracking:
                    self.record.tracking.close()
            finally:
                try:
                    self._close_run(state, reason)
                finally:
                    self.heartbeat.stop()
                    night.notices.ended(state, reason, self._report)  # flushed, bounded
        return read.status(night.store.path, self.cfg.lab.name)

    def _close_run(self, state: str, reason: str) -> None:
        night = self.night
        if unused := self.cycles.close():  # a decision made ahead but never used cost
            for usage in (unused.usage, unused.mentor_usage):
                if usage:
                    night.event("agent_usage", run_id=night.run_id, unused=True, **usage)
        left = night.journal.close_run(state, reason, mlflow=self.record.tracking is not None)
        if self.report_top_k or (
            state in ("finished", "stopped") and self.cfg.report.auto and self.budget.trials
        ):  # after the run is closed: the report tells how the night ended
            self._report = opening.write_report(night, self.report_top_k)
            self.finisher.reported(self._report)
        self.report(f"run {night.run_id} {state}: {reason}")
        if left:
            self.report(
                f"MLflow: {left} trial(s) not logged yet (see .nightlab/tracking.log); "
                "they are logged at the next start"
            )
