"""Facts of the case log kept on the case row (accepted, standing dispatch, taken, first
feedback, departments that bounced it, who verified it), backfilled from case_event, so each
KPI table is one pass over a period's cases; the KPI indexes on case_event go.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A dispatch is answered by one take or one bounce, and a case is dispatched again only
# after a bounce: so the k-th bounce bounced the k-th dispatch, and the last dispatch stands
# when there are more dispatches than bounces. A case is taken once; verified once.
BACKFILL = """
UPDATE "case" c
   SET accepted_at = f.accepted_at,
       dispatched_at = CASE WHEN f.dispatches > f.bounces THEN f.last_dispatch END,
       taken_at = f.taken_at,
       feedback_at = f.feedback_at,
       bounced_by = CASE WHEN f.bounces > 0 THEN f.dispatched_to[1:f.bounces] END,
       verified_role = f.verified_role
  FROM (SELECT e.case_id,
               min(e.at) FILTER (WHERE e.action = 'accept') AS accepted_at,
               count(*) FILTER (WHERE e.action = 'dispatch') AS dispatches,
               count(*) FILTER (WHERE e.action = 'bounce') AS bounces,
               max(e.at) FILTER (WHERE e.action = 'dispatch') AS last_dispatch,
               array_agg(e.data ->> 'department' ORDER BY e.at, e.id)
                   FILTER (WHERE e.action = 'dispatch') AS dispatched_to,
               max(e.at) FILTER (WHERE e.action = 'take') AS taken_at,
               min(e.at) FILTER (WHERE e.action = 'feedback') AS feedback_at,
               (array_agg(e.role ORDER BY e.at DESC, e.id DESC)
                   FILTER (WHERE e.action = 'verify'))[1] AS verified_role
          FROM case_event e
         WHERE e.action IN ('accept', 'dispatch', 'bounce', 'take', 'feedback', 'verify')
         GROUP BY e.case_id) f
 WHERE f.case_id = c.id"""

_PERIOD_0004 = ('CREATE INDEX case_period ON "case" (created_at) INCLUDE (id, status, '
                "owner_department, deadline_at, closed_at, satisfaction, grid_code, "
                "street_code, category_code)")
_PERIOD = ('CREATE INDEX case_period ON "case" (created_at) INCLUDE (status, '
           "owner_department, grid_code, street_code, category_code, deadline_at, closed_at, "
           "satisfaction, accepted_at, dispatched_at, taken_at, feedback_at, bounced_by, "
           "verified_role)")


def upgrade() -> None:
    for name in ("accepted_at", "dispatched_at", "taken_at", "feedback_at"):
        op.add_column("case", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column("case", sa.Column("bounced_by", postgresql.ARRAY(sa.String(length=32)),
                                    nullable=True))
    op.add_column("case", sa.Column("verified_role", sa.String(length=32), nullable=True))
    op.execute(BACKFILL)
    op.create_check_constraint("case_bounced_by", "case", "cardinality(bounced_by) > 0")
    op.execute("DROP INDEX IF EXISTS case_period")
    op.execute(_PERIOD)
    # the KPIs no longer read events; nothing else needs these two
    op.execute("DROP INDEX IF EXISTS case_event_dispatch")
    op.execute("DROP INDEX IF EXISTS case_event_action_case")


def downgrade() -> None:
    op.execute("CREATE INDEX case_event_action_case ON case_event (action, case_id, at) "
               "INCLUDE (role)")
    op.execute("CREATE INDEX case_event_dispatch ON case_event (case_id, at) INCLUDE (data) "
               "WHERE action = 'dispatch'")
    op.execute("DROP INDEX IF EXISTS case_period")
    op.drop_constraint("case_bounced_by", "case", type_="check")
    for name in ("verified_role", "bounced_by", "feedback_at", "taken_at", "dispatched_at",
                 "accepted_at"):
        op.drop_column("case", name)
    op.execute(_PERIOD_0004)
