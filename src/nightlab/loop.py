"""The loop: cycles of context → decide → gate → act → record, until a stop condition.

One process owns a lab at a time (a lock). Every state change is one transaction in the
store; a heartbeat thread keeps `runs.heartbeat_at` fresh while trials run; MLflow is fed
from a background thread. A loop that died is reconciled on the next start: trials it left
running are watched to their end (or recorded as killed) and the night carries on.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from nightlab import ratchet
from nightlab.agents import Worker, make_worker
from nightlab.agents.decision import Decision
from nightlab.agents.gate import GateResult, check
from nightlab.config import Config
from nightlab.lock import LabLock
from nightlab.store import read
from nightlab.store.db import Cycle, Store, Trial
from nightlab.store.db import Decision as DecisionRow
from nightlab.store.db import Run as RunRow
from nightlab.trials import folder, local
from nightlab.trials.workspace import Workspace
from nightlab.trials.worktrees import WorktreePool

HEARTBEAT_S = 2.0
POLL_S = 0.01
CHECK_S = 0.1  # budget, hang and divergence checks of running trials
MAX_IDLE_CYCLES = 20


class NightError(Exception):
    """The night cannot go on (e.g. the baseline fails); the message says why."""


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
    ) -> None:
        self.lab = Path(lab).resolve()
        self.cfg = cfg
        self.state = self.lab / ".nightlab"
        self.worker_spec = worker or cfg.agents.worker
        self.max_trials = max_trials if max_trials is not None else cfg.budget.max_trials
        self.hours = hours if hours is not None else cfg.budget.hours
        self.slots = slots or cfg.executor.slots
        self.report = report
        self.progress = progress  # (trials ended, max_trials) after each recorded trial
        # slot → (trial, its cycle's trace id, its worktree)
        self.running: dict[int, tuple[local.RunningTrial, str, str]] = {}
        self.stop_reason: str | None = None
        self.stop_now = False
        self.tracking: Any = None
        self._graceful = threading.Event()  # stop after the running trials
        self._done = threading.Event()  # the run is over: the heartbeat ends
        self._next_ask = 0.0
        self._baseline_done = False
        self._planned: Decision | Exception | None = None  # decided while all slots were busy
        self._view: dict[str, Any] = {}  # best and σ from the store, until the next record

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> dict[str, Any]:
        lock = LabLock(self.state)
        lock.acquire()
        self.store = Store(self.state / "state.db")
        try:
            self.store.migrate()
            self.ws = Workspace(self.lab, self.state, self.cfg.lab.name)
            self.worker: Worker = make_worker(self.worker_spec, self.cfg, self.lab)
            self._begin()
            previous = self._install_signals()
            try:
                state = self._main()
            except NightError as exc:
                for trial, *_ in self.running.values():
                    trial.kill("killed", f"{local.INTERRUPTED}: {exc}")
                for slot in list(self.running):
                    self._wait_and_record(slot)
                self._end("stopped", str(exc))
                raise
            finally:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])
            return self._end(state, self.stop_reason or "")
        except BaseException as exc:
            if hasattr(self, "run_id"):
                self._end("crashed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.store.close()
            lock.release()

    def _begin(self) -> None:
        with self.store.tx() as s:
            base = Store.get_meta(s, "base_commit")
            if base is None:  # a new night starts from the lab's working tree as it is now
                base = self.ws.snapshot()
                Store.set_meta(s, "base_commit", base)
                Store.event(s, "snapshot", commit=base)
        self.base_commit = base
        now = time.time()
        with self.store.tx() as s:
            last = s.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(1)).first()
            for run in s.scalars(select(RunRow).where(RunRow.state == "running")):
                run.state, run.ended_at = "crashed", run.heartbeat_at
                run.end_reason = "the loop process died without a clean stop"
            deadline = now + self.hours * 3600 if self.hours else None
            if deadline is None and last and last.state in ("running", "crashed"):
                deadline = last.deadline_at  # a resumed night keeps its end time
            run = RunRow(
                lab=self.cfg.lab.name,
                pid=os.getpid(),
                host=socket.gethostname(),
                state="running",
                started_at=now,
                heartbeat_at=now,
                deadline_at=deadline,
                stop_requested=False,
                options={
                    "worker": self.worker_spec,
                    "max_trials": self.max_trials,
                    "slots": self.slots,
                    "hours": self.hours,
                },
            )
            s.add(run)
            s.flush()
            self.run_id, self.deadline = run.id, deadline
            self._trials_total = s.scalar(select(func.count(Trial.id)))
            Store.event(s, "run_started", run_id=run.id, pid=os.getpid(), **run.options)
        self._reconcile()
        busy = {tree for *_, tree in self.running.values()}
        self.trees = WorktreePool(self.ws, self.cfg.trial.share, busy)
        with read.connect(self.store.path) as conn:
            best = read.best(conn)
        self.ws.set_best(best["commit"] if best else self.base_commit)
        finished = self.store.trials(Trial.status != "running")
        with self.store.tx() as s:
            decided = s.scalar(
                select(func.count(DecisionRow.id)).where(DecisionRow.worker == self.worker.name)
            )
        self.worker.resume(finished, decided or 0)
        self._render_storyline()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
        self._heartbeat.start()
        self.tracking = self._start_tracking()
        self.report(
            f"run {self.run_id} started on {self.lab} (worker {self.worker.name}, "
            f"{self.slots} slot(s), pid {os.getpid()})"
        )

    def _end(self, state: str, reason: str) -> dict[str, Any]:
        self._done.set()
        if getattr(self, "trees", None):
            self.trees.close()
        if self.tracking:
            self.tracking.close()
        with self.store.tx() as s:
            left = 0
            if self.tracking:
                left = s.scalar(
                    select(func.count(Trial.id)).where(
                        Trial.mlflow_run_id.is_(None), Trial.status != "running"
                    )
                )
            run = s.get(RunRow, self.run_id)
            if run is not None and run.state == "running":
                run.state, run.ended_at, run.end_reason = state, time.time(), reason
            Store.event(
                s, "run_ended", run_id=self.run_id, state=state, reason=reason, mlflow_backlog=left
            )
        self.report(f"run {self.run_id} {state}: {reason}")
        if left:
            self.report(
                f"MLflow: {left} trial(s) not logged yet (see .nightlab/tracking.log); "
                "they are logged at the next start"
            )
        return read.status(self.store.path, self.cfg.lab.name)

    def _install_signals(self) -> tuple[Any, Any]:
        def term(signum: int, _frame: Any) -> None:
            if signum == signal.SIGINT and not self._graceful.is_set():
                self._graceful.set()
                self.report("stopping after the running trial(s); Ctrl-C again to kill them")
            else:
                self.stop_now = True

        return signal.signal(signal.SIGTERM, term), signal.signal(signal.SIGINT, term)

    def _beat(self) -> None:
        while not self._done.is_set():
            try:
                with self.store.tx() as s:
                    s.execute(
                        update(RunRow)
                        .where(RunRow.id == self.run_id)
                        .values(heartbeat_at=time.time())
                    )
                    if s.scalar(select(RunRow.stop_requested).where(RunRow.id == self.run_id)):
                        self._graceful.set()
            except Exception as exc:  # keep beating; the main thread reports store failures
                print(f"nightlab: heartbeat failed: {exc}", file=sys.stderr)
            self._done.wait(HEARTBEAT_S)

    # ------------------------------------------------------------------ main loop
    def _main(self) -> str:
        idle = 0
        while True:
            for slot in list(self.running):
                self._poll(slot)
            if self.stop_now:
                for trial, *_ in self.running.values():
                    trial.kill("killed", f"{local.INTERRUPTED}: stopped by the user")
                self.stop_reason = self.stop_reason or "stopped now by the user"
            if self._graceful.is_set() and self.stop_reason is None:
                self.stop_reason = "stop requested"
            free = len(self.running) < self.slots
            if free and not self.stop_reason:
                self.stop_reason = self._limit_reached()
            if self.stop_reason:
                if not self.running:
                    return "stopped" if self._graceful.is_set() or self.stop_now else "finished"
            elif free and time.time() >= self._next_ask:
                while len(self.running) < self.slots and not self.stop_reason:
                    started = self._next()
                    if started is None:
                        break
                    idle = 0 if started else idle + 1
                    if not started:
                        self._next_ask = time.time() + 1.0  # ask again later, not in a spin
                        break
                if idle >= MAX_IDLE_CYCLES and not self.running:
                    self.stop_reason = f"the worker made no runnable decision in {idle} cycles"
            if len(self.running) >= self.slots and not self.stop_reason:
                self._plan()
            if self.running:  # wakes the moment a trial ends; else checks limits each CHECK_S
                local.wait_any([t for t, *_ in self.running.values()], CHECK_S)
            else:
                time.sleep(min(max(self._next_ask - time.time(), POLL_S), CHECK_S))

    def _wait_and_record(self, slot: int) -> None:
        while slot in self.running:
            self._poll(slot)
            time.sleep(POLL_S)

    def _limit_reached(self) -> str | None:
        if self.deadline and time.time() >= self.deadline:
            return "time budget reached"
        if self.max_trials is not None and self._trials_total >= self.max_trials:
            return f"max_trials={self.max_trials} reached"
        target = self.cfg.objective.target
        if target is not None and self._best() and not self.cfg.better(target, self._best()[0]):
            return f"target {target:g} reached"
        return None

    def _next(self) -> bool | None:
        """Start one trial on a free slot: True started, False idle cycle, None wait."""
        if self._baseline_done:
            return self._cycle()
        with self.store.tx() as s:
            rows = s.execute(
                select(Trial.status, Trial.reason).where(Trial.kind == "baseline")
            ).all()
        done = sum(1 for st, _ in rows if st == "succeeded")
        live = sum(1 for st, _ in rows if st == "running")
        fatal = [
            r
            for st, r in rows
            if st in ("failed", "timeout")
            or (st == "killed" and not (r or "").startswith(local.INTERRUPTED))
        ]
        if fatal:
            raise NightError(
                f"the baseline trial failed ({fatal[0]}); fix the trial command "
                "or code so that it runs with the default parameters, then rerun"
            )
        if done + live < self.cfg.ratchet.baseline_repeats:
            self._start_baseline(len(rows))
            return True
        if done < self.cfg.ratchet.baseline_repeats:
            return None  # the noise estimate is not ready yet
        self._baseline_done = True
        return self._cycle()

    # ------------------------------------------------------------------ cycles
    def _start_baseline(self, index: int) -> None:
        decision = Decision(
            action="run",
            rationale=f"baseline repeat {index + 1}: defaults, unmodified code, seed "
            f"{self.cfg.trial.seed + index} (measures the noise)",
            hypothesis="the defaults as they are",
            params=self.cfg.defaults(),
        )
        self._start(decision, "baseline", GateResult(True), seed=self.cfg.trial.seed + index)

    def _decide(self) -> Decision | Exception:
        try:
            return self.worker.decide(self._context(self._best()))
        except Exception as exc:  # a worker failure is a wait cycle, never a dead night
            return exc

    def _plan(self) -> None:
        """While every slot is busy, get the next decision now so that a freed slot starts
        at once; it is gated against the base of the moment it runs."""
        budget_left = self.max_trials is None or self._trials_total < self.max_trials
        if self._planned is None and self._baseline_done and budget_left:
            self._planned = self._decide()

    def _cycle(self) -> bool:
        decision, self._planned = self._planned or self._decide(), None
        if isinstance(decision, Exception):
            wait = Decision(action="wait", rationale=f"worker error: {decision}"[:2000])
            self._record_idle(wait, ["worker raised " + type(decision).__name__])
            return False
        best = self._best()
        base_commit = best[2] if best else self.base_commit
        gate = check(
            decision,
            self.cfg,
            lambda p: self.ws.read(base_commit, p) if self.ws.exists(base_commit, p) else None,
        )
        if not gate.accepted or decision.action != "run":
            self._record_idle(decision, gate.reasons)
            if decision.action == "stop" and gate.accepted:
                self.stop_reason = f"the worker stopped the night: {decision.rationale}"
            return False
        self._start(decision, "trial", gate, seed=self.cfg.trial.seed)
        return True

    def _context(self, best: tuple[float, int, str, dict] | None) -> dict[str, Any]:
        return {
            "objective": self.cfg.objective.model_dump(),
            "best": None
            if best is None
            else {"objective": best[0], "trial": best[1], "params": best[3]},
            "in_flight": [t.spec.trial_id for t, *_ in self.running.values()],
            "deadline": self.deadline,
        }

    def _best(self) -> tuple[float, int, str, dict] | None:
        """(objective, trial, commit, params) of the current base; cached until a record."""
        if not self._view:
            with read.connect(self.store.path) as conn:
                b, base = read.best(conn), read.baseline(conn)
            self._view["best"] = (
                None if b is None else (b["objective"], b["trial"], b["commit"], b["params"])
            )
            self._view["sigma"] = base["sigma"] if base else 0.0
        return self._view["best"]

    def _sigma(self) -> float:
        self._best()
        return self._view["sigma"]

    def _record_idle(self, decision: Decision, reasons: list[str]) -> None:
        trace = uuid.uuid4().hex[:12]
        action = decision.action if not reasons else "wait"
        line = f"[{trace}] {action}: {decision.rationale[:160]}" + (
            f" — gate rejected: {'; '.join(reasons)}" if reasons else ""
        )
        with self.store.tx() as s:
            cycle = Cycle(
                run_id=self.run_id,
                trace_id=trace,
                started_at=time.time(),
                ended_at=time.time(),
                action=action,
                summary=line,
            )
            s.add(cycle)
            s.flush()
            s.add(
                DecisionRow(
                    cycle_id=cycle.id,
                    worker=self.worker.name,
                    action=decision.action,
                    accepted=not reasons,
                    reasons=reasons,
                    body=decision.model_dump(),
                )
            )
            Store.event(
                s,
                "gate_rejected" if reasons else "decision",
                run_id=self.run_id,
                trace_id=trace,
                action=decision.action,
                reasons=reasons,
            )
        self._story(line)

    def _start(self, decision: Decision, kind: str, gate: GateResult, seed: int) -> None:
        trace = uuid.uuid4().hex[:12]
        best = self._best()
        base_commit = best[2] if best and kind != "baseline" else self.base_commit
        params = {
            **(best[3] if best and kind != "baseline" else self.cfg.defaults()),
            **decision.params,
        }
        commit = base_commit
        if gate.files:
            commit = self.ws.commit_files(
                base_commit,
                gate.files,
                f"nightlab: {decision.hypothesis or decision.rationale}"[:200],
            )
        slot = min(set(range(self.slots)) - set(self.running))
        now = time.time()
        with self.store.tx() as s:
            cycle = Cycle(run_id=self.run_id, trace_id=trace, started_at=now, action="run")
            s.add(cycle)
            s.flush()
            row = DecisionRow(
                cycle_id=cycle.id,
                worker="baseline" if kind == "baseline" else self.worker.name,
                action="run",
                accepted=True,
                reasons=[],
                body=decision.model_dump(),
            )
            s.add(row)
            s.flush()
            trial = Trial(
                run_id=self.run_id,
                cycle_id=cycle.id,
                decision_id=row.id,
                kind=kind,
                status="running",
                params=params,
                seed=seed,
                slot=slot,
                commit=commit,
                base_commit=base_commit,
                base_trial_id=best[1] if best else None,
                hypothesis=decision.hypothesis,
                dimension=decision.dimension,
                started_at=now,
                metrics={},
            )
            s.add(trial)
            s.flush()
            trial_id = trial.id
            Store.event(
                s,
                "trial_created",
                run_id=self.run_id,
                trace_id=trace,
                trial_id=trial_id,
                kind=kind,
                params=params,
                commit=commit,
            )
        self._trials_total += 1
        if commit != base_commit:
            self.ws.keep_trial(trial_id, commit)
        tree, workdir = self.trees.acquire(commit)
        spec = self._spec(trial_id, params, seed, workdir)
        folder.prepare(spec.trial_dir, params, self.ws.diff(self.base_commit, commit), commit)
        running = local.start(spec)
        with self.store.tx() as s:
            s.execute(
                update(Trial)
                .where(Trial.id == trial_id)
                .values(
                    pid=running.pid,
                    worktree=tree,
                    pid_started_at=running.started_at,  # within ms of the pid's create time
                    started_at=running.started_at,
                )
            )
            Store.event(
                s,
                "trial_started",
                run_id=self.run_id,
                trace_id=trace,
                trial_id=trial_id,
                pid=running.pid,
                slot=slot,
            )
        self.running[slot] = (running, trace, tree)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in decision.params.items())
        self.report(f"trial {trial_id} ({kind}) started on slot {slot}: {shown}")

    def _spec(self, trial_id: int, params: dict, seed: int, workdir: Path) -> local.TrialSpec:
        trial_dir = self.state / "trials" / str(trial_id)
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            PYTHONUNBUFFERED="1",
            NIGHTLAB_TRIAL_ID=str(trial_id),
            NIGHTLAB_PARAMS=str(trial_dir / "params.json"),
            NIGHTLAB_METRICS=str(trial_dir / "metrics.jsonl"),
            NIGHTLAB_SEED=str(seed),
            NIGHTLAB_LAB_DIR=str(self.lab),
        )
        command = self.cfg.trial.command
        if self.cfg.trial.params == "hydra":
            import shlex

            command += "".join(f" {shlex.quote(f'{k}={v}')}" for k, v in params.items())
        elif self.cfg.trial.params == "env":
            env.update({f"NIGHTLAB_PARAM_{k.upper()}": str(v) for k, v in params.items()})
        return local.TrialSpec(
            trial_id=trial_id,
            command=command,
            workdir=workdir,
            trial_dir=trial_dir,
            env=env,
            budget_s=self.cfg.trial.budget_seconds,
            hang_s=self.cfg.trial.hang_seconds,
            metric=self.cfg.objective.metric,
            reduce=self.cfg.objective.reduce,
            maximize=self.cfg.objective.direction == "maximize",
        )

    # ------------------------------------------------------------------ recording
    def _poll(self, slot: int) -> None:
        trial, trace, tree = self.running[slot]
        outcome = trial.poll()
        if outcome is not None:
            del self.running[slot]
            self._record(trial.spec.trial_id, trace, outcome)
            if tree:  # unknown for a trial re-attached from a loop that died
                best = self._best()
                self.trees.release(tree, best[2] if best else self.base_commit)

    def _record(self, trial_id: int, trace: str, out: local.Outcome) -> None:
        now = time.time()
        with self.store.tx() as s:
            row = s.get(Trial, trial_id)
            best = self._best()
            verdict: ratchet.Verdict | None = None
            if row.kind == "baseline":
                label = "baseline"
            elif out.status == "succeeded" and best is not None:
                verdict = ratchet.judge(self.cfg, out.objective, best[0], self._sigma())
                label = verdict.verdict
            else:
                label = "discarded"
            row.status, row.verdict, row.ended_at, row.judged_at = out.status, label, now, now
            row.wall_s, row.exit_code, row.peak_rss_mb = out.wall_s, out.exit_code, out.peak_rss_mb
            row.objective, row.metrics = out.objective, out.metrics
            row.reason, row.log_tail = out.reason, out.log_tail
            obj = "—" if out.objective is None else f"{out.objective:.4g}"
            line = (
                f"[{trace}] trial {trial_id} ({row.kind}) {out.status} "
                f"{self.cfg.objective.metric}={obj} → {verdict.describe() if verdict else label}"
                + (f" [{out.reason}]" if out.reason else "")
            )
            cycle = s.get(Cycle, row.cycle_id)
            cycle.ended_at, cycle.summary = now, line
            Store.event(
                s,
                "trial_finished",
                run_id=self.run_id,
                trace_id=trace,
                trial_id=trial_id,
                status=out.status,
                objective=out.objective,
                reason=out.reason,
                wall_s=out.wall_s,
                peak_rss_mb=out.peak_rss_mb,
            )
            Store.event(
                s,
                "ratchet",
                run_id=self.run_id,
                trace_id=trace,
                trial_id=trial_id,
                verdict=label,
                improvement=verdict.improvement if verdict else None,
                threshold=verdict.threshold if verdict else None,
            )
            snapshot = row.record(trace)
        self._view.clear()  # a recorded trial may have moved the best or the noise
        folder.finish(self.state / "trials" / str(trial_id), snapshot, out.history)
        if label == "kept":
            self.ws.set_best(snapshot["commit"])
        self.worker.observe(row)
        if self.tracking:
            self.tracking.submit(trial_id)
        self._story(line)
        self.report(line)
        if self.progress:
            self.progress(self._trials_total - len(self.running), self.max_trials)

    def _reconcile(self) -> None:
        """Trials a dead loop left `running`: watch the live ones, settle the rest."""
        for row in self.store.trials(Trial.status == "running"):
            trial_dir = self.state / "trials" / str(row.id)
            pid = row.pid or _read_pid(trial_dir)
            spec = self._spec(row.id, row.params, row.seed, self.state)  # already started
            live = local.attach(spec, pid, row.pid_started_at, row.started_at) if pid else None
            with self.store.tx() as s:
                trace = s.get(Cycle, row.cycle_id).trace_id
                Store.event(
                    s,
                    "reconciled",
                    run_id=self.run_id,
                    trace_id=trace,
                    trial_id=row.id,
                    pid=pid,
                    alive=live is not None,
                )
            if live is not None and row.slot < self.slots and row.slot not in self.running:
                self.running[row.slot] = (live, trace, row.worktree or "")
                self.report(f"trial {row.id} still running (pid {pid}): watching it again")
                continue
            if live is not None:
                live.kill("killed", f"{local.INTERRUPTED}: no slot for it after a restart")
            gone = local.RunningTrial(spec, pid or 0, row.started_at, own=False)
            outcome = gone.poll() if pid else None
            if outcome is None or outcome.exit_code is None:
                outcome = local.Outcome(
                    status="killed",
                    exit_code=None,
                    wall_s=round(time.time() - row.started_at, 3),
                    peak_rss_mb=None,
                    objective=None,
                    metrics={},
                    log_tail=local.log_tail(trial_dir),
                    reason=f"{local.INTERRUPTED}: the loop died while this trial ran",
                )
            self._record(row.id, trace, outcome)

    # ------------------------------------------------------------------ side files
    def _start_tracking(self) -> Any:
        if not self.cfg.tracking.enabled:
            return None
        from nightlab.tracking import TrackingProcess, default_uri

        return TrackingProcess(
            self.store.path,
            self.cfg.tracking.mlflow_uri or default_uri(self.state),
            self.cfg.tracking.experiment or self.cfg.lab.name,
            self.state / "mlartifacts",
            self.state / "tracking.log",
        )

    def _story(self, line: str) -> None:
        path = self.state / "artifacts" / "storyline.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(f"- {line}\n")

    def _render_storyline(self) -> None:
        path = self.state / "artifacts" / "storyline.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = read.storyline(self.store.path)
        path.write_text(
            f"# Storyline of {self.cfg.lab.name}\n\n" + "".join(f"- {line}\n" for line in lines)
        )


def _read_pid(trial_dir: Path) -> int | None:
    try:
        return int((trial_dir / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
