"""An index on the trials' kind and status: the views find the baseline repeats, the
confirmation runs and the worker trials of a big lab without reading every trial
(`status --json` and the leaderboard on 100,000 trials, bench/scale.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trials_kind", "trials", ["kind", "status"])


def downgrade() -> None:
    op.drop_index("ix_trials_kind", "trials")
