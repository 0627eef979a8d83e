"""The bounced cases of a period by their own small index (the department KPIs read them
in a second pass instead of grouping every case by its bounce history).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute('CREATE INDEX case_bounced ON "case" (created_at) INCLUDE (bounced_by, '
               "street_code, category_code) WHERE bounced_by IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS case_bounced")
