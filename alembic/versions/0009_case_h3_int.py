"""Hot spots read a period's cases from an index: the H3 cell as a bigint (generated from
the stored hexadecimal id) in a covering index on created_at.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""ALTER TABLE "case" ADD COLUMN h3_int bigint GENERATED ALWAYS AS
                  (('x' || lpad(h3_cell, 16, '0'))::bit(64)::bigint) STORED""")
    op.execute('CREATE INDEX case_hotspots ON "case" (created_at) INCLUDE (h3_int, status, '
               "category_code, owner_department) WHERE inside AND h3_int IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS case_hotspots")
    op.execute('ALTER TABLE "case" DROP COLUMN IF EXISTS h3_int')
