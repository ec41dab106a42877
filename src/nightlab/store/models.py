"""The tables of `.nightlab/state.db` (schema changes go through Alembic migrations).

Times are UNIX seconds (floats): heartbeats and budgets are arithmetic on them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    """One invocation of the loop (`nightlab run` / `start`)."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lab: Mapped[str] = mapped_column(String)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String)
    state: Mapped[str] = mapped_column(String)  # running|stopped|finished|crashed
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deadline_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    end_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Cycle(Base):
    """One turn of the loop; `summary` is its storyline line."""

    __tablename__ = "cycles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    trace_id: Mapped[str] = mapped_column(String, unique=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    action: Mapped[str | None] = mapped_column(String, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)


class Decision(Base):
    """A worker's answer for a cycle, as received, with the gate's verdict."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"), unique=True)
    worker: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class Trial(Base):
    """One run of one code version with one parameter set; its folder is `.nightlab/trials/<id>`."""

    __tablename__ = "trials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"))
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"))
    kind: Mapped[str] = mapped_column(String)  # a kinds.Kind
    status: Mapped[str] = mapped_column(String)  # a kinds.Status
    verdict: Mapped[str | None] = mapped_column(String, nullable=True)  # a kinds.Verdict
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int] = mapped_column(Integer)
    worktree: Mapped[str | None] = mapped_column(String, nullable=True)
    commit: Mapped[str] = mapped_column(String)
    base_commit: Mapped[str] = mapped_column(String)
    base_trial_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hypothesis: Mapped[str] = mapped_column(Text, default="")
    dimension: Mapped[str | None] = mapped_column(String, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    judged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    wall_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    objective: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String, nullable=True)
    confirms: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the trial re-run
    judgement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # see ratchet
    pruning: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # see pruning.py

    def record(self, trace_id: str) -> dict[str, Any]:
        """The trial as plain data (result.json, MLflow tags), with its cycle's trace id."""
        keys = (
            "id",
            "kind",
            "status",
            "verdict",
            "params",
            "seed",
            "commit",
            "base_commit",
            "objective",
            "metrics",
            "started_at",
            "ended_at",
            "wall_s",
            "exit_code",
            "peak_rss_mb",
            "reason",
            "hypothesis",
            "dimension",
            "base_trial_id",
            "confirms",
            "judgement",
            "pruning",
        )
        return {**{k: getattr(self, k) for k in keys}, "trace_id": trace_id}

    __table_args__ = (
        Index("ix_trials_status", "status"),
        Index("ix_trials_verdict", "verdict", "judged_at"),
        Index("ix_trials_objective", "objective"),
        Index("ix_trials_confirms", "confirms"),
        Index("ix_trials_kind", "kind", "status"),
        Index("ix_trials_scatter", "objective", "status", "kind"),  # covers the scatter
    )


class Event(Base):
    """Append-only record of everything that happened, tagged with its cycle."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cycle_trace_id: Mapped[str | None] = mapped_column(String, nullable=True)
    trial_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_events_trial", "trial_id"), Index("ix_events_kind", "kind"))


class Meta(Base):
    """Small named facts of the lab (e.g. the base snapshot commit)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)


class Todo(Base):
    """The shared TODO queue of worker and mentor (rendered to shared_todo.md)."""

    __tablename__ = "todos"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    trace_id: Mapped[str | None] = mapped_column(String, nullable=True)
    author: Mapped[str] = mapped_column(String)  # worker|mentor
    text: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String, nullable=True)  # a trace id


class Note(Base):
    """The workpad: notes and data exploration, one entry per update (workpad.md)."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    trace_id: Mapped[str | None] = mapped_column(String, nullable=True)
    author: Mapped[str] = mapped_column(String)
    section: Mapped[str] = mapped_column(String)  # notes|data_exploration|mentor
    text: Mapped[str] = mapped_column(Text)


class Paper(Base):
    """A paper of the literature cache: `data` is its record (agents.literature.Paper's
    dump, bounded), `key` its one id (`arxiv:…`, `doi:…`, …, `title:…`)."""

    __tablename__ = "papers"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    fetched_at: Mapped[float] = mapped_column(Float)


class PaperId(Base):
    """Every id a cached paper is known by (its key too) → its key: a paper stored under
    `arxiv:…` is found by its `doi:…`."""

    __tablename__ = "paper_ids"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    key: Mapped[str] = mapped_column(String)

    __table_args__ = (Index("ix_paper_ids_key", "key"),)


class PaperQuery(Base):
    """One source's answer to one query (normalised: stripped, spaces collapsed, lower
    case): the keys of its papers in rank order."""

    __tablename__ = "paper_queries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String)
    query: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[float] = mapped_column(Float)
    keys: Mapped[list[Any]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_paper_queries_source_query", "source", "query"),)
