"""responsibility layers: departments, taxonomy, assets, areas, zones, patrols, grid roles

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:55:46.610873
"""

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('asset',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('category_code', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('geom', Geometry(spatial_index=False, srid=4326, dimension=2, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('supervising_department', sa.String(length=32), nullable=False),
    sa.Column('owner_department', sa.String(length=32), nullable=False),
    sa.Column('maintainer_department', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='intact', nullable=False),
    sa.Column('grid_code', sa.String(length=32), nullable=True),
    sa.Column('source', sa.String(length=32), server_default='manual', nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("code ~ '^[0-9]{16}$'", name='asset_code_16_digits'),
    sa.CheckConstraint("state IN ('intact', 'damaged', 'missing', 'occupied')", name='asset_state'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('asset_code_current', 'asset', ['code'], unique=True, postgresql_where=sa.text('valid_to IS NULL'))
    op.create_index('asset_kind_current', 'asset', ['kind'], unique=False, postgresql_where=sa.text('valid_to IS NULL'))
    op.create_index('idx_asset_geom', 'asset', ['geom'], unique=False, postgresql_using='gist')
    op.create_index(op.f('ix_asset_grid_code'), 'asset', ['grid_code'], unique=False)
    op.create_table('category',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('major_code', sa.String(length=8), nullable=False),
    sa.Column('major_name', sa.String(length=100), nullable=False),
    sa.Column('major_name_en', sa.String(length=100), server_default='', nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_en', sa.String(length=200), server_default='', nullable=False),
    sa.Column('default_department', sa.String(length=32), nullable=False),
    sa.Column('deadline_hours', sa.Integer(), nullable=False),
    sa.Column('owner_rule', sa.String(length=16), nullable=False),
    sa.Column('asset_kind', sa.String(length=64), nullable=True),
    sa.Column('area_kinds', postgresql.ARRAY(sa.String(length=64)), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('snap_radius_m', sa.Float(), server_default='0', nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('component', 'event')", name='category_kind'),
    sa.CheckConstraint("owner_rule IN ('asset', 'area', 'category', 'specialist')", name='category_owner_rule'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('category_code_current', 'category', ['code'], unique=True, postgresql_where=sa.text('valid_to IS NULL'))
    op.create_table('department',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_en', sa.String(length=200), server_default='', nullable=False),
    sa.Column('tier', sa.SmallInteger(), nullable=False),
    sa.Column('parent_code', sa.String(length=32), nullable=True),
    sa.Column('contact_name', sa.String(length=100), nullable=True),
    sa.Column('contact_phone', sa.String(length=32), nullable=True),
    sa.Column('territory_code', sa.String(length=32), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('tier BETWEEN 1 AND 3', name='department_tier'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('department_code_current', 'department', ['code'], unique=True, postgresql_where=sa.text('valid_to IS NULL'))
    op.create_table('department_zone',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('department_code', sa.String(length=32), nullable=False),
    sa.Column('layer', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('geom', Geometry(spatial_index=False, geometry_type='MULTIPOLYGON', srid=4326, dimension=2, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('department_zone_code_current', 'department_zone', ['layer', 'code'], unique=True, postgresql_where=sa.text('valid_to IS NULL'))
    op.create_index('idx_department_zone_geom', 'department_zone', ['geom'], unique=False, postgresql_using='gist')
    op.create_index(op.f('ix_department_zone_department_code'), 'department_zone', ['department_code'], unique=False)
    op.create_table('grid_role',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_code', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('department_code', sa.String(length=32), nullable=True),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('grid_role_grid', 'grid_role', ['grid_code'], unique=False)
    op.create_table('layer_event',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('layer', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=100), server_default='system', nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('ownership_area',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('owner_department', sa.String(length=32), nullable=False),
    sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
    sa.Column('applies_to', postgresql.ARRAY(sa.String(length=16)), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('geom', Geometry(spatial_index=False, geometry_type='MULTIPOLYGON', srid=4326, dimension=2, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('idx_ownership_area_geom', 'ownership_area', ['geom'], unique=False, postgresql_using='gist')
    op.create_index('ownership_area_code_current', 'ownership_area', ['code'], unique=True, postgresql_where=sa.text('valid_to IS NULL'))
    op.create_table('patrol_assignment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_code', sa.String(length=32), nullable=False),
    sa.Column('grid_code', sa.String(length=32), nullable=False),
    sa.Column('shift', sa.String(length=16), nullable=False),
    sa.Column('weekdays', postgresql.ARRAY(sa.SmallInteger()), nullable=False),
    sa.Column('start_time', sa.Time(), nullable=False),
    sa.Column('end_time', sa.Time(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("shift IN ('day', 'night')", name='patrol_assignment_shift'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('patrol_assignment_grid', 'patrol_assignment', ['grid_code'], unique=False)
    op.create_table('patrol_team',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('department_code', sa.String(length=32), nullable=False),
    sa.Column('members', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('patrol_team_code_current', 'patrol_team', ['code'], unique=True, postgresql_where=sa.text('valid_to IS NULL'))



def downgrade() -> None:

    op.drop_index('patrol_team_code_current', table_name='patrol_team', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_table('patrol_team')
    op.drop_index('patrol_assignment_grid', table_name='patrol_assignment')
    op.drop_table('patrol_assignment')
    op.drop_index('ownership_area_code_current', table_name='ownership_area', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_index('idx_ownership_area_geom', table_name='ownership_area', postgresql_using='gist')
    op.drop_table('ownership_area')
    op.drop_table('layer_event')
    op.drop_index('grid_role_grid', table_name='grid_role')
    op.drop_table('grid_role')
    op.drop_index(op.f('ix_department_zone_department_code'), table_name='department_zone')
    op.drop_index('idx_department_zone_geom', table_name='department_zone', postgresql_using='gist')
    op.drop_index('department_zone_code_current', table_name='department_zone', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_table('department_zone')
    op.drop_index('department_code_current', table_name='department', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_table('department')
    op.drop_index('category_code_current', table_name='category', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_table('category')
    op.drop_index(op.f('ix_asset_grid_code'), table_name='asset')
    op.drop_index('idx_asset_geom', table_name='asset', postgresql_using='gist')
    op.drop_index('asset_kind_current', table_name='asset', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_index('asset_code_current', table_name='asset', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_table('asset')

