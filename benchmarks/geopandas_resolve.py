"""`python -m benchmarks.geopandas_resolve IN.csv OUT.csv --db URL`: the named baseline of
`gridops resolve`, the script a GIS analyst would write: read the CSV with pandas, make
points, read the active generation's finest grids from PostGIS with geopandas, spatial join
(intersects), write each row's finest grid code. It answers less than gridops (no other
levels, no names, no H3, nothing for points outside) and is run as it is, untuned."""

from __future__ import annotations

import argparse

import geopandas as gpd
import pandas as pd
from sqlalchemy import create_engine

GRIDS_SQL = """
SELECT u.code, u.geom FROM grid_unit u
 WHERE u.generation_low <= (SELECT id FROM generation WHERE active)
   AND (u.generation_high IS NULL OR u.generation_high >= (SELECT id FROM generation
                                                           WHERE active))
   AND u.level = (SELECT max(level) FROM grid_unit)
"""


def main(argv: list[str] | None = None) -> None:
    """Read, join, write."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.geopandas_resolve")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--db", required=True, help="PostgreSQL URL")
    ap.add_argument("--lon-col", default="lon")
    ap.add_argument("--lat-col", default="lat")
    args = ap.parse_args(argv)
    df = pd.read_csv(args.src)
    points = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df[args.lon_col],
                                                              df[args.lat_col]), crs=4326)
    engine = create_engine(args.db.replace("postgresql://", "postgresql+psycopg2://", 1))
    grids = gpd.read_postgis(GRIDS_SQL, engine, geom_col="geom")
    engine.dispose()
    joined = gpd.sjoin(points, grids, how="left", predicate="intersects")
    joined.drop(columns=["geometry", "index_right"]).to_csv(args.dst, index=False)


if __name__ == "__main__":
    main()
