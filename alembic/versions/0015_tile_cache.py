"""The vector-tile cache (layers/tiles.py): one row a tile, keyed by its collection, the
grid generation it shows (0 for a layer) and z/x/y, with the lon/lat envelope it was built
from (the tile and its buffer), so that an edit deletes exactly the tiles its boxes meet,
inside its own transaction. Shared by every worker and kept across restarts.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2 import Geometry

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tile_cache",
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("z", sa.SmallInteger(), nullable=False),
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("envelope", Geometry("POLYGON", srid=4326, spatial_index=False),
                  nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("collection", "generation", "z", "x", "y"),
        sa.CheckConstraint("z BETWEEN 0 AND 24 AND x >= 0 AND y >= 0 AND x < (1 << z) "
                           "AND y < (1 << z)", name="tile_cache_zxy"),
    )
    # what an invalidation scans: the tiles of one collection and generation meeting a box
    op.execute("CREATE INDEX tile_cache_envelope ON tile_cache USING gist (envelope)")


def downgrade() -> None:
    op.drop_index("tile_cache_envelope", table_name="tile_cache")
    op.drop_table("tile_cache")
