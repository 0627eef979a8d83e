"""`python -m benchmarks.maps`: Gi* on 100,000+ H3 cells against PySAL esda (the analysts'
reference) on the same data, then the hot-spot API and the map pages' server render on the
demo city with a year of 1,000,000 cases (its own throw-away cluster)."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import shapely

from spatial import hotspots as gi


def _time(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_gi(target_cells: int = 100_000) -> None:
    """Gi* of clustered counts on a study area of at least target_cells res-10 hexagons."""
    side = 0.1
    while True:
        area = shapely.box(121.0, 30.8, 121.0 + side * 1.2, 30.8 + side)
        cells = gi.cells_covering(area, 10)
        if cells.size >= target_cells:
            break
        side *= 1.25
    t0 = time.perf_counter()
    nb = gi.neighbourhood(cells)
    _ = nb.matrix, nb.cardinality
    build = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    y = rng.poisson(0.3, nb.n).astype(float)
    for c in rng.choice(nb.n, 40, replace=False):  # markets and stations
        y[nb.indices[nb.indptr[c]:nb.indptr[c + 1]]] += rng.poisson(8, nb.indptr[c + 1]
                                                                    - nb.indptr[c])
    g = gi.gi_star(y, nb)
    warm = _time(lambda: gi.gi_star(y, nb), 20)
    months = np.stack([rng.permutation(y) for _ in range(12)], axis=1)
    twelve = _time(lambda: gi.gi_star(months, nb), 5)

    from esda.getisord import G_Local
    from libpysal.weights import W

    m = nb.matrix.tolil()
    m.setdiag(0)
    t0 = time.perf_counter()
    w = W.from_sparse(m.tocsr())
    w_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = G_Local(y, w, transform="B", star=True, permutations=0)
    esda_s = time.perf_counter() - t0
    dz = float(np.abs(np.asarray(e.Zs) - g.z).max())
    p50 = statistics.median(warm)
    print(f"\nGi* on {nb.n:,} H3 res-10 cells (k=1 ring, self included)")
    print(f"  gridops gi_star           p50 {p50 * 1e3:8.2f} ms   (target <= 50 ms: "
          f"{'PASS' if p50 <= 0.05 else 'MISS'})")
    print(f"  12 months at once         p50 {statistics.median(twelve) * 1e3:8.2f} ms")
    print(f"  neighbourhood build (cold, cached per generation and res) {build * 1e3:8.1f} ms")
    print(f"  baseline esda G_Local(star=True, permutations=0) {esda_s * 1e3:8.1f} ms "
          f"-> {esda_s / p50:,.0f}x  (plus libpysal W from the same matrix {w_s * 1e3:.0f} ms)")
    print(f"  max |z - z_esda| = {dz:.2e}; hot 99%: {(g.bin == 3).sum()}, "
          f"cold 99%: {(g.bin == -3).sum()}")


def bench_pages(cases: int) -> None:
    """Server-side render of the hot spots and the pages with `cases` cases of history."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from api.app import create_app
    from etl.demo import load_demo_all
    from etl.demo_history import generate_history
    from layers.db import make_engine
    from layers.settings import Settings

    from .env import create_database, throwaway_cluster

    with throwaway_cluster() as cluster:
        url = create_database(cluster, "gridops_maps")
        settings = Settings(database_url=url, home=cluster.datadir.parent,
                            scheduler_interval_s=0)
        eng = make_engine(url)
        t0 = time.perf_counter()
        with Session(eng) as s, s.begin():
            load_demo_all(s, settings, history=False)
        with Session(eng) as s, s.begin():
            generate_history(s, cases=cases, settings=settings)
        with eng.connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
            n = c.execute(text('SELECT count(*) FROM "case"')).scalar_one()
            spot = c.execute(text(
                "SELECT ST_X(geom), ST_Y(geom) FROM asset WHERE kind LIKE 'manhole%' "
                "ORDER BY code LIMIT 1")).one()
            grid = c.execute(text('SELECT grid_code FROM "case" WHERE grid_code IS NOT NULL '
                                  "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar_one()
        print(f"\nmap pages on the demo city with {n:,} cases (loaded in "
              f"{time.perf_counter() - t0:.0f} s); server time in process, median of 5 "
              f"after the first")
        app = create_app(settings, listen=False)
        paths = [
            ("/hotspots?res=8 (30 days)", "/hotspots?res=8"),
            ("/hotspots?res=10 (30 days)", "/hotspots?res=10"),
            ("/hotspots?res=9&period=365d", "/hotspots?res=9&period=365d"),
            ("/hotspots/chronic (6 months)", "/hotspots/chronic"),
            ("/map/wall", "/map/wall"),
            ("/map/wall/counts.json", "/map/wall/counts.json"),
            ("/map/wall/open.json (city)", "/map/wall/open.json?bbox=120.9,30.8,121.5,31.3"
                                           "&zoom=11"),
            ("/map/lookup", f"/map/lookup?lon={spot[0]}&lat={spot[1]}"),
            (f"/map/grid/{grid}", f"/map/grid/{grid}"),
        ]
        with TestClient(app) as client:
            print(f"  {'request':34s} {'first':>9s} {'median':>9s} {'bytes':>10s}  ≤ 2 s")
            for name, path in paths:
                t0 = time.perf_counter()
                r = client.get(path)
                first = time.perf_counter() - t0
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
                med = statistics.median(_time(partial(client.get, path), 5))
                print(f"  {name:34s} {first:8.3f}s {med:8.3f}s {len(r.content):>10,}  "
                      f"{'PASS' if med <= 2.0 else 'MISS'}")
        eng.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=1_000_000, help="cases of history")
    ap.add_argument("--quick", action="store_true", help="50,000 cases")
    ap.add_argument("--gi-only", action="store_true", help="only the Gi* micro-benchmark")
    a = ap.parse_args()
    bench_gi()
    if not a.gi_only:
        bench_pages(50_000 if a.quick else a.cases)


if __name__ == "__main__":
    main()
