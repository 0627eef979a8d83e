"""Indexes for the KPI queries (index-only reads of a period's cases and of events by kind).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX case_event_action_case ON case_event (action, case_id, at) "
               "INCLUDE (role)")
    op.execute("CREATE INDEX case_event_dispatch ON case_event (case_id, at) INCLUDE (data) "
               "WHERE action = 'dispatch'")
    op.execute('CREATE INDEX case_period ON "case" (created_at) INCLUDE (id, status, '
               "owner_department, deadline_at, closed_at, satisfaction, grid_code, "
               "street_code, category_code)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS case_period")
    op.execute("DROP INDEX IF EXISTS case_event_dispatch")
    op.execute("DROP INDEX IF EXISTS case_event_action_case")
