"""Writers (the loop, `stop`, `adopt`) go through :class:`Store`; every state change is one
transaction (`with store.tx() as s: ...`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select, update
from sqlalchemy.orm import Session

from nightlab import UserError
from nightlab.store.models import Cycle, Decision, Event, Meta, Note, Run, Todo, Trial
from nightlab.store.redact import redact_data

__all__ = [
    "Store",
    "Run",
    "Cycle",
    "Decision",
    "Trial",
    "Event",
    "Meta",
    "Todo",
    "Note",
    "HEAD_REVISION",
]

HEAD_REVISION = "0007"  # the newest file in migrations/versions; a test keeps them in step
MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL keeps readers (status, watch) from blocking the loop; NORMAL is durable against
    # a killed process, which is the crash nightlab must survive.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Store:
    """Transactional access to one lab's state database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"timeout": 30, "check_same_thread": False}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision. A new store is built in a
        temporary file and renamed into place: SQLite commits each CREATE on its own, so a
        kill during the first start must not leave half a schema behind."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            fresh = self.path.with_name(self.path.name + ".new")
            for leftover in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
                leftover.unlink(missing_ok=True)
            building = Store(fresh)
            try:
                building._upgrade()
            finally:
                building.close()
            fresh.replace(self.path)
            self.engine.dispose()  # connections opened before the rename saw no file
            return
        self._upgrade()

    def _upgrade(self) -> None:
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction: committed on exit, rolled back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # small helpers used inside transactions -------------------------------------------
    @staticmethod
    def event(
        s: Session,
        kind: str,
        /,
        *,
        run_id: int | None = None,
        trace_id: str | None = None,
        trial_id: int | None = None,
        **data: Any,
    ) -> None:
        s.add(
            Event(
                ts=time.time(),
                run_id=run_id,
                cycle_trace_id=trace_id,
                trial_id=trial_id,
                kind=kind,
                data=redact_data(data),
            )
        )

    @staticmethod
    def get_meta(s: Session, key: str, default: Any = None) -> Any:
        row = s.get(Meta, key)
        return default if row is None else row.value

    @staticmethod
    def set_meta(s: Session, key: str, value: Any) -> None:
        s.merge(Meta(key=key, value=value))

    def trials(self, *where: Any) -> list[Trial]:
        with self.tx() as s:
            return list(s.scalars(select(Trial).where(*where).order_by(Trial.id)))

    # what the front ends and the MLflow mirror write -----------------------------------
    def request_stop(self, run_id: int, **data: Any) -> None:
        """Ask run `run_id` to stop after its running trials (the loop reads the flag at its
        next heartbeat), with a `stop_requested` event carrying `data`."""
        with self.tx() as s:
            s.execute(update(Run).where(Run.id == run_id).values(stop_requested=True))
            Store.event(s, "stop_requested", run_id=run_id, **data)

    def end_run(self, run_id: int, state: str, reason: str, **data: Any) -> None:
        """End run `run_id`, one no loop holds (a requeued loop job's, cancelled while it
        waited), with a `run_ended` event carrying `data`."""
        with self.tx() as s:
            run = s.get(Run, run_id)
            if run is not None and run.state != "running":
                run.state, run.end_reason = state, reason
            Store.event(s, "run_ended", run_id=run_id, state=state, reason=reason, **data)

    def extend_deadline(
        self, run_id: int, seconds: float, **data: Any
    ) -> tuple[float | None, float]:
        """Move running run `run_id`'s deadline `seconds` later (one without a deadline ends
        `seconds` from now); the loop reads it at its next heartbeat. Records an
        `hours_extended` event with `data`; returns (old deadline, new deadline). Refused
        (UserError) once the run is not running or its deadline has passed (it is ending)."""
        now = time.time()
        with self.tx() as s:
            run = s.get(Run, run_id)
            if run is None or run.state != "running":
                state = "gone" if run is None else run.state
                raise UserError(f"run {run_id} is not running (state: {state}): nothing to extend")
            old = run.deadline_at
            if old is not None and old <= now:
                raise UserError(
                    f"run {run_id} already reached its deadline ({now - old:.0f}s ago) and is "
                    "ending: start a new night with `nightlab run --run-hours H` instead"
                )
            new = (old if old is not None else now) + seconds
            run.deadline_at = new
            Store.event(s, "hours_extended", run_id=run_id, old_deadline=old, new_deadline=new,
                        **data)  # fmt: skip
        return old, new

    def unlogged_trials(self) -> list[tuple[Trial, str]]:
        """Finished trials not yet in MLflow, with their cycle's trace id, in id order (a
        screened trial again once its confirmation runs have judged it)."""
        with self.tx() as s:
            rows = s.execute(
                select(Trial, Cycle.trace_id)
                .join(Cycle, Cycle.id == Trial.cycle_id)
                .where(Trial.mlflow_run_id.is_(None), Trial.status != "running")
                .order_by(Trial.id)
            ).all()
        return [(row, trace) for row, trace in rows]

    def set_mlflow_run(self, trial_id: int, run_id: str, *, logged: tuple[str | None] = ()) -> None:
        """Record the MLflow run that mirrors trial `trial_id`; with `logged` (the verdict it
        was logged with): only if the ratchet has not judged it since — else it stays
        unlogged and is logged again."""
        where = [Trial.id == trial_id]
        if logged:
            where.append(Trial.verdict.is_not_distinct_from(logged[0]))
        with self.tx() as s:
            s.execute(update(Trial).where(*where).values(mlflow_run_id=run_id))
