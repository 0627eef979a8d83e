"""Duplicate rules per category: how near and how recent an open case of the same category
must be for a new report to join it (null = the server's GRIDOPS_DUPLICATE_* defaults); and
the open originals by place (a small partial GiST index: the duplicate check at intake reads
only cases a report may join, with one plan for every report).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# layers.workflow.OPEN (a test checks they agree)
OPEN = ("collected", "accepted", "dispatched", "bounced", "in_progress", "suspended",
        "feedback")


def upgrade() -> None:
    op.add_column("category", sa.Column("duplicate_radius_m", sa.Float(), nullable=True))
    op.add_column("category", sa.Column("duplicate_window_h", sa.Float(), nullable=True))
    op.create_check_constraint(
        "category_duplicate_rule", "category",
        "(duplicate_radius_m IS NULL OR duplicate_radius_m BETWEEN 0 AND 1000) AND "
        "(duplicate_window_h IS NULL OR duplicate_window_h > 0 AND duplicate_window_h <= 720)")
    states = ", ".join(f"'{s}'" for s in OPEN)
    op.execute(f'CREATE INDEX case_open_geom ON "case" USING gist (geom) '
               f"WHERE status IN ({states}) AND duplicate_of IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS case_open_geom")
    op.drop_constraint("category_duplicate_rule", "category")
    op.drop_column("category", "duplicate_window_h")
    op.drop_column("category", "duplicate_radius_m")
