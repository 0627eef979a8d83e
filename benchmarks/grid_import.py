"""`python -m benchmarks.grid_import`: a 100,000-grid city imported from its GIS file the
way a district's GIS office would bring it (`gridops grids import`): a GeoPackage in
CGCS2000 Gauss-Kruger (EPSG:4549) read by GDAL, fields mapped, levels and parents found,
validated in memory, loaded as a generation and activated.

Baselines in the same run: the same file read by GDAL and inserted into a bare PostGIS
table with no checks at all (the floor: what `ogr2ogr` does), and the old load path's
cost as measured before (the SQL invariant checks: 255-350 s, run by `python -m benchmarks`
as `validate_generation_sql` on the same city)."""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.orm import Session

from etl.demo_city import build_city, megacity_source
from layers.db import make_engine
from layers.grid_import import ImportOptions, import_grid
from layers.settings import Settings

from .env import create_database, throwaway_cluster

TARGET_S = 60.0
OLD_S = "255-350"


def write_city(path: Path, n_grids: int) -> int:
    """The megacity as one GeoPackage layer in EPSG:4549, written by GDAL."""
    specs = build_city(megacity_source(n_grids=n_grids))
    tr = Transformer.from_crs(4326, 4549, always_xy=True)
    geoms = shapely.transform(np.array([s.geometry for s in specs], dtype=object),
                              lambda x, y: tr.transform(x, y), interleaved=False)
    geoms = np.array([g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g])
                      for g in geoms], dtype=object)
    data = [np.array([s.code for s in specs], dtype=object),
            np.array([s.name for s in specs], dtype=object)]
    pyogrio.raw.write(str(path), shapely.to_wkb(geoms), data, ["GRIDCODE", "名称"],
                      layer="grid", driver="GPKG", geometry_type="MultiPolygon",
                      crs="EPSG:4549")
    return len(specs)


def baseline_insert(session: Session, path: Path) -> float:
    """GDAL read + COPY into a bare table (geometry transformed by PostGIS): no checks."""
    t0 = time.perf_counter()
    _, _, wkb, values = pyogrio.raw.read(str(path))
    session.execute(text("CREATE TABLE bare_grid (code text, name text, geom geometry)"))
    hexes = shapely.to_wkb(shapely.from_wkb(wkb), hex=True)
    buf = io.StringIO()
    for c, n, h in zip(values[0], values[1], hexes, strict=True):
        buf.write(f"{c}\t{n}\t{h}\n")
    buf.seek(0)
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.copy_expert("COPY bare_grid FROM STDIN", buf)
    session.execute(text("UPDATE bare_grid SET geom = ST_Transform(ST_SetSRID(geom, 4549), "
                         "4326)"))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    """Run and print."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.grid_import")
    ap.add_argument("--grids", type=int, default=100_000)
    args = ap.parse_args(argv)
    stages: dict[str, float] = {}
    with throwaway_cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        gpkg = Path(tmp) / "city.gpkg"
        t0 = time.perf_counter()
        n_units = write_city(gpkg, args.grids)
        made = time.perf_counter() - t0
        url = create_database(cluster, "grid_import_bench")
        settings = Settings(database_url=url)
        engine = make_engine(url)
        with Session(engine) as s, s.begin():
            base = baseline_insert(s, gpkg)
        last = [time.perf_counter(), ""]

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            if stage != last[1]:
                if last[1]:
                    stages[str(last[1])] = stages.get(str(last[1]), 0.0) + now - float(last[0])
                last[0], last[1] = now, stage

        t0 = time.perf_counter()
        with Session(engine) as s, s.begin():
            res = import_grid(s, [gpkg], ImportOptions(activate=True), settings,
                              progress=progress)
        took = time.perf_counter() - t0  # committed
        if last[1]:
            stages[str(last[1])] = stages.get(str(last[1]), 0.0) + time.perf_counter() - float(
                last[0])
        t0 = time.perf_counter()
        with Session(engine) as s, s.begin():
            again = import_grid(s, [gpkg], ImportOptions(activate=True), settings)
        took2 = time.perf_counter() - t0
        engine.dispose()
    print(f"grid import, {n_units:,} units ({args.grids:,} grids) from a "
          f"{gpkg.name} in EPSG:4549 (written in {made:.1f} s)")
    print(f"  gridops grids import --activate {took:8.1f} s   target <= {TARGET_S:.0f} s: "
          f"{'met' if took <= TARGET_S else 'MISSED'}   (old load path {OLD_S} s)")
    for name, sec in stages.items():
        print(f"    {name:<30} {sec:8.1f} s")
    print(f"    generation {res.generation}: {res.new_rows:,} rows, "
          f"{len(res.problems)} problems")
    print(f"  re-import of the unchanged file {took2:8.1f} s   ({again.new_rows} new rows, "
          f"{again.carried_over:,} carried over)")
    print(f"  baseline: GDAL read + COPY into a bare table, no checks {base:6.1f} s")
    print(f"  ratio gridops / baseline        {took / base:8.1f} x")


if __name__ == "__main__":
    main()
