"""The journal: every cycle of the loop written to the store, one transaction per state
change, with its storyline line mirrored to `.nightlab/artifacts/storyline.md`.

It records what the loop decided and observed; it never starts processes or asks workers.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from nightlab.agents.decision import Decision
from nightlab.loop import workpad
from nightlab.ratchet import Verdict
from nightlab.store import history, read
from nightlab.store.db import Cycle, Note, Run, Store, Trial
from nightlab.store.db import Decision as DecisionRow
from nightlab.store.kinds import REQUEUED
from nightlab.store.paths import LabPaths
from nightlab.store.redact import redact, redact_data
from nightlab.trials.executor import Outcome
from nightlab.trials.executor import Trial as RunningTrial


def body(decision: Decision) -> dict[str, Any]:
    """A decision as the record keeps it: its fields and, if any, the repairs it needed."""
    data = decision.model_dump()
    return redact_data({**data, "repairs": decision.notes} if decision.notes else data)


def new_trace() -> str:
    return uuid.uuid4().hex[:12]


class Journal:
    def __init__(self, store: Store, state: Path, lab: str, metric: str) -> None:
        self.store = store
        self.run_id: int | None = None
        self.lab = lab
        self.metric = metric
        self.storyline = LabPaths.of_state(state).storyline
        self.storyline.parent.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ runs
    def open_run(
        self, hours: float | None, config_hours: float | None, options: dict[str, Any]
    ) -> tuple[int, float | None]:
        """Mark runs a dead loop left `running` as crashed and open this one: (run id,
        deadline). `hours` given for this run wins; else a night resumed after a crash keeps
        its end time; else `config_hours` ([budget] hours) counts from now."""
        now = time.time()
        with self.store.tx() as s:
            last = s.scalars(select(Run).order_by(Run.id.desc()).limit(1)).first()
            for run in s.scalars(select(Run).where(Run.state == "running")):
                run.state, run.ended_at = "crashed", run.heartbeat_at
                run.end_reason = "the loop process died without a clean stop"
            if hours is not None:
                deadline: float | None = now + hours * 3600
            elif last is not None and last.state in ("crashed", REQUEUED) and last.deadline_at:
                deadline = last.deadline_at
            else:
                deadline = now + config_hours * 3600 if config_hours else None
            # a `nightlab stop` the requeued loop heard but could not wait out is the resumed
            # loop's to honour: it re-attaches to the running trials and stops after them
            stop = last is not None and last.state == REQUEUED and bool(last.stop_requested)
            run = Run(
                lab=self.lab,
                pid=os.getpid(),
                host=socket.gethostname(),
                state="running",
                started_at=now,
                heartbeat_at=now,
                deadline_at=deadline,
                stop_requested=stop,
                options=options,
            )
            s.add(run)
            s.flush()
            Store.event(s, "run_started", run_id=run.id, pid=os.getpid(), **options)
            self.run_id = run.id
        return run.id, deadline

    def beat(self) -> tuple[bool, float | None]:
        """Refresh the heartbeat; (a stop has been requested (`nightlab stop`), the run's
        deadline (`nightlab extend` moves it))."""
        with self.store.tx() as s:
            s.execute(update(Run).where(Run.id == self.run_id).values(heartbeat_at=time.time()))
            q = select(Run.stop_requested, Run.deadline_at).where(Run.id == self.run_id)
            stop, deadline = s.execute(q).one()
            return bool(stop), deadline

    def close_run(self, state: str, reason: str, mlflow: bool) -> int:
        """End this run; returns how many finished trials MLflow still lacks."""
        left = history.mlflow_backlog(self.store) if mlflow else 0
        with self.store.tx() as s:
            run = s.get(Run, self.run_id)
            if run is not None and run.state == "running":
                run.state, run.ended_at, run.end_reason = state, time.time(), reason
            Store.event(
                s, "run_ended", run_id=self.run_id, state=state, reason=reason, mlflow_backlog=left
            )
        return left

    # ------------------------------------------------------------------ cycles

    def _cycle(self, s: Any, trace: str, action: str, now: float, **extra: Any) -> Cycle:
        cycle = Cycle(run_id=self.run_id, trace_id=trace, started_at=now, action=action, **extra)
        s.add(cycle)
        s.flush()
        return cycle

    def idle(
        self, worker: str, decision: Decision, reasons: list[str], usage: dict | None = None
    ) -> str:
        """A cycle that ran nothing: a wait, stop or other action, or a gate rejection."""
        trace = new_trace()
        action = "wait" if reasons else decision.action
        reasons = redact_data(reasons)  # an agent's words: a key it saw is not recorded
        line = redact(f"[{trace}] {action}: {decision.rationale[:160]}" + (
            f" — gate rejected: {'; '.join(reasons)}" if reasons else ""
        ))  # fmt: skip
        now = time.time()
        with self.store.tx() as s:
            cycle = self._cycle(s, trace, action, now, ended_at=now, summary=line)
            s.add(
                DecisionRow(
                    cycle_id=cycle.id,
                    worker=worker,
                    action=decision.action,
                    accepted=not reasons,
                    reasons=reasons,
                    body=body(decision),
                )
            )
            self._event(
                s,
                "gate_rejected" if reasons else "decision",
                trace_id=trace,
                action=decision.action,
                reasons=reasons,
            )
            self._repairs(s, decision, trace)
            if not reasons:
                self._housekeeping(s, decision, trace)
            if usage:
                self._event(s, "agent_usage", trace_id=trace, **usage)
        self.story(line)
        return line

    def _repairs(self, s: Any, decision: Decision, trace: str, **where: Any) -> None:
        """What reading the decision repaired or dropped (a coding agent's decision file)."""
        if decision.notes:
            notes = redact_data(decision.notes)
            self._event(s, "decision_repaired", trace_id=trace, notes=notes, **where)

    def _housekeeping(self, s: Any, decision: Decision, trace: str) -> None:
        if not workpad.wanted(decision):
            return
        done = workpad.apply(s, decision, trace)
        if workpad.changed(done) or done["todo_dropped"]:
            self._event(s, "housekeeping", trace_id=trace, **done)
        if workpad.changed(done):
            s.flush()
            workpad.render(s, self.storyline.parent)

    def open_trial(
        self, worker: str, decision: Decision, usage: dict | None = None, **trial: Any
    ) -> tuple[int, str]:
        """Cycle, decision and trial rows for a trial about to start: (trial id, trace)."""
        trace = new_trace()
        now = time.time()
        with self.store.tx() as s:
            cycle = self._cycle(s, trace, "run", now)
            row = DecisionRow(
                cycle_id=cycle.id,
                worker=worker,
                action="run",
                accepted=True,
                reasons=[],
                body=body(decision),
            )
            s.add(row)
            s.flush()
            t = Trial(
                run_id=self.run_id,
                cycle_id=cycle.id,
                decision_id=row.id,
                status="running",
                hypothesis=decision.hypothesis,
                dimension=decision.dimension,
                started_at=now,
                metrics={},
                **trial,
            )
            s.add(t)
            s.flush()
            self._event(s, "trial_created", trace_id=trace, trial_id=t.id, kind=t.kind,
                        params=t.params, commit=t.commit)  # fmt: skip
            self._repairs(s, decision, trace, trial_id=t.id)
            if t.kind != "baseline":
                self._housekeeping(s, decision, trace)
            if usage:
                self._event(s, "agent_usage", trace_id=trace, trial_id=t.id, **usage)
            return t.id, trace

    def started(self, trial_id: int, trace: str, trial: RunningTrial, slot: int, tree: str) -> None:
        handle, at = trial.handle, trial.started_at
        with self.store.tx() as s:
            s.execute(
                update(Trial)
                .where(Trial.id == trial_id)
                .values(
                    pid=handle.pid,
                    worktree=tree,
                    started_at=at,
                    pid_started_at=handle.pid_started_at,  # tells the pid apart from a reused one
                )
            )
            # a Slurm job's id: how a restart finds it again
            extra = {"job_id": handle.job_id} if handle.job_id else {}
            extra |= {"executor": handle.kind} if handle.kind else {}
            self._event(s, "trial_started", trace_id=trace, trial_id=trial_id, pid=handle.pid,
                        slot=slot, **extra)  # fmt: skip

    def close_trial(
        self, trial_id: int, trace: str, out: Outcome, label: str, verdict: Verdict | None
    ) -> tuple[Trial, str]:
        """The trial's outcome and ratchet verdict, its cycle closed with its storyline."""
        now = time.time()
        with self.store.tx() as s:
            row = s.get(Trial, trial_id)
            row.status, row.verdict, row.ended_at, row.judged_at = out.status, label, now, now
            row.wall_s, row.exit_code, row.peak_rss_mb = out.wall_s, out.exit_code, out.peak_rss_mb
            row.objective, row.metrics = out.objective, out.metrics
            row.reason, row.log_tail = out.reason, out.log_tail
            row.judgement, row.pruning = verdict.record() if verdict else None, out.pruning
            obj = "—" if out.objective is None else f"{out.objective:.4g}"
            line = (
                f"[{trace}] trial {trial_id} ({row.kind}) {out.status} {self.metric}={obj} "
                f"→ {verdict.describe() if verdict else label}"
                + (f" [{out.reason}]" if out.reason else "")
            )
            if cites := (s.get(DecisionRow, row.decision_id).body or {}).get("cites"):
                line += f" · cites {', '.join(map(str, cites))}"
            cycle = s.get(Cycle, row.cycle_id)
            cycle.ended_at, cycle.summary = now, line
            self._event(s, "trial_finished", trace_id=trace, trial_id=trial_id,
                        status=out.status, objective=out.objective, reason=out.reason,
                        wall_s=out.wall_s, peak_rss_mb=out.peak_rss_mb)  # fmt: skip
            figures = row.judgement or {}
            self._event(s, "ratchet", trace_id=trace, trial_id=trial_id, verdict=label,
                        improvement=figures.get("improvement"),
                        threshold=figures.get("threshold"), sigma=figures.get("sigma"))  # fmt: skip
        self.story(line)
        return row, line

    def judged(
        self, trial_id: int, verdict: str, judgement: dict[str, Any], why: str
    ) -> tuple[dict[str, Any], str]:
        """A screened trial judged on its confirmation runs: its verdict and the figures it
        was judged with (`why` in words), in a cycle of its own; returns its record and
        storyline line."""
        trace, now = new_trace(), time.time()
        text = why if why.startswith(verdict) else f"{verdict}: {why}"
        line = f"[{trace}] trial {trial_id} {text}"
        with self.store.tx() as s:
            row = s.get(Trial, trial_id)
            row.verdict, row.judged_at, row.judgement = verdict, now, judgement
            row.mlflow_run_id = None  # logged as screened: MLflow gets the verdict again
            self._cycle(s, trace, "judge", now, ended_at=now, summary=line)
            record = row.record(s.get(Cycle, row.cycle_id).trace_id)
            self._event(s, "ratchet", trace_id=trace, trial_id=trial_id, verdict=verdict,
                        improvement=judgement.get("improvement"),
                        threshold=judgement.get("threshold"), sigma=judgement.get("sigma"),
                        runs=judgement.get("runs"))  # fmt: skip
        self.story(line)
        return record, line

    def mentor(self, review: Any, why: str, usage: dict | None, replaced: bool) -> None:
        """A mentor review: its event, its note (mentor_notes.md) and at most one TODO."""
        note = f"{review.verdict} ({why}): {review.critique}" + (
            f" Question: {review.question}" if review.question else ""
        )
        with self.store.tx() as s:
            self._event(
                s,
                "mentor_review",
                verdict=review.verdict,
                why=why,
                critique=review.critique,
                question=review.question,
                todo=review.todo,
                replaced=replaced, cites=review.cites, literature=review.literature,
            )
            if usage:
                self._event(s, "agent_usage", role="mentor", **usage)
            s.add(Note(ts=time.time(), trace_id=None, author="mentor", section="mentor", text=note))
            if review.todo:
                workpad.apply(
                    s,
                    Decision(action="wait", rationale="mentor TODO", todo_new=[review.todo]),
                    "mentor",
                    author="mentor",
                )
            s.flush()
            workpad.render(s, self.storyline.parent)

    def reconciled(self, row: Trial, pid: int | None, alive: bool) -> str:
        """Note a trial found `running` by a new loop; returns its cycle's trace id."""
        trace = history.trace_of(self.store, row.cycle_id)
        with self.store.tx() as s:
            self._event(
                s,
                "reconciled",
                trace_id=trace,
                trial_id=row.id,
                pid=pid,
                alive=alive,
            )
        return trace

    def _event(self, s: Any, kind: str, /, **data: Any) -> None:
        Store.event(s, kind, run_id=self.run_id, **data)

    def story(self, line: str) -> None:
        with self.storyline.open("a") as fh:
            fh.write(f"- {line}\n")

    def render_storyline(self) -> None:
        """Rewrite the storyline file from the store (it may lag after a crash)."""
        lines = read.storyline(self.store.path)
        self.storyline.write_text(
            f"# Storyline of {self.lab}\n\n" + "".join(f"- {line}\n" for line in lines)
        )
