"""Planners edit the grid: who made a draft and from which generation, a revision per grid
row (optimistic locking of edits in a draft), the lineage of every unit a draft creates
(its predecessors and the area it took from each), and the audit log of every planning
step (kept after a draft is discarded, so it has no foreign key).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# layers.lineage.KINDS (a test checks they agree)
KINDS = ("split", "merge", "redraw", "reparent", "attributes", "new")


def upgrade() -> None:
    op.add_column("generation", sa.Column("created_by", sa.String(100), nullable=True))
    op.add_column("generation", sa.Column("base_id", sa.Integer(),
                                          sa.ForeignKey("generation.id"), nullable=True))
    op.add_column("grid_unit", sa.Column("revision", sa.Integer(), nullable=False,
                                         server_default="1"))
    kinds = ", ".join(f"'{k}'" for k in KINDS)
    op.create_table(
        "grid_lineage",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("generation_id", sa.Integer(),
                  sa.ForeignKey("generation.id", ondelete="CASCADE"), nullable=False),
        sa.Column("unit_id", sa.BigInteger(),
                  sa.ForeignKey("grid_unit.id", ondelete="CASCADE"), nullable=False),
        sa.Column("predecessor_id", sa.BigInteger(),
                  sa.ForeignKey("grid_unit.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("share_of_predecessor", sa.Float(), nullable=False),
        sa.Column("share_of_unit", sa.Float(), nullable=False),
        sa.CheckConstraint(f"kind IN ({kinds})", name="grid_lineage_kind"),
        sa.UniqueConstraint("unit_id", "predecessor_id", name="grid_lineage_pair"),
    )
    op.create_index("grid_lineage_unit", "grid_lineage", ["unit_id"])
    op.create_index("grid_lineage_predecessor", "grid_lineage", ["predecessor_id"])
    op.create_table(
        "generation_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("clock_timestamp()")),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("codes", postgresql.ARRAY(sa.String(32)), nullable=False,
                  server_default=sa.text("'{}'")),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False,
                  server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("generation_event_gen", "generation_event", ["generation_id", "id"])


def downgrade() -> None:
    op.drop_index("generation_event_gen", table_name="generation_event")
    op.drop_table("generation_event")
    op.drop_index("grid_lineage_predecessor", table_name="grid_lineage")
    op.drop_index("grid_lineage_unit", table_name="grid_lineage")
    op.drop_table("grid_lineage")
    op.drop_column("grid_unit", "revision")
    op.drop_column("generation", "base_id")
    op.drop_column("generation", "created_by")
