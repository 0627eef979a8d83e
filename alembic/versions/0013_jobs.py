"""Durable background jobs: a queue in PostgreSQL taken with FOR UPDATE SKIP LOCKED (long
grid imports answer with a job to poll; a job outlives the worker that ran it). The uploaded
file lives in job_blob, so listing jobs never reads it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# layers.jobs.STATES (a test checks they agree)
STATES = ("queued", "running", "done", "failed")


def upgrade() -> None:
    states = ", ".join(f"'{s}'" for s in STATES)
    op.create_table(
        "job",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False,
                  server_default=sa.text("'{}'::jsonb")),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("progress_done", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("progress_total", sa.BigInteger(), nullable=True),
        sa.Column("progress_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.SmallInteger(), nullable=False, server_default="3"),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(100), nullable=True),
        sa.CheckConstraint(f"state IN ({states})", name="job_state"),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="job_attempts"),
    )
    # what a worker scans for work: the few open jobs, not the whole history
    op.create_index("job_open", "job", ["id"], postgresql_where=sa.text(
        "state IN ('queued', 'running')"))
    op.create_index("job_kind_created", "job", ["kind", "created_at"])
    op.create_table(
        "job_blob",
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("job.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_blob")
    op.drop_index("job_kind_created", table_name="job")
    op.drop_index("job_open", table_name="job")
    op.drop_table("job")
