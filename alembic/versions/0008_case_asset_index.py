"""Open duplicates found by index: the asset a case's owner was decided by (expression
index), so the duplicate check at intake reads the cases near the point (GiST) or on the
same asset instead of every open case of the category.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX case_asset ON \"case\" (((resolution->'owner'->'asset'->>'code'))) "
               "WHERE (resolution->'owner'->'asset'->>'code') IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS case_asset")
