"""The loop: cycles of context → decide → gate → act → record, until a stop condition.

One process owns a lab at a time (a lock). The journal writes every state change as one
transaction; a heartbeat thread keeps the run's heartbeat fresh while trials run; MLflow is
fed by a separate process. A loop that died is reconciled by the next one: trials it left
running are watched to their end (or recorded as killed) and the night carries on.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nightlab import UserError, ratchet
from nightlab.agents import Worker, context, make_mentor, make_worker
from nightlab.agents.decision import Decision
from nightlab.agents.gate import GateResult
from nightlab.agents.tools import LabView
from nightlab.config import Config
from nightlab.loop.admission import admit
from nightlab.loop.finish_request import FinishUp
from nightlab.loop.finishup import EXPLORE, Finisher
from nightlab.loop.finishup import WORKER as FINISH_WORKER
from nightlab.loop.journal import Journal
from nightlab.loop.lock import LabLock
from nightlab.loop.repair_queue import Repairs
from nightlab.loop.thinking import Thinker, Thought
from nightlab.store import fmt, folder, read
from nightlab.store.db import Store, Trial
from nightlab.store.redact import redact
from nightlab.trials import launch, local, protect, sandbox, slurm, training_spec
from nightlab.trials.workspace import Workspace, WorkspaceError
from nightlab.trials.worktrees import WorktreePool

HEARTBEAT_S = 2.0
POLL_S = 0.01
CHECK_S = 0.1  # budget, hang and divergence checks of running trials
MAX_IDLE_CYCLES = 20

Best = tuple[float, int, str, dict]  # objective, trial, commit, params of the current base


class NightError(UserError):
    """The night cannot go on (e.g. the baseline fails); the message says why."""

    exit_code = 1


@dataclass
class Active:
    """A trial occupying a slot."""

    trial: local.RunningTrial
    trace: str  # its cycle's trace id
    kind: str  # baseline|trial
    tree: str  # its worktree; "" when re-attached from a loop that died


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
        self.lab = Path(lab).resolve()
        self.cfg = cfg
        self.state = self.lab / ".nightlab"
        self.worker_spec = worker or cfg.agents.worker
        self.max_trials = max_trials if max_trials is not None else cfg.budget.max_trials
        self.hours = hours  # given for this run; else [budget] hours, unless resuming
        ex = cfg.executor
        self.slurm = ex.kind == "slurm"
        self.slots = slots or (ex.max_concurrent if self.slurm else None) or ex.slots
        self.report = lambda line: report(redact(line))
        self.progress = progress  # (trials ended, max_trials) after each recorded trial
        self.running: dict[int, Active] = {}  # by slot
        self.stop_reason: str | None = None
        self.stop_now = False
        self.tracking: Any = None
        self._tracking_gone = False
        self.trees: WorktreePool | None = None
        self._graceful = threading.Event()  # stop after the running trials
        self._done = threading.Event()  # the run is over: the heartbeat ends
        self._ended = False
        self._next_ask = 0.0
        self._baseline_done = False
        self.thinker: Thinker | None = None
        self._view: dict[str, Any] = {}  # best and σ from the store, until the next record
        self._spent = {"tokens": 0, "usd": 0.0}
        self._worker_cycles = 0  # decisions the worker made in this run (mentor cadence)
        self._waits = 0  # cycles in a row that ran nothing
        self._errors = 0  # worker errors in a row (the backoff before asking again)
        self.mentor: Any = None
        self.finisher = Finisher(self)
        self._finish_request = finish  # from `run --finishup-minutes`: stored at start
        self.report_top_k: int | None = None  # set by finish-up: the report is due

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> dict[str, Any]:
        lock = LabLock(self.state)
        lock.acquire()
        self.store = Store(self.state / "state.db")
        self.journal = Journal(self.store, self.state, self.cfg.lab.name, self.cfg.objective.metric)
        self.repairs = Repairs(
            self.cfg, self.lab, self.state, self.store, self.journal, self.report
        )
        try:
            self.store.migrate()
            sandbox.require(self.cfg)
            self.ws = Workspace(self.lab, self.state, self.cfg.lab.name)
            for stale in self.ws.clear_stale_locks():
                self.report(f"removed a git lock a killed loop left behind: {stale}")
            self.worker: Worker = make_worker(self.worker_spec, self.cfg, self.lab)
            if hasattr(self.worker, "view"):
                self.worker.view = self._lab_view()
            if self.cfg.agents.mentor:
                self.mentor = make_mentor(self.cfg.agents.mentor, self.cfg, self.lab)
            self.thinker = Thinker(self.worker, self.mentor, self.cfg)
            self._begin()
            previous = (
                signal.signal(signal.SIGTERM, self._signal),
                signal.signal(signal.SIGINT, self._signal),
            )
            try:
                state = self._main()
            except NightError as exc:
                self._kill_all(f"{local.INTERRUPTED}: {exc}")
                self._end("stopped", str(exc))
                raise
            finally:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])
            return self._end(state, self.stop_reason or "")
        except BaseException as exc:
            if self.journal.run_id is not None:
                try:  # best effort: the store may be what failed (a full disk)
                    self._end("crashed", f"{type(exc).__name__}: {exc}")
                except Exception as again:
                    print(f"nightlab: could not close the run: {again}", file=sys.stderr)
            raise
        finally:
            self.store.close()
            lock.release()

    def _begin(self) -> None:
        with self.store.tx() as s:
            base = Store.get_meta(s, "base_commit")
            resumed = base is not None
            if not resumed:  # a new night starts from the lab's working tree as it is now
                base = self.ws.snapshot()
                self._check_spec(base)  # before the night is recorded: the fix is a re-run
                Store.set_meta(s, "base_commit", base)
                Store.set_meta(s, "night_id", uuid.uuid4().hex)
                Store.event(s, "snapshot", commit=base)
            else:
                self._check_spec(base, quiet=True)  # [spec] may have changed since
            self.night_id = Store.get_meta(s, "night_id")
        if resumed and self.ws.changed_since(base):
            self.report(
                "note: this night continues from the code as it was when it began; your "
                "changes since then are not used (`nightlab reset` starts a new night "
                "from them)"
            )
        self.base_commit = base
        with self.store.tx() as s:  # hashed when the night began; a resumed night keeps them
            self.protected = Store.get_meta(s, "protected_sha256")
            if self.protected is None:
                self.protected = protect.fingerprint(self.ws, base, self.cfg.trial.protected)
                Store.set_meta(s, "protected_sha256", self.protected)
        options = {
            "worker": self.worker_spec,
            "max_trials": self.max_trials,
            "slots": self.slots,
            "hours": self.hours,
        }
        self.run_id, self.deadline = self.journal.open_run(
            self.hours, self.cfg.budget.hours, options
        )
        self.finisher.refresh()
        if self._finish_request is not None:
            self.finisher.save(self._finish_request)
        elif self.finisher.pending:
            self.report(self.finisher.request.describe(self.finisher.night_started))
        threading.Thread(target=self._beat, daemon=True, name="nightlab-heartbeat").start()
        self._trials_total = self.journal.trial_count()
        with read.connect(self.store.path) as conn:
            spent = read.usage(conn)  # the budget is the night's, across restarts
        self._spent = {
            "tokens": spent["input_tokens"] + spent["output_tokens"],
            "usd": spent["usd"] or 0.0,
        }
        self._reconcile()
        self._rewrite_results()
        self._trials_total = self.journal.trial_count()  # without the trials it cut short
        self.repairs.resume(self.run_id)
        given = self.cfg.executor.gpus
        self.gpus = (
            [str(g) for g in given]
            if given is not None
            else launch.detect_gpus(
                self.cfg.executor.gpus_per_trial > 0, self.cfg.repair.interpreter(self.lab)
            )
        )
        self.data = folder.fingerprint(self.lab, self.cfg.trial.share)
        if self.gpus:
            k = max(1, self.cfg.executor.gpus_per_trial)
            shared = " (more slots than GPU groups: some share)" if self.slots * k > len(
                self.gpus) else ""  # fmt: skip
            self.report(f"GPUs {', '.join(self.gpus)}: {k} per slot (CUDA_VISIBLE_DEVICES){shared}")
        self.trees = WorktreePool(
            self.ws, self.cfg.trial.share, busy={a.tree for a in self.running.values() if a.tree}
        )
        best = self._best()
        self.ws.set_best(best[2] if best else self.base_commit)
        finished = self.store.trials(Trial.status != "running")
        self.worker.resume(finished, self.journal.decisions_by(self.worker.name))
        self.journal.render_storyline()
        if self.cfg.tracking.enabled and self.cfg.tracking.trial_run:
            from nightlab.tracking import trial_run

            if error := trial_run.prepare(self._mlflow_opts()):
                raise NightError(
                    f"[tracking] trial_run: the MLflow store could not be prepared: {error}. "
                    "Fix the store or server, or set [tracking] trial_run = false"
                )
        self.tracking = self._start_tracking()
        if (limit := self._limit_reached()) and not self.running:
            self.report(
                f"nothing to do: {limit} (raise it, e.g. --max-trials "
                f"{self._trials_total + 10}, or `nightlab reset` for a new night)"
            )
        self.report(
            f"run {self.run_id} started on {self.lab} (worker {self.worker.name}, "
            f"{self.slots} slot(s), pid {os.getpid()})"
        )

    def _end(self, state: str, reason: str) -> dict[str, Any]:
        if self._ended:
            return read.status(self.store.path, self.cfg.lab.name)
        self._ended = True
        if self.trees:
            self.trees.close()
        if self.tracking:
            self.tracking.close()
        unused = self.thinker.close() if self.thinker else None
        if unused:  # a decision made ahead but never used still cost tokens
            with self.store.tx() as s:
                for usage in (unused.usage, unused.mentor_usage):
                    if usage:
                        Store.event(s, "agent_usage", run_id=self.run_id, unused=True, **usage)
        left = self.journal.close_run(state, reason, mlflow=self.tracking is not None)
        if self.report_top_k or (
            state in ("finished", "stopped") and self.cfg.report.auto and self._trials_total
        ):  # after the run is closed: the report tells how the night ended
            self.finisher.reported(self.write_report(self.report_top_k))
        self._done.set()  # the heartbeat beats until the run is closed
        self.report(f"run {self.run_id} {state}: {reason}")
        if left:
            self.report(
                f"MLflow: {left} trial(s) not logged yet (see .nightlab/tracking.log); "
                "they are logged at the next start"
            )
        return read.status(self.store.path, self.cfg.lab.name)

    def _signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and not self._graceful.is_set():
            self._graceful.set()
            self.report("stopping after the running trial(s); Ctrl-C again to kill them")
        else:
            self.stop_now = True

    def _beat(self) -> None:
        while not self._done.is_set():
            try:
                if self.journal.beat():
                    self._graceful.set()
                self.finisher.refresh()
            except Exception as exc:  # keep beating; the main thread reports store failures
                print(f"nightlab: heartbeat failed: {exc}", file=sys.stderr)
            self._done.wait(HEARTBEAT_S)

    def _mlflow_opts(self) -> dict[str, Any]:
        from nightlab.tracking.mirror import default_uri

        return {
            "uri": self.cfg.tracking.mlflow_uri or default_uri(self.state),
            "experiment": self.cfg.tracking.experiment or self.cfg.lab.name,
            "artifacts": str(self.state / "mlartifacts"),
            "night": self.night_id,
        }

    def _start_tracking(self) -> Any:
        if not self.cfg.tracking.enabled:
            return None
        from nightlab.tracking.mirror import TrackingProcess

        opts = self._mlflow_opts()
        return TrackingProcess(
            self.store.path,
            opts["uri"],
            opts["experiment"],
            Path(opts["artifacts"]),
            self.state / "tracking.log",
            self.night_id,
        )

    # ------------------------------------------------------------------ main loop
    def _main(self) -> str:
        idle = 0
        while True:
            for slot in list(self.running):
                self._poll(slot)
            self.repairs.collect()
            if self.stop_now:
                self._kill_all(f"{local.INTERRUPTED}: stopped by the user", wait=False)
                self.stop_reason = self.stop_reason or "stopped now by the user"
            if self._graceful.is_set() and self.stop_reason is None:
                self.stop_reason = "stop requested"
            free = len(self.running) < self.slots
            if free and not self.stop_reason:
                self._check_limits()
            if self.stop_reason:
                if not self.running:  # a repair still going is done again next start
                    return "stopped" if self._graceful.is_set() or self.stop_now else "finished"
            elif free and time.time() >= self._next_ask:
                while len(self.running) < self.slots and not self.stop_reason:
                    started = self._next()
                    if not started:
                        if started is False:
                            idle += 1
                            # ask again later, no spin; longer after each worker error
                            self._next_ask = time.time() + min(2.0**self._errors, 60.0)
                        break
                    idle = 0
                    self._check_limits()  # spent by that decision?
                if idle >= MAX_IDLE_CYCLES and not self.running:
                    self.stop_reason = f"the worker made no runnable decision in {idle} cycles"
            if len(self.running) >= self.slots and not self.stop_reason:
                self._plan()
            # wake the moment a trial ends or a thought is ready; else check limits each CHECK_S
            wake = None if self.thinker.idle else self.thinker.fileno()
            if self.running or wake is not None:
                local.wait_any([a.trial for a in self.running.values()], CHECK_S, wake)
            else:
                time.sleep(min(max(self._next_ask - time.time(), POLL_S), CHECK_S))

    def _kill_all(self, reason: str, wait: bool = True) -> None:
        for active in self.running.values():
            active.trial.kill("killed", reason)
        while wait and self.running:
            for slot in list(self.running):
                self._poll(slot)
            time.sleep(POLL_S)

    def _check_limits(self) -> None:
        """A limit reached ends the night, or starts its finish-up when one is pending."""
        limit = self._limit_reached()
        if limit and self.finisher.pending and not self._graceful.is_set():
            self.finisher.forced = self.finisher.forced or limit
        else:
            self.stop_reason = limit

    def _at_max_trials(self) -> bool:
        return self.max_trials is not None and self._trials_total >= self.max_trials

    def _limit_reached(self) -> str | None:
        if self.deadline and time.time() >= self.deadline:
            return "time budget reached"
        if (ends := self.finisher.ends()) and time.time() >= ends:
            return "the finish-up deadline is reached"
        if (
            self._at_max_trials()
            and not self.repairs.busy  # a repaired trial still runs in its failure's place
        ):
            return f"max_trials={self.max_trials} reached"
        budget = self.cfg.budget
        if budget.max_tokens is not None and self._spent["tokens"] >= budget.max_tokens:
            return f"max_tokens={budget.max_tokens} reached ({self._spent['tokens']} used)"
        if budget.max_usd is not None and self._spent["usd"] >= budget.max_usd:
            return f"max_usd={budget.max_usd:g} reached (${self._spent['usd']:.4f} spent)"
        target, best = self.cfg.objective.target, self._best()
        if target is not None and best and not self.cfg.better(target, best[0]):
            return f"target {target:g} reached"
        return None

    def _next(self) -> bool | None:
        """Start one trial on a free slot: True started, False idle cycle, None wait."""
        if self.repairs.retries:
            self._start_retry()
            return True
        if self.repairs.running and (not self._baseline_done or self._at_max_trials()):
            return None  # a repaired trial runs in its failure's place, before anything new
        if self.finisher.active():
            step = self.finisher.step()
            if step != EXPLORE:
                return step  # type: ignore[return-value]
        if self._baseline_done:
            return self._cycle()
        retried = {row.id for row, _ in self.repairs.retries} | self.journal.retried()
        rows = [r for r in self.journal.baseline_states() if r[0] not in retried]
        done = sum(1 for _, st, _ in rows if st == "succeeded")
        live = sum(1 for _, st, _ in rows if st == "running")
        fatal = [
            (i, r)
            for i, st, r in rows
            if st in ("failed", "timeout")
            or (st == "killed" and not (r or "").startswith(local.INTERRUPTED))
        ]
        if fatal:
            (tid, why), log = fatal[0], self.state / "trials" / str(fatal[0][0])
            raise NightError(
                f"the baseline trial {tid} failed ({why}); see {log}/stderr.log, "
                "make the command run with the default parameters, then start a new night: "
                f"nightlab reset {self.lab} && nightlab run {self.lab}"
            )
        repeats = self.cfg.ratchet.baseline_repeats
        if done + live < repeats:
            seed = self.cfg.trial.seed + len(rows)
            decision = Decision(
                action="run",
                rationale=f"baseline repeat {len(rows) + 1}: defaults, unmodified code, "
                f"seed {seed} (measures the noise)",
                hypothesis="the defaults as they are",
                params=self.cfg.defaults(),
            )
            self._start(decision, "baseline", self.base_commit, seed=seed)
            return True
        if done < repeats:
            return None  # the noise estimate is not ready yet
        self._baseline_done = True
        return self._cycle()

    # ------------------------------------------------------------------ cycles
    def _context(self, full: bool) -> dict[str, Any]:
        context = {
            "objective": self.cfg.objective.model_dump(),
            "best": None
            if (b := self._best()) is None
            else {"objective": b[0], "trial": b[1], "params": b[3]},
            "in_flight": [a.trial.spec.trial_id for a in self.running.values()],
            "deadline": self.deadline,
            "finishup": self.finisher.context(),
        }
        return {**context, **self._full_context()} if full else context

    def _think(self) -> None:
        """Start the worker's next decision (in the background for slow workers); the
        mentor reviews it every mentor_every worker cycles, or when the night stalls with
        nothing running (never while a trial is mid-execution)."""
        review = None
        if self.mentor is not None:
            self._worker_cycles += 1
            agents = self.cfg.agents
            every, kind = agents.mentor_every, "the regular review"
            if agents.interaction_mode == "builder_health_helper":
                every, kind = agents.mentor_health_every, "a health check of the Builder"
            why = f"{kind} (every {every} cycles)" if self._worker_cycles % every == 0 else None
            if why is None and not self.running:
                why = self._stalled()
            if why is not None:
                review = (why, context.render(self._context(full=True)))
        self.thinker.start(self._context(getattr(self.worker, "wants_context", False)), review)

    def _charge(self, usage: dict[str, Any] | None) -> dict[str, Any] | None:
        """Count an agent call against the night's token and $ budget."""
        if usage:
            self._spent["tokens"] += usage["input_tokens"] + usage["output_tokens"]
            self._spent["usd"] += usage["usd"] or 0.0
        return usage

    def _reviewed(self, thought: Thought) -> Decision:
        """The decision after the mentor's review: its replacement runs when it judged the
        night off track and mentor_apply_suggestions is on."""
        decision = thought.decision
        assert isinstance(decision, Decision)
        review, usage = thought.review, self._charge(thought.mentor_usage)
        if thought.why is None:
            return decision
        if isinstance(review, Exception):
            with self.store.tx() as s:
                Store.event(s, "mentor_error", run_id=self.run_id, error=f"{review}"[:2000])
                if usage:
                    Store.event(s, "agent_usage", run_id=self.run_id, role="mentor", **usage)
            return decision
        replace = (
            review.verdict == "off_track"
            and review.replacement is not None
            and self.cfg.agents.mentor_apply_suggestions
        )
        self.journal.mentor(review, thought.why, usage, replaced=replace)
        self.report(
            f"mentor: {review.verdict} ({thought.why}) — {review.critique[:200]}"
            + (" — its replacement runs" if replace else "")
        )
        return review.replacement if replace else decision

    def _stalled(self) -> str | None:
        k = self.cfg.agents.stall_trials
        with read.connect(self.store.path) as conn:
            recent = conn.execute(
                "SELECT status, verdict FROM trials WHERE kind='trial' AND status != 'running' "
                "ORDER BY ended_at DESC LIMIT ?",
                (max(k, 3),),
            ).fetchall()
        if len(recent) >= k and not any(v == "kept" for _, v in recent[:k]):
            return f"stalled: no trial kept in the last {k}"
        if len(recent) >= 3 and all(st != "succeeded" for st, _ in recent[:3]):
            return "stalled: the last 3 trials failed"
        if self._waits >= 5:
            return f"stalled: {self._waits} cycles in a row ran nothing"
        return None

    def _full_context(self) -> dict[str, Any]:
        """What an LLM worker reads each cycle (see agents/context.py)."""
        left = None if self.max_trials is None else self.max_trials - self._trials_total
        return context.gather(
            self.cfg,
            self.lab,
            self.store.path,
            trials_left=left,
            deadline=self.deadline,
            sigma=self._view.get("sigma", 0.0),
            stalled=self._stalled(),
            in_flight=[
                {"trial": a.trial.spec.trial_id, "kind": a.kind} for a in self.running.values()
            ],
        )

    def _lab_view(self) -> LabView:
        """The worker's read-only window on the lab: files at the current best code."""

        def base() -> str:
            best = self._best()
            return best[2] if best else self.base_commit

        def trial_file(trial: int, name: str) -> str | None:
            path = self.state / "trials" / str(int(trial)) / name
            return path.read_text(errors="replace") if path.is_file() else None

        return LabView(
            files=lambda: self.ws.files(base()),
            read=lambda p: self.ws.read(base(), p) if self.ws.exists(base(), p) else None,
            editable=self.cfg.editable_files,
            leaderboard=lambda k: read.leaderboard(
                self.store.path, self.cfg.objective.direction, k
            ),
            trial_file=trial_file,
            export=lambda dest: self.ws.export(base(), dest),
        )

    def _plan(self) -> None:
        """While every slot is busy, get the next decision now so that a freed slot starts
        at once; it is gated against the base of the moment it runs."""
        if (
            self.thinker.idle
            and self._baseline_done
            and self._limit_reached() is None
            and not self.finisher.active()
        ):
            self._think()

    def _cycle(self) -> bool | None:
        """One worker cycle: True a trial started, False an idle cycle, None still thinking."""
        if self.thinker.idle:
            self._think()
        if not self.thinker.ready():
            return None
        thought = self.thinker.take()
        decision, usage = thought.decision, self._charge(thought.usage)
        if isinstance(decision, Exception):
            wait = Decision(action="wait", rationale=f"worker error: {decision}"[:2000])
            self.journal.idle(
                self.worker.name, wait, ["worker raised " + type(decision).__name__], usage
            )
            self._waits += 1
            self._errors += 1  # a provider in trouble (429, 500, timeouts) is asked less often
            return False
        self._errors = 0
        if self.mentor is not None and thought.why is None and not self.running:
            # planned while a trial ran; that trial has ended and the night may have stalled
            if why := self._stalled():
                self.thinker.review(thought, why, context.render(self._context(full=True)))
        decision = self._reviewed(thought)
        best = self._best()
        base = best[2] if best else self.base_commit
        try:
            base_params = best[3] if best else self.cfg.defaults()
            gate, commit = admit(
                decision, self.cfg, self.ws, self.store.path, base, base_params, self._watch
            )
        except (WorkspaceError, ValueError, OSError, OverflowError) as exc:  # git refused it
            gate, commit = GateResult(False, [f"the edit cannot be applied: {exc}"]), base
        if not gate.accepted or decision.action != "run":
            self.journal.idle(self.worker.name, decision, gate.reasons, usage)
            if decision.action == "stop" and gate.accepted:
                self.stop_reason = f"the worker stopped the night: {decision.rationale}"
            self._waits += 1
            return False
        # the base admission built on, even if a trial watched meanwhile changed the best
        trial = self._start(decision, "trial", commit, self.cfg.trial.seed, usage, best)
        if gate.notes:
            with self.store.tx() as s:
                Store.event(s, "spec_normalized", trial_id=trial, notes=gate.notes)
            self.report(f"trial {trial}: {'; '.join(gate.notes)}")
        self._waits = 0
        return True

    def _watch(self) -> bool:
        """Called while admission waits (a smoke check): the running trials stay watched;
        False once the night must stop now."""
        for slot in list(self.running):
            self._poll(slot)
        return not self.stop_now

    def _check_spec(self, commit: str, quiet: bool = False) -> None:
        """The lab's own spec must run: fail now, not at the baseline."""
        if self.cfg.trial.spec:
            notes = training_spec.for_commit(self.cfg, self._reader(commit)).notes
            if notes and not quiet:
                self.report(f"{self.cfg.trial.spec} as it runs: {'; '.join(notes)}")

    def _reader(self, commit: str) -> Callable[[str], str | None]:
        return lambda path: self.ws.read(commit, path) if self.ws.exists(commit, path) else None

    def _best(self) -> Best | None:
        """The current base; read once per recorded trial (the store is the truth)."""
        view = self._view  # one read of the attribute: the worker's thread calls this too
        if not view:
            with read.connect(self.store.path) as conn:
                b, base = read.best(conn), read.baseline(conn)
            view = {
                "best": None
                if b is None
                else (b["objective"], b["trial"], b["commit"], b["params"]),
                "sigma": base["sigma"] if base else 0.0,
            }
            self._view = view
        return view["best"]

    # ------------------------------------------------------------------ act
    def _start(
        self,
        decision: Decision,
        kind: str,
        commit: str,
        seed: int,
        usage: dict | None = None,
        best: Best | None = None,
    ) -> int:
        """Record and launch a trial of `commit` (the gated code) on a free slot; `best`:
        the base it was admitted against (default: the best now)."""
        best = None if kind == "baseline" else (best or self._best())
        base = best[2] if best else self.base_commit
        params = self.cfg.normalize(
            {**(best[3] if best else self.cfg.defaults()), **decision.params}
        )
        slot = min(set(range(self.slots)) - set(self.running))
        worker = {"baseline": "baseline", "trial": self.worker.name}.get(kind, FINISH_WORKER)
        # the normalised spec is what runs; it is checked before anything is recorded
        ran = None
        if self.cfg.trial.spec:
            ran = training_spec.for_commit(self.cfg, self._reader(commit))
        trial_id, trace = self.journal.open_trial(
            worker,
            decision,
            usage=usage,
            kind=kind,
            params=params,
            seed=seed,
            slot=slot,
            commit=commit,
            base_commit=base,
            base_trial_id=best[1] if best else None,
        )
        if kind in ("baseline", "trial"):  # finish-up runs are not counted against max_trials
            self._trials_total += 1
        if commit != base:
            self.ws.keep_trial(trial_id, commit)
        tree, workdir = self.trees.acquire(commit)
        trial_dir = self.state / "trials" / str(trial_id)
        folder.prepare(trial_dir, params, self.ws.diff(self.base_commit, commit), commit, self.data)
        gpus = None if self.slurm else self.gpus  # Slurm gives each job its own GPUs
        tracked = self.cfg.tracking.enabled and self.cfg.tracking.trial_run
        build = launch.build(
            self.cfg, self.lab, trial_dir, trial_id, params, seed, workdir, slot, gpus,
            mlflow=self._mlflow_opts() if tracked else None,
        )  # fmt: skip
        if kind == "test":  # the one run that may read the held-out test split
            build.env["NIGHTLAB_TEST"] = "1"
        if ran is not None:  # the normalised spec is what runs, and is recorded
            (trial_dir / "spec.json").write_text(ran.text())
            build.env["NIGHTLAB_SPEC"] = str(trial_dir / "spec.json")
        running = slurm.start(self.cfg, build) if self.slurm else local.start(build)
        self.journal.started(trial_id, trace, running, slot, tree)
        self.running[slot] = Active(running, trace, kind, tree)
        shown = " ".join(f"{k}={fmt.value(v)}" for k, v in decision.params.items())
        if decision.edits:
            shown += f" edits {', '.join(sorted({e.file for e in decision.edits}))}"
        self.report(f"trial {trial_id} ({kind}) started on slot {slot}: {shown}")
        return trial_id

    def baseline_complete(self) -> bool:
        """All baseline repeats have run (finish-up waits for them: no noise, no ranking)."""
        if not self._baseline_done:
            done = sum(1 for _, st, _ in self.journal.baseline_states() if st == "succeeded")
            return done >= self.cfg.ratchet.baseline_repeats
        return True

    def start_finishing(self, decision: Decision, kind: str, commit: str, seed: int) -> None:
        """Start a finish-up run (`confirm` or `test`) of existing code: no gate, no twin
        check — it repeats a candidate on purpose."""
        self._start(decision, kind, commit, seed)

    def write_report(self, top_k: int | None = None) -> Path | None:
        """The morning report; a failure is recorded and reported, never fatal."""
        from nightlab.report import write_report

        try:
            where = write_report(self.lab, self.cfg, top_k=top_k or self.cfg.report.top_k)
        except Exception as exc:
            with self.store.tx() as s:
                Store.event(s, "report_failed", run_id=self.run_id, error=f"{exc}"[:2000])
            self.report(f"the report could not be written: {type(exc).__name__}: {exc}")
            return None
        with self.store.tx() as s:
            Store.event(s, "report_written", run_id=self.run_id, path=str(where))
        self.report(f"report: {where / 'final_paper_report.md'}")
        return where

    def _poll(self, slot: int) -> None:
        active = self.running[slot]
        outcome = active.trial.poll()
        self._drain_events(active)
        if outcome is None:
            return
        del self.running[slot]
        workdir = active.trial.spec.workdir  # the lab itself for a trial re-attached after a
        watched = self.protected and workdir != self.lab  # crash: its worktree is unknown
        if watched and (touched := protect.changed(workdir, self.protected)):
            outcome = replace(
                outcome, status="failed", objective=None,
                reason=f"{protect.REASON}: the trial changed {', '.join(touched)} (protected; "
                "restored)",
            )  # fmt: skip
        self._record(active.trial.spec.trial_id, active.trace, active.kind, outcome)
        if active.tree:
            best = self._best()
            outputs = self.state / "trials" / str(active.trial.spec.trial_id) / "outputs"
            self.trees.release(active.tree, best[2] if best else self.base_commit, outputs)

    def _drain_events(self, active: Active) -> None:
        """Store what a running trial reported about itself (e.g. a Slurm job requeued)."""
        events = getattr(active.trial, "events", None)
        while events:
            event = events.pop(0)
            kind = event.pop("kind")
            with self.store.tx() as s:
                Store.event(s, kind, trial_id=active.trial.spec.trial_id, **event)
            if message := event.get("message"):
                self.report(f"trial {active.trial.spec.trial_id}: {message}")

    # ------------------------------------------------------------------ record
    def _record(self, trial_id: int, trace: str, kind: str, out: local.Outcome) -> None:
        best = self._best()
        verdict: ratchet.Verdict | None = None
        out = self.finisher.screen(trial_id, kind, out)
        if kind in ("baseline", "confirm", "test"):
            label = {"confirm": "confirmation"}.get(kind, kind)
        elif out.status == "succeeded" and best is not None:
            verdict = ratchet.judge(self.cfg, out.objective, best[0], self._view["sigma"])
            label = verdict.verdict
        else:
            label = "discarded"
        row, line = self.journal.close_trial(trial_id, trace, out, label, verdict)
        self._view = {}  # a recorded trial may have moved the best or the noise
        folder.finish(self.state / "trials" / str(trial_id), row.record(trace), out.history)
        if label == "kept":
            self.ws.set_best(row.commit)
        if kind in ("baseline", "trial"):
            self.worker.observe(row)
        if self.tracking:
            self.tracking.submit(trial_id)
            if not self.tracking.alive() and not self._tracking_gone:
                self._tracking_gone = True
                self.report(
                    "MLflow: the tracking process has exited (see .nightlab/"
                    "tracking.log); trials stay in the store and are logged next start"
                )
        self.report(line)
        if kind in ("baseline", "trial") and out.status == "failed":
            self.repairs.start(row, out)
        if self.progress:
            self.progress(self._trials_total - len(self.running), self.max_trials)

    def _start_retry(self) -> None:
        row, retry = self.repairs.retries.pop(0)
        body = {**self.journal.decision_body(row.decision_id), "params": retry.params}
        body.update(
            todo_new=[], resolve_todo_ids=[], notes_update=None, data_exploration_update=None,
            edits=[], rationale=f"retry of trial {row.id} after auto-repair: {retry.note}",
        )  # fmt: skip
        new = self._start(Decision.model_validate(body), row.kind, row.commit, seed=row.seed)
        with self.store.tx() as s:
            Store.event(s, "run_outcome_retry", run_id=self.run_id, trial_id=new,
                        retry_of=row.id, note=retry.note)  # fmt: skip

    def _rewrite_results(self) -> None:
        """result.json is written just after a trial's outcome is committed: a loop killed
        in between leaves none, so a new loop writes it again from the store."""
        with read.connect(self.store.path) as conn:  # ids only: 10k trials, one stat each
            settled = conn.execute("SELECT id FROM trials WHERE status != 'running'").fetchall()
        trials = self.state / "trials"
        missing = [i for (i,) in settled if not (trials / str(i) / "result.json").is_file()]
        if not missing:
            return
        traces = self.journal.traces()
        for row in self.store.trials(Trial.id.in_(missing)):
            folder.write_json(
                trials / str(row.id) / "result.json", row.record(traces.get(row.cycle_id))
            )

    def _reconcile(self) -> None:
        """Trials a dead loop left `running`: watch the live ones, settle the rest."""
        for row in self.store.trials(Trial.status == "running"):
            trial_dir = self.state / "trials" / str(row.id)
            pid = row.pid or _read_pid(trial_dir)
            watch = launch.build(
                self.cfg, self.lab, trial_dir, row.id, row.params, row.seed, self.lab
            )  # only watched: it was started long ago
            job = self.journal.job_id(row.id)
            if job:  # a Slurm job still queued or running is watched again
                live: Any = slurm.attach(watch, job, row.started_at)
            else:
                live = local.attach(watch, pid, row.pid_started_at, row.started_at) if pid else None
            trace = self.journal.reconciled(row, pid, alive=live is not None)
            if live is not None and row.slot < self.slots and row.slot not in self.running:
                self.running[row.slot] = Active(live, trace, row.kind, row.worktree or "")
                who = f"job {job}" if job else f"pid {pid}"
                self.report(f"trial {row.id} still running ({who}): watching it again")
                continue
            if live is not None:  # more trials than slots now: end it, settle it as killed
                live.kill("killed", f"{local.INTERRUPTED}: no slot for it after a restart")
                while (outcome := live.poll()) is None:
                    time.sleep(POLL_S)
            elif (trial_dir / "exit_code").is_file():
                outcome = local.from_files(watch, row.started_at)  # it ended unwatched
            else:
                outcome = local.Outcome(
                    status="killed",
                    exit_code=None,
                    objective=None,
                    metrics={},
                    wall_s=round(time.time() - row.started_at, 3),
                    peak_rss_mb=None,
                    log_tail=local.log_tail(trial_dir),
                    reason=f"{local.INTERRUPTED}: the loop died while this trial ran",
                )
            self._record(row.id, trace, row.kind, outcome)


def _read_pid(trial_dir: Path) -> int | None:
    try:
        return int((trial_dir / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
