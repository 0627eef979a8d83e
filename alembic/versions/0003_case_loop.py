"""case loop: cases, their events, api tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:29:02.631668
"""

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('api_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('department_code', sa.String(length=32), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('case',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('category_code', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('geom', Geometry(spatial_index=False, geometry_type='POINT', srid=4326, dimension=2, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('input_crs', sa.String(length=32), nullable=False),
    sa.Column('inside', sa.Boolean(), nullable=False),
    sa.Column('grid_code', sa.String(length=32), nullable=True),
    sa.Column('street_code', sa.String(length=32), nullable=True),
    sa.Column('h3_cell', sa.String(length=16), nullable=True),
    sa.Column('generation_id', sa.Integer(), nullable=True),
    sa.Column('owner_department', sa.String(length=32), nullable=True),
    sa.Column('resolution', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalation', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('reporter_name', sa.String(length=100), nullable=True),
    sa.Column('reporter_phone', sa.String(length=32), nullable=True),
    sa.Column('reporters', sa.Integer(), server_default='1', nullable=False),
    sa.Column('duplicate_of', sa.BigInteger(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=100), nullable=True),
    sa.Column('satisfaction', sa.SmallInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('version >= 1', name='case_version'),
    sa.ForeignKeyConstraint(['duplicate_of'], ['case.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('ref')
    )
    op.create_index('case_created', 'case', ['created_at'], unique=False)
    op.create_index('case_grid', 'case', ['grid_code'], unique=False)
    op.create_index('case_open_category', 'case', ['category_code', 'created_at'], unique=False, postgresql_where=sa.text("status NOT IN ('closed', 'evaluated', 'rejected', 'cancelled', 'merged')"))
    op.create_index('case_owner_status', 'case', ['owner_department', 'status'], unique=False)
    op.create_index('case_status', 'case', ['status'], unique=False)
    op.create_index('idx_case_geom', 'case', ['geom'], unique=False, postgresql_using='gist')
    op.create_table('case_event',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('case_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), server_default='', nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_case_event_case_id'), 'case_event', ['case_id'], unique=False)



def downgrade() -> None:

    op.drop_index(op.f('ix_case_event_case_id'), table_name='case_event')
    op.drop_table('case_event')
    op.drop_index('idx_case_geom', table_name='case', postgresql_using='gist')
    op.drop_index('case_status', table_name='case')
    op.drop_index('case_owner_status', table_name='case')
    op.drop_index('case_open_category', table_name='case', postgresql_where=sa.text("status NOT IN ('closed', 'evaluated', 'rejected', 'cancelled', 'merged')"))
    op.drop_index('case_grid', table_name='case')
    op.drop_index('case_created', table_name='case')
    op.drop_table('case')
    op.drop_table('api_token')

