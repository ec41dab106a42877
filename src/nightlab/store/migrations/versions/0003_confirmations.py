"""The honest ratchet: a trial's confirmation runs point at it (`confirms`), and every
verdict keeps the figures it was made with (`judgement`: σ, threshold, the best's mean…).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("confirms", sa.Integer, nullable=True))
        batch.add_column(sa.Column("judgement", sa.JSON, nullable=True))
    op.create_index("ix_trials_confirms", "trials", ["confirms"])


def downgrade() -> None:
    op.drop_index("ix_trials_confirms", "trials")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("judgement")
        batch.drop_column("confirms")
