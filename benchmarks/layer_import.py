"""`python -m benchmarks.layer_import`: 1,000,000 synthetic assets imported from a GeoPackage
through gridops' validating importer (every row checked, its grid resolved, audit events),
against a baseline in the same run: the same rows read from the same file and COPYed into a
bare table with no validation and no grid. The ratio is what validation and grid resolution
cost."""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import responsibility as resp
from layers.layer_files import import_layer_file, read_file

from .env import throwaway_cluster
from .owner import KINDS, demo_with_layers

TARGET_S = 60.0


def synthetic_assets(path: Path, n: int, district: shapely.Geometry, seed: int = 11) -> None:
    """n point assets inside the district, written as a GeoPackage by GDAL."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = district.bounds
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    got = 0
    while got < n:
        x = rng.uniform(x0, x1, n)
        y = rng.uniform(y0, y1, n)
        inside = shapely.contains_xy(district, x, y)
        xs.append(x[inside])
        ys.append(y[inside])
        got += int(inside.sum())
    lon = np.concatenate(xs)[:n]
    lat = np.concatenate(ys)[:n]
    kind = rng.integers(0, len(KINDS), n)
    cat = np.array([k[0] for k in KINDS], dtype=object)[kind]
    codes = np.array([f"310117{c[1:]}{i % 1_000_000:06d}" for i, c in enumerate(cat)],
                     dtype=object)
    dept = np.array([k[2] for k in KINDS], dtype=object)[kind]
    names = ["code", "category_code", "kind", "name", "supervising_department",
             "owner_department", "maintainer_department", "state"]
    data = [codes, cat, np.array([k[1] for k in KINDS], dtype=object)[kind],
            np.full(n, "", dtype=object), dept, dept, dept, np.full(n, "intact", dtype=object)]
    geoms = shapely.to_wkb(shapely.points(lon, lat))
    pyogrio.raw.write(str(path), geoms, data, names, layer="assets", driver="GPKG",
                      geometry_type="Point", crs="EPSG:4326")


def baseline_copy(session: Session, path: Path) -> int:
    """The same file read by GDAL and COPYed into a bare table: no checks, no grid."""
    _, _, wkb, values = pyogrio.raw.read(str(path))
    session.execute(text("CREATE TABLE bare_asset (code text, category_code text, kind text, "
                         "name text, supervising_department text, owner_department text, "
                         "maintainer_department text, state text, geom geometry)"))
    hexes = shapely.to_wkb(shapely.from_wkb(wkb), hex=True, include_srid=False)
    buf = io.StringIO()
    cols = [list(v) for v in values]
    for i in range(len(hexes)):
        buf.write("\t".join(str(c[i]) for c in cols))
        buf.write(f"\t{hexes[i]}\n")
    buf.seek(0)
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.copy_expert("COPY bare_asset FROM STDIN", buf)
    return len(hexes)


def main(argv: list[str] | None = None) -> None:
    """Run and print."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.layer_import")
    ap.add_argument("--assets", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    with throwaway_cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        _, engine, specs = demo_with_layers(cluster, "layer_import_bench")
        gpkg = Path(tmp) / "assets.gpkg"
        t0 = time.perf_counter()
        synthetic_assets(gpkg, args.assets, specs[0].geometry)
        made = time.perf_counter() - t0
        size = gpkg.stat().st_size
        with Session(engine) as s, s.begin():
            t0 = time.perf_counter()
            n_base = baseline_copy(s, gpkg)
        base = time.perf_counter() - t0
        d = resp.layer("assets")
        with Session(engine) as s, s.begin():
            t0 = time.perf_counter()
            table = read_file(d, gpkg)
            t_read = time.perf_counter() - t0
            rep = import_layer_file(s, d, table, actor="bench")
        took = time.perf_counter() - t0  # committed
        with Session(engine) as s:
            located = s.scalar(text("SELECT count(*) FROM asset WHERE valid_to IS NULL AND "
                                    "grid_code IS NOT NULL"))
        engine.dispose()
    n = args.assets
    print(f"layer import, {n:,} point assets from a {size / 2**20:.0f} MiB GeoPackage "
          f"(written in {made:.1f} s)")
    print(f"  gridops import_layer_file   {took:8.1f} s   {n / took:10,.0f} rows/s   "
          f"target <= {TARGET_S:.0f} s: {'met' if took <= TARGET_S else 'MISSED'}")
    print(f"    of which reading the file {t_read:8.1f} s")
    print(f"    created {rep.created:,}, refused {len(rep.refused):,}, located in a grid "
          f"{located:,}")
    print(f"  baseline: GDAL read + COPY into a bare table, no checks, no grid "
          f"{base:6.1f} s   {n_base / base:10,.0f} rows/s")
    print(f"  ratio gridops / baseline    {took / base:8.1f} x")


if __name__ == "__main__":
    main()
