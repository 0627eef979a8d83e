"""The reporter's e-mail and device id (Open311 email, device_id), private like the phone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("case", sa.Column("reporter_email", sa.String(length=254), nullable=True))
    op.add_column("case", sa.Column("reporter_device", sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.drop_column("case", "reporter_device")
    op.drop_column("case", "reporter_email")
