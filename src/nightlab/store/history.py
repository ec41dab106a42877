"""What the night has recorded so far, as the loop asks for it on its way: the trials that
count against max_trials, the baseline repeats, the repairs and retries, the Slurm job a
trial was submitted as. Queries only; the journal (loop/journal.py) writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from nightlab.store.db import Store
from nightlab.store.kinds import EXPLORING, INTERRUPTED_SQL
from nightlab.store.models import Cycle, Event, Trial
from nightlab.store.models import Decision as DecisionRow


def trial_count(store: Store) -> int:
    """Trials counted against max_trials: not finish-up's confirmation and test runs, nor
    trials cut short by nightlab's own fate (a killed loop), which run again."""
    with store.tx() as s:
        query = select(func.count(Trial.id)).where(
            Trial.kind.in_(EXPLORING), text(f"NOT {INTERRUPTED_SQL}")
        )
        return s.scalar(query)


def decisions_by(store: Store, worker: str) -> int:
    with store.tx() as s:
        return s.scalar(select(func.count(DecisionRow.id)).where(DecisionRow.worker == worker)) or 0


def baseline_states(store: Store) -> list[tuple[int, str, str | None]]:
    """(id, status, reason) of every baseline repeat so far."""
    with store.tx() as s:
        query = (  # in id order: the index on (kind, status) would order them by status
            select(Trial.id, Trial.status, Trial.reason)
            .where(Trial.kind == "baseline")
            .order_by(Trial.id)
        )
        return [tuple(r) for r in s.execute(query)]


def baseline_values(store: Store) -> tuple[list[float], bool]:
    """The objectives of the succeeded baseline repeats (id order), and whether a
    `baseline_no_spread` event was recorded already (it is said once per night)."""
    with store.tx() as s:
        query = (
            select(Trial.objective)
            .where(Trial.kind == "baseline", Trial.status == "succeeded")
            .order_by(Trial.id)
        )
        values = [v for v in s.scalars(query) if v is not None]
        said = s.scalar(select(Event.id).where(Event.kind == "baseline_no_spread").limit(1))
    return values, said is not None


def decision_body(store: Store, decision_id: int) -> dict[str, Any]:
    with store.tx() as s:
        return dict(s.get(DecisionRow, decision_id).body)


def retried(store: Store) -> set[int]:
    """Trials that were run again after an auto-repair."""
    with store.tx() as s:
        rows = s.scalars(select(Event.data).where(Event.kind == "run_outcome_retry"))
        return {int(d["retry_of"]) for d in rows}


def traces(store: Store) -> dict[int, str]:
    """Cycle id → its trace id."""
    with store.tx() as s:
        return dict(s.execute(select(Cycle.id, Cycle.trace_id)).all())


def trace_of(store: Store, cycle_id: int) -> str:
    with store.tx() as s:
        return s.get(Cycle, cycle_id).trace_id


def started_as(store: Store, trial_id: int) -> tuple[str | None, str | None]:
    """(the executor kind, the job id) a trial was started with, as its `trial_started`
    event recorded them: how a restarted loop finds it again (None when not recorded)."""
    with store.tx() as s:
        query = select(Event.data).where(
            Event.kind == "trial_started", Event.trial_id == trial_id
        )
        started = [d for d in s.scalars(query)]
    kind = next((d["executor"] for d in started if d.get("executor")), None)
    return kind, next((d["job_id"] for d in started if d.get("job_id")), None)


def pending_retries(store: Store) -> list[tuple[Trial, dict[str, Any]]]:
    """Repaired trials whose retry has not started yet (a loop died in between)."""
    done = retried(store)
    with store.tx() as s:
        rows = s.execute(select(Event.trial_id, Event.data).where(Event.kind == "repair_pending"))
        out = []
        for trial_id, data in rows:
            if trial_id not in done:
                trial = s.get(Trial, trial_id)
                s.expunge(trial)
                out.append((trial, data))
        return out


def unfinished_repairs(store: Store) -> list[Trial]:
    """Failed trials whose auto-repair began but never ended (the loop stopped or died)."""
    with store.tx() as s:
        kinds: dict[str, set[int]] = {"repair_started": set(), "repair_done": set()}
        query = select(Event.kind, Event.trial_id).where(Event.kind.in_(tuple(kinds)))
        for kind, trial_id in s.execute(query):
            kinds[kind].add(trial_id)
        out = []
        for trial_id in sorted(kinds["repair_started"] - kinds["repair_done"]):
            trial = s.get(Trial, trial_id)
            s.expunge(trial)
            out.append(trial)
        return out


def retry_links(store: Store, trial_id: int) -> bool:
    """True when `trial_id` is a retry or was retried (one repair pass per failure)."""
    with store.tx() as s:
        query = select(Event.trial_id, Event.data).where(Event.kind == "run_outcome_retry")
        return any(t == trial_id or d.get("retry_of") == trial_id for t, d in s.execute(query))


def mlflow_backlog(store: Store) -> int:
    """Finished trials MLflow does not have yet."""
    with store.tx() as s:
        query = select(func.count(Trial.id)).where(
            Trial.mlflow_run_id.is_(None), Trial.status != "running"
        )
        return s.scalar(query)
