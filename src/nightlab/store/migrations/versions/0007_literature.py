"""The literature cache: papers (with every id they are known by) and the queries that
found them, per source, with their time (`[literature] cache_days`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "papers",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("fetched_at", sa.Float, nullable=False),
    )
    op.create_table(
        "paper_ids",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("key", sa.String, nullable=False),
    )
    op.create_index("ix_paper_ids_key", "paper_ids", ["key"])
    op.create_table(
        "paper_queries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("fetched_at", sa.Float, nullable=False),
        sa.Column("keys", sa.JSON, nullable=False),
    )
    op.create_index("ix_paper_queries_source_query", "paper_queries", ["source", "query"])


def downgrade() -> None:
    op.drop_index("ix_paper_queries_source_query", "paper_queries")
    op.drop_table("paper_queries")
    op.drop_index("ix_paper_ids_key", "paper_ids")
    op.drop_table("paper_ids")
    op.drop_table("papers")
