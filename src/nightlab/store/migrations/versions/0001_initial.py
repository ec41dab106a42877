"""The first schema: runs, cycles, decisions, trials, events, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("lab", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("deadline_at", sa.Float, nullable=True),
        sa.Column("stop_requested", sa.Boolean, nullable=False),
        sa.Column("end_reason", sa.Text, nullable=True),
        sa.Column("options", sa.JSON, nullable=False),
    )
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("trace_id", sa.String, nullable=False, unique=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("action", sa.String, nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), nullable=False, unique=True),
        sa.Column("worker", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), nullable=False),
        sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id"), nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("verdict", sa.String, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("worktree", sa.String, nullable=True),
        sa.Column("commit", sa.String, nullable=False),
        sa.Column("base_commit", sa.String, nullable=False),
        sa.Column("base_trial_id", sa.Integer, nullable=True),
        sa.Column("hypothesis", sa.Text, nullable=False),
        sa.Column("dimension", sa.String, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("pid_started_at", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("judged_at", sa.Float, nullable=True),
        sa.Column("wall_s", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("peak_rss_mb", sa.Float, nullable=True),
        sa.Column("objective", sa.Float, nullable=True),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("log_tail", sa.Text, nullable=True),
        sa.Column("mlflow_run_id", sa.String, nullable=True),
    )
    op.create_index("ix_trials_status", "trials", ["status"])
    op.create_index("ix_trials_verdict", "trials", ["verdict", "judged_at"])
    op.create_index("ix_trials_objective", "trials", ["objective"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("cycle_trace_id", sa.String, nullable=True),
        sa.Column("trial_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_trial", "events", ["trial_id"])
    op.create_index("ix_events_kind", "events", ["kind"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    for table in ("meta", "events", "trials", "decisions", "cycles", "runs"):
        op.drop_table(table)
