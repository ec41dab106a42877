"""The loop: the night on one page. Open (or resume) the night, then until a stop
condition: watch the slots, record what ended, and fill free slots with what runs next —
a retry after auto-repair, a finish-up run, a baseline repeat, or a worker cycle.

One process owns a lab at a time (the lock). Every state change is one transaction (the
journal); a heartbeat thread keeps the run's heartbeat fresh and hears `nightlab stop` and
`nightlab finishup`; MLflow is fed by a separate process. A loop that died is reconciled by
the next one: trials it left running are watched to their end (or recorded as killed) and
the night carries on.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlab import ratchet
from nightlab.agents import make_mentor, make_worker
from nightlab.agents.decision import Decision
from nightlab.config import Config
from nightlab.loop import opening
from nightlab.loop.baseline import Baseline
from nightlab.loop.budget import Budget
from nightlab.loop.cycle import Cycles
from nightlab.loop.finish_request import FinishUp
from nightlab.loop.finishup import WORKER as FINISH_WORKER
from nightlab.loop.finishup import Done, Finisher
from nightlab.loop.journal import Journal
from nightlab.loop.lock import LabLock
from nightlab.loop.night import Next, Night, NightError, Run
from nightlab.loop.repair_queue import Repairs
from nightlab.loop.slots import CHECK_S, POLL_S, Slots
from nightlab.store import folder, read
from nightlab.store.db import Store, Trial
from nightlab.store.redact import redact
from nightlab.trials import local, sandbox
from nightlab.trials.workspace import Workspace

__all__ = ["Loop", "NightError"]

HEARTBEAT_S = 2.0
MAX_IDLE_CYCLES = 20


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
        report: Callable[[str], None] = print,
        progress: Callable[[int, int | None], None] | None = None,
        finish: FinishUp | None = None,
    ) -> None:
        self.lab, self.cfg = Path(lab).resolve(), cfg
        self.worker_choice = worker or cfg.agents.worker
        self.max_trials = max_trials if max_trials is not None else cfg.budget.max_trials
        self.hours = hours  # given for this run; else [budget] hours, unless resuming
        ex = cfg.executor
        self.slot_count = slots or (ex.max_concurrent if ex.kind == "slurm" else None) or ex.slots
        self.report = lambda line: report(redact(line))
        self.progress = progress  # (trials ended, max_trials) after each recorded trial
        self.finish_request = finish  # from `run --finishup-minutes`: stored at start
        self.stop_reason: str | None = None
        self.stop_now = False
        self.report_top_k: int | None = None  # set when finish-up is done: the report is due
        self.tracking: Any = None
        self._graceful = threading.Event()  # stop after the running trials
        self._done = threading.Event()  # the run is over: the heartbeat ends
        self._next_ask = 0.0
        self._ended = False
        self._tracking_gone = False

    # ------------------------------------------------------------------ the night
    def run(self) -> dict[str, Any]:
        state = self.lab / ".nightlab"
        lock = LabLock(state)
        lock.acquire()
        store = Store(state / "state.db")
        journal = Journal(store, state, self.cfg.lab.name, self.cfg.objective.metric)
        self.night = None
        try:
            store.migrate()
            sandbox.require(self.cfg)
            ws = Workspace(self.lab, state, self.cfg.lab.name)
            for stale in ws.clear_stale_locks():
                self.report(f"removed a git lock a killed loop left behind: {stale}")
            self.night = Night(self.lab, self.cfg, store, journal, ws, self.report, self.slot_count)
            self._assemble(self.night)
            self._open(self.night)
            previous = signal.signal(signal.SIGTERM, self._signal), signal.signal(
                signal.SIGINT, self._signal)
            try:
                end = self._main()
            except NightError as exc:
                self.slots.kill_all(f"{local.INTERRUPTED}: {exc}")
                self._close("stopped", str(exc))
                raise
            finally:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])
            return self._close(end, self.stop_reason or "")
        except BaseException as exc:
            if journal.run_id is not None:
                try:  # best effort: the store may be what failed (a full disk)
                    self._close("crashed", f"{type(exc).__name__}: {exc}")
                except Exception as again:
                    print(f"nightlab: could not close the run: {again}", file=sys.stderr)
            raise
        finally:
            store.close()
            lock.release()

    def _assemble(self, night: Night) -> None:
        self.worker = make_worker(self.worker_choice, self.cfg, self.lab)
        mentor = make_mentor(self.cfg.agents.mentor, self.cfg, self.lab) if (
            self.cfg.agents.mentor) else None
        self.finisher = Finisher(night)
        self.repairs = Repairs(self.cfg, self.lab, night.state, night.store, night.journal,
                               self.report)
        self.budget = Budget(night, self.max_trials, self.finisher, self.repairs)
        self.slots = Slots(night, self._record)
        self.baseline = Baseline(night)
        self.cycles = Cycles(night, self.worker, mentor, self.budget, self.slots,
                             self.finisher, self._watch)
        if hasattr(self.worker, "view"):
            self.worker.view = self.cycles.lab_view()

    def _open(self, night: Night) -> None:
        options = {"worker": self.worker_choice, "max_trials": self.max_trials,
                   "slots": self.slot_count, "hours": self.hours}
        opening.open_run(night, self.hours, options)
        self.finisher.refresh()
        if self.finish_request is not None:
            self.finisher.save(self.finish_request)
        elif self.finisher.pending:
            self.report(self.finisher.request.describe(self.finisher.night_started))
        threading.Thread(target=self._beat, daemon=True, name="nightlab-heartbeat").start()
        self.budget.load()
        self.slots.reattach()
        opening.rewrite_results(night)
        self.budget.load()  # without the trials it cut short
        self.repairs.resume(night.run_id)
        self.slots.open(opening.gpus(night), opening.trial_runs(night))
        night.ws.set_best(night.base())
        finished = night.store.trials(Trial.status != "running")
        self.worker.resume(finished, night.journal.decisions_by(self.worker.name))
        night.journal.render_storyline()
        self.tracking = opening.start_tracking(night)
        if (limit := self.budget.limit_reached()) and not self.slots.running:
            self.report(
                f"nothing to do: {limit} (raise it, e.g. --max-trials "
                f"{self.budget.trials + 10}, or `nightlab reset` for a new night)"
            )
        self.report(f"run {night.run_id} started on {self.lab} (worker {self.worker.name}, "
                    f"{self.slot_count} slot(s), pid {os.getpid()})")

    def _main(self) -> str:
        slots, idle = self.slots, 0
        while True:
            slots.poll()
            self.repairs.collect()
            if self.stop_now:
                slots.kill_all(f"{local.INTERRUPTED}: stopped by the user", wait=False)
                self.stop_reason = self.stop_reason or "stopped now by the user"
            if self._graceful.is_set() and self.stop_reason is None:
                self.stop_reason = "stop requested"
            if slots.free and not self.stop_reason:
                self._check_limits()
            if self.stop_reason:
                if not slots.running:  # a repair still going is done again next start
                    return "stopped" if self._graceful.is_set() or self.stop_now else "finished"
            elif slots.free and time.time() >= self._next_ask:
                while slots.free and not self.stop_reason:
                    step = self._next()
                    if step is not Next.STARTED:
                        if step is Next.IDLE:
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
        """Fill one free slot: a retry, a finish-up run, a baseline repeat or a cycle."""
        if self.repairs.retries:
            return self._start_retry()
        if self.repairs.running and (not self.baseline.done or self.budget.at_max_trials()):
            return Next.WAIT  # a repaired trial runs in its failure's place, before anything new
        step: Run | Next | Done | None = Next.EXPLORE
        if self.finisher.active():
            step = self.finisher.step(self.slots.kinds(), self.baseline.complete())
        if step is Next.EXPLORE and not self.baseline.done:
            retried = {row.id for row, _ in self.repairs.retries} | self.night.journal.retried()
            step = self.baseline.next(retried) or Next.EXPLORE
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

    def _start(self, run: Run) -> int:
        worker = {"baseline": "baseline", "trial": self.worker.name}.get(run.kind, FINISH_WORKER)
        trial_id = self.slots.launch(run, worker)
        if run.kind in ("baseline", "trial"):  # finish-up runs do not count against max_trials
            self.budget.trials += 1
        if run.notes:
            self.night.event("spec_normalized", trial_id=trial_id, notes=list(run.notes))
            self.report(f"trial {trial_id}: {'; '.join(run.notes)}")
        return trial_id

    def _start_retry(self) -> Next:
        row, retry = self.repairs.retries.pop(0)
        body = {**self.night.journal.decision_body(row.decision_id), "params": retry.params}
        body.update(
            todo_new=[], resolve_todo_ids=[], notes_update=None, data_exploration_update=None,
            edits=[], rationale=f"retry of trial {row.id} after auto-repair: {retry.note}",
        )
        new = self._start(Run(Decision.model_validate(body), row.kind, row.commit, row.seed))
        self.night.event("run_outcome_retry", run_id=self.night.run_id, trial_id=new,
                         retry_of=row.id, note=retry.note)
        return Next.STARTED

    def _record(self, trial_id: int, trace: str, kind: str, out: local.Outcome) -> None:
        night = self.night
        best, verdict = night.best(), None
        out = self.finisher.screen(trial_id, kind, out)
        if kind in ("baseline", "confirm", "test"):
            label = {"confirm": "confirmation"}.get(kind, kind)
        elif out.status == "succeeded" and best is not None:
            verdict = ratchet.judge(self.cfg, out.objective, best.objective, night.sigma())
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
                self.report(
                    "MLflow: the tracking process has exited (see .nightlab/tracking.log); "
                    "trials stay in the store and are logged next start"
                )
        self.report(line)
        if kind in ("baseline", "trial") and out.status == "failed":
            self.repairs.start(row, out)
        if self.progress:
            self.progress(self.budget.trials - len(self.slots.running), self.max_trials)

    def _watch(self) -> bool:
        """Called while admission waits (a smoke check): the running trials stay watched;
        False once the night must stop now."""
        self.slots.poll()
        return not self.stop_now

    def _check_limits(self) -> None:
        """A limit reached ends the night, or starts its finish-up when one is pending."""
        limit = self.budget.limit_reached()
        if limit and self.finisher.pending and not self._graceful.is_set():
            self.finisher.forced = self.finisher.forced or limit
        else:
            self.stop_reason = limit

    # ------------------------------------------------------------------ signals, heartbeat
    def _signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and not self._graceful.is_set():
            self._graceful.set()
            self.report("stopping after the running trial(s); Ctrl-C again to kill them")
        else:
            self.stop_now = True

    def _beat(self) -> None:
        while not self._done.is_set():
            try:
                if self.night.journal.beat():
                    self._graceful.set()
                self.finisher.refresh()
            except Exception as exc:  # keep beating; the main thread reports store failures
                print(f"nightlab: heartbeat failed: {exc}", file=sys.stderr)
            self._done.wait(HEARTBEAT_S)

    def _close(self, state: str, reason: str) -> dict[str, Any]:
        night = self.night
        if self._ended:
            return read.status(night.store.path, self.cfg.lab.name)
        self._ended = True
        self.slots.close()
        if self.tracking:
            self.tracking.close()
        unused = self.cycles.close()
        if unused:  # a decision made ahead but never used still cost tokens
            with night.store.tx() as s:
                for usage in (unused.usage, unused.mentor_usage):
                    if usage:
                        Store.event(s, "agent_usage", run_id=night.run_id, unused=True, **usage)
        left = night.journal.close_run(state, reason, mlflow=self.tracking is not None)
        if self.report_top_k or (
            state in ("finished", "stopped") and self.cfg.report.auto and self.budget.trials
        ):  # after the run is closed: the report tells how the night ended
            self.finisher.reported(self._write_report(self.report_top_k))
        self._done.set()  # the heartbeat beats until the run is closed
        self.report(f"run {night.run_id} {state}: {reason}")
        if left:
            self.report(f"MLflow: {left} trial(s) not logged yet (see .nightlab/tracking.log); "
                        "they are logged at the next start")
        return read.status(night.store.path, self.cfg.lab.name)

    def _write_report(self, top_k: int | None = None) -> Path | None:
        """The morning report; a failure is recorded and reported, never fatal."""
        from nightlab.report import write_report

        try:
            where = write_report(self.lab, self.cfg, top_k=top_k or self.cfg.report.top_k)
        except Exception as exc:
            self.night.event("report_failed", run_id=self.night.run_id, error=f"{exc}"[:2000])
            self.report(f"the report could not be written: {type(exc).__name__}: {exc}")
            return None
        self.night.event("report_written", run_id=self.night.run_id, path=str(where))
        self.report(f"report: {where / 'final_paper_report.md'}")
        return where
