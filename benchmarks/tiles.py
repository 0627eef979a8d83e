"""`python -m benchmarks.tiles`: the wall's grid as vector tiles (layers/tiles.py) on the
demo city and on the 100,000-grid megacity (its own throw-away cluster).

For each city: every tile of every grid level that the wall's first view needs (the city
fitted in a 1600 x 900 screen) and of a view four times closer at the centre, built by
PostGIS and stored in tile_cache (cold), then read again (warm: cache hits); tiles/s and
bytes. Baseline in the same run: what the wall did before, one GeoJSON of every unit per
level (layers.wall.outlines, serialised), its time and bytes. Ratios: baseline time over
the tiles' cold time for the first view (> 1: the tiles are faster), and bytes likewise.
The browser's render is not timed here (benchmarks.maps times no browser either)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from layers import grids, ogc, tiles, wall
from layers.db import make_engine
from layers.settings import Settings

from .env import cities, load_grid, throwaway_cluster
from .report import Report, Target

fit_zoom = tiles.fit_zoom
SCREEN = tiles.SCREEN


view_tiles = tiles.view_tiles


def _read(engine: Engine, colls: list[ogc.Collection], gen: int,
          addrs: list[tuple[int, int, int]]) -> tuple[float, int, int]:
    """Every tile of every collection: (seconds, tiles, bytes)."""
    n = size = 0
    t0 = time.perf_counter()
    with Session(engine) as s:
        for c in colls:
            for z, x, y in addrs:
                t = tiles.tile(s, c, z, x, y, gen_id=gen)
                n += 1
                size += len(t.data)
    return time.perf_counter() - t0, n, size


def run_city(rep: Report, engine: Engine, settings: Settings, name: str, specs: list[Any]
             ) -> None:
    sec = f"tiles ({name})"
    loaded = load_grid(engine, specs, settings, f"bench-{name}")
    if loaded.generation is None:
        raise RuntimeError(f"the {name} grid did not load: {loaded.error}")
    gen = loaded.generation
    with Session(engine) as s:
        s.execute(text("ANALYZE grid_unit"))
        s.commit()
        colls = [c for c in ogc.catalogue(s) if c.kind == "grid"]
        box = ogc.extent(s, colls[0], gen)
        assert box is not None
        t0 = time.perf_counter()
        geo_bytes = 0
        for lv in grids.levels(s):
            geo_bytes += len(orjson.dumps(wall.outlines(s, gen, lv.rank)))
        t_geo = time.perf_counter() - t0
    rep.add(sec, "baseline: the GeoJSON of every level (wall.outlines)", t_geo, "s",
            note=f"{len(specs):,} units, {geo_bytes / 1e6:.1f} MB")
    bounds = (box[0], box[1], box[2], box[3])
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    z = fit_zoom(bounds)
    # a worker's start-up when another built the first views: one read into its memory
    with Session(engine) as s:
        tiles.prewarm(s, colls, gen, bounds)  # built (or found) once
        tiles.MEMORY.clear()
        t0 = time.perf_counter()
        n_pre = tiles.prewarm(s, colls, gen, bounds)
        t_pre = time.perf_counter() - t0
    rep.add(sec, f"a worker's first views from tile_cache, in one read ({n_pre} tiles)",
            t_pre, "s")
    rep.add(sec, "GeoJSON time / a worker's first views from tile_cache", t_geo / t_pre, "x",
            Target(">=", 1.0), note="at start-up or after an activation, in the background")
    for label, zoom in (("first view", z), ("4x closer", z + 2)):
        addrs = view_tiles(centre, zoom)
        with engine.begin() as c:
            c.execute(text("DELETE FROM tile_cache"))
        tiles.MEMORY.clear()
        cold, n, size = _read(engine, colls, gen, addrs)
        tiles.MEMORY.clear()
        table, _, _ = _read(engine, colls, gen, addrs)
        warm, _, _ = _read(engine, colls, gen, addrs)
        rep.add(sec, f"{label} (z{zoom}, {len(addrs)} tiles x {len(colls)} levels): cold",
                n / cold, "tiles/s", note=f"{cold:.2f} s, {size / 1e6:.2f} MB; built once "
                "a generation, in the background (prewarm) for the first views")
        rep.add(sec, f"{label}: from tile_cache (another worker built them)", n / table,
                "tiles/s", note=f"{table * 1000:.0f} ms")
        rep.add(sec, f"{label}: warm (this worker's memory)", n / warm, "tiles/s",
                note=f"{warm * 1000:.1f} ms")
        if label == "first view":
            rep.add(sec, "GeoJSON time / first view's tiles cold", t_geo / cold, "x",
                    note="> 1: the tiles are faster; a cost paid once per generation")
            rep.add(sec, "GeoJSON time / first view's tiles from tile_cache, one by one",
                    t_geo / table, "x", note="a tile outside the first views, read from the "
                    "table: one round trip each")
            rep.add(sec, "GeoJSON time / first view's tiles warm", t_geo / warm, "x",
                    Target(">=", 1.0), note="what every screen after the first gets")
            rep.add(sec, "GeoJSON bytes / first view's tile bytes", geo_bytes / max(size, 1),
                    "x", Target(">=", 1.0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tiles")
    ap.add_argument("--grids", type=int, default=100_000, help="megacity size (0: skip)")
    ap.add_argument("--quick", action="store_true", help="a 20,000-grid megacity")
    ap.add_argument("--json", type=Path, default=Path("/tmp/gridops-bench-tiles.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.grids = min(args.grids, 20_000)
    rep = Report()
    with throwaway_cluster() as cluster:
        settings = Settings(database_url=cluster.url(), home=cluster.datadir.parent)
        for name, specs, url in cities(cluster, args.grids, "tiles"):
            engine = make_engine(url)
            try:
                run_city(rep, engine, settings.model_copy(update={"database_url": url}),
                         name, specs)
            finally:
                engine.dispose()
    rep.finish("tiles: the wall's grid as vector tiles against one GeoJSON per level",
               args.json)


if __name__ == "__main__":
    main()
