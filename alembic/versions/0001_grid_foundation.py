"""Versioned nested grid: levels, generations, units and their subdivided pieces.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEVELS = [(1, "district", "区", 6), (2, "street", "街镇", 9), (3, "community", "居村", 12),
          (4, "grid", "网格", 15)]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    level = op.create_table(
        "grid_level",
        sa.Column("rank", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("code_length", sa.SmallInteger),
    )
    op.bulk_insert(level, [dict(rank=r, key=k, name=n, code_length=c) for r, k, n, c in LEVELS])
    op.create_table(
        "generation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("activated_at", sa.DateTime(timezone=True)),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("false")),
    )
    op.create_index("generation_one_active", "generation", ["active"], unique=True,
                    postgresql_where=sa.text("active"))
    op.create_table(
        "grid_unit",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("level", sa.SmallInteger, sa.ForeignKey("grid_level.rank"), nullable=False),
        sa.Column("parent_code", sa.String(32)),
        sa.Column("generation_low", sa.Integer, sa.ForeignKey("generation.id"), nullable=False),
        sa.Column("generation_high", sa.Integer, sa.ForeignKey("generation.id")),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False),
                  nullable=False),
        sa.Column("area_m2", sa.Float),
        sa.Column("leader_name", sa.String(100)),
        sa.Column("leader_phone", sa.String(32)),
        sa.Column("attributes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("code ~ '^[0-9]+$'", name="grid_unit_code_digits"),
        sa.CheckConstraint("generation_high IS NULL OR generation_high >= generation_low",
                           name="grid_unit_generation_range"),
        sa.CheckConstraint("area_m2 IS NULL OR area_m2 >= 0", name="grid_unit_area_positive"),
    )
    op.create_index("grid_unit_code_low", "grid_unit", ["code", "generation_low"], unique=True)
    op.create_index("grid_unit_level_gen", "grid_unit",
                    ["level", "generation_low", "generation_high"])
    op.create_index("grid_unit_parent", "grid_unit", ["parent_code"])
    op.create_index("idx_grid_unit_geom", "grid_unit", ["geom"], postgresql_using="gist")
    op.create_table(
        "grid_piece",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("unit_id", sa.BigInteger,
                  sa.ForeignKey("grid_unit.id", ondelete="CASCADE"), nullable=False),
        sa.Column("geom", Geometry("POLYGON", srid=4326, spatial_index=False), nullable=False),
    )
    op.create_index("ix_grid_piece_unit_id", "grid_piece", ["unit_id"])
    op.create_index("idx_grid_piece_geom", "grid_piece", ["geom"], postgresql_using="gist")
    # pieces follow the geometry whatever writes it
    op.execute(
        """
        CREATE FUNCTION grid_unit_pieces() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'UPDATE' THEN
            DELETE FROM grid_piece WHERE unit_id = NEW.id;
          END IF;
          INSERT INTO grid_piece (unit_id, geom)
            SELECT NEW.id, p.geom
              FROM ST_Subdivide(NEW.geom, 128) AS s(g), ST_Dump(s.g) AS p
             WHERE ST_GeometryType(p.geom) = 'ST_Polygon';
          RETURN NULL;
        END $$;
        CREATE TRIGGER grid_unit_pieces AFTER INSERT OR UPDATE OF geom ON grid_unit
          FOR EACH ROW EXECUTE FUNCTION grid_unit_pieces();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS grid_unit_pieces ON grid_unit")
    op.execute("DROP FUNCTION IF EXISTS grid_unit_pieces()")
    op.drop_table("grid_piece")
    op.drop_table("grid_unit")
    op.drop_table("generation")
    op.drop_table("grid_level")
