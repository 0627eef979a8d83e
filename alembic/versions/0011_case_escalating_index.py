"""The cases the escalation job may raise, by deadline: open in an escalating state and not
yet at the top level (a small partial index with what the job reads, instead of fetching
every late case of the year from the table each minute: 330 ms -> a few ms).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# layers.escalation.ESCALATING and its top level (a test checks they agree)
ESCALATING = ("dispatched", "bounced", "in_progress", "feedback")
TOP = 3


def upgrade() -> None:
    states = ", ".join(f"'{s}'" for s in ESCALATING)
    op.execute(f'CREATE INDEX case_escalating ON "case" (deadline_at) INCLUDE (id, escalation) '
               f"WHERE status IN ({states}) AND deadline_at IS NOT NULL "
               f"AND escalation < {TOP}")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS case_escalating")
