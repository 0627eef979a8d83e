"""Server secrets: keys every worker shares (first: the key of citizens' rating codes, an
HMAC of the case reference, so a code needs no column and cannot be guessed from the
public reference). Made here from PostgreSQL's strong random source (gen_random_uuid).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_secret",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.execute("INSERT INTO server_secret (name, value) VALUES ('rating', "
               "replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''))")


def downgrade() -> None:
    op.drop_table("server_secret")
