"""`python -m benchmarks`: gridops against PostGIS, shapely and geopandas, measured in one run
on a throw-away PostGIS cluster; a plain-text table on stdout, the same figures as JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import re
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Engine, text

from etl.demo_city import UnitSpec, build_city, megacity_source, songjiang_units
from layers.cluster import Cluster
from layers.db import make_engine, upgrade
from layers.settings import Settings
from spatial.index import GridIndex

from . import inmemory, points, postgis, pyspatial, serve_load
from .env import analyze, create_database, load_grid, throwaway_cluster, validation_seconds
from .measure import Timing, peak_rss_bytes, timed
from .report import Report, Target, log

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
SEED = 20260101


@dataclass(frozen=True)
class Goals:
    """The targets of one grid set."""

    batch_per_core: float  # points/s
    build_s: float
    memory_mib: float = 2048.0
    vs_default: float = 20.0
    vs_tuned: float = 2.0
    lookup_us: float = 5.0
    vs_python: float = 2.0  # idx.lookup / shapely STRtree and / geopandas sjoin (issue #17)
    cells_vs_shapely: float = 1.2  # idx.lookup_with_cells / shapely STRtree
    outside_per_core: float = 1_000_000  # idx.nearest on outside points, points/s


DEMO_GOALS = Goals(batch_per_core=2_000_000, build_s=2.0)
MEGA_GOALS = Goals(batch_per_core=1_000_000, build_s=60.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: demo grid only, 200,000 points, a 5 s HTTP run")
    p.add_argument("--points", type=int, default=None,
                   help="random points per grid set (default 1,000,000; 200,000 with --quick)")
    p.add_argument("--skip-megacity", action="store_true", help="demo grid only")
    p.add_argument("--skip-http", action="store_true", help="no HTTP load")
    p.add_argument("--http-seconds", type=int, default=None,
                   help="duration of the HTTP load (default 15; 5 with --quick)")
    p.add_argument("--megacity-grids", type=int, default=100_000, help=argparse.SUPPRESS)
    p.add_argument("--load-budget", type=float, default=900.0,
                   help="seconds the megacity load (validation included) may take before it "
                        "is cancelled and its PostGIS parts skipped (default 900)")
    p.add_argument("--validation-breakdown", action="store_true",
                   help="also time each invariant check on the megacity (one more pass)")
    p.add_argument("--json", type=Path, default=Path("/tmp/gridops-bench.json"),
                   help="where to write the figures as JSON (default /tmp/gridops-bench.json)")
    args = p.parse_args(argv)
    if args.points is None:
        args.points = 200_000 if args.quick else 1_000_000
    if args.http_seconds is None:
        args.http_seconds = 5 if args.quick else 15
    if args.quick:
        args.skip_megacity = True
    if args.points < 1000:
        p.error("--points must be at least 1000")
    json_path = args.json.resolve()
    if json_path == REPO or REPO in json_path.parents:
        p.error(f"--json must be outside the repository ({REPO})")
    return args


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def per_core(n: int, t: Timing) -> float:
    """Points per second per busy core: by CPU time when threads ran, else by wall time."""
    return n / max(t.wall, t.cpu)


def _versions(url: str) -> dict[str, Any]:
    import geopandas
    import h3ronpy
    import numba

    out: dict[str, Any] = {
        "python": platform.python_version(), "numpy": np.__version__,
        "shapely": shapely.__version__, "geos": shapely.geos_version_string,
        "geopandas": geopandas.__version__, "numba": numba.__version__,
        "h3ronpy": getattr(h3ronpy, "__version__", "?"),
    }
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            out["postgresql"] = c.scalar(text("SHOW server_version"))
            out["postgis"] = c.scalar(text("SELECT postgis_lib_version()"))
            out["postgis_geos"] = c.scalar(text("SELECT postgis_geos_version()"))
            out["max_parallel_workers_per_gather"] = c.scalar(
                text("SHOW max_parallel_workers_per_gather"))
    finally:
        eng.dispose()
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# ------------------------------------------------------------------ one grid set


def _parallel(plan: str) -> str:
    """A remark when PostgreSQL ran the query on parallel workers (gridops: one core)."""
    m = re.search(r"\((\d+) workers\)", plan)
    if not m:
        return ""
    return f"; {m.group(1)} parallel workers + leader, so more than one core (gridops: one)"


def bench_grid_set(rep: Report, sec: str, goals: Goals, idx: GridIndex, settings: Settings,
                   n: int, db_url: str | None) -> None:
    """Batch, single lookups, the PostGIS and Python baselines and agreement on one grid."""
    bounds = points.expand(tuple(shapely.total_bounds(idx.geoms)), 0.02)
    lon, lat = points.uniform(bounds, n, SEED)
    log(f"[{sec}] {n:,} random points over {bounds}")

    b = inmemory.batch(idx, lon, lat, settings)
    inside = int((b.grid >= 0).sum())
    rep.add(sec, "points inside the territory", 100.0 * inside / n, "%",
            note=f"{inside:,} of {n:,}, uniform over the bbox grown 2% a side")
    rate = per_core(n, b.lookup)
    rep.add(sec, "gridops idx.lookup, per core", rate, "points/s",
            Target(">=", goals.batch_per_core),
            note=f"best of {b.lookup_runs}: {b.lookup.wall:.3f} s wall, "
                 f"{b.lookup.cores:.2f} cores busy")
    with_rate = per_core(n, b.with_cells)
    rep.add(sec, "gridops idx.lookup_with_cells (+ H3 cell), per core", with_rate, "points/s",
            note=f"{b.with_cells.wall:.3f} s wall; H3 cells alone (idx.cells) "
                 f"{b.cells.wall:.3f} s = {100.0 * b.cells.wall / b.with_cells.wall:.0f} %")
    rep.add(sec, "gridops idx.nearest on the outside points, per core",
            per_core(b.outside, b.nearest) if b.outside else None, "points/s",
            Target(">=", goals.outside_per_core),
            note=f"{b.outside:,} outside points: {b.nearest.wall:.3f} s wall; nearest grid "
                 f"and geodesic distance")
    rep.add(sec, "gridops resolve_points (+ nearest outside), per core",
            per_core(n, b.resolve), "points/s",
            note=f"best of {b.resolve_runs}: {b.resolve.wall:.3f} s; {b.outside:,} outside "
                 f"points get the nearest grid; first call builds its tree in "
                 f"{b.nearest_first:.2f} s (not timed)")

    sx, sy = points.inside(bounds, 10_000, SEED + 1, idx.lookup)
    s = inmemory.single(idx, sx, sy)
    rep.add(sec, "idx.lookup_one p50", s.one_p50, "µs", Target("<=", goals.lookup_us),
            note=f"10,000 points inside, one call each; p99 {s.one_p99:.1f} µs; "
                 f"timer {s.timer_us:.2f} µs included")
    rep.add(sec, "idx.lookup_one p99", s.one_p99, "µs")
    rep.add(sec, "idx.lookup(1-element arrays) p50", s.vec_p50, "µs",
            note=f"p99 {s.vec_p99:.1f} µs; the array path, for batches")
    rep.add(sec, "idx.lookup(1-element arrays) p99", s.vec_p99, "µs")

    if db_url is not None:
        log(f"[{sec}] PostGIS baselines")
        pg = postgis.measure(db_url, lon, lat)
        d = pg.default
        dnote = f"{d.seconds:.2f} s" if d.seconds else d.note
        if pg.default_scaled_from:
            dnote += (f" on the first {pg.default_scaled_from:,} points (all {n:,} would take "
                      f"> 5 min), rate applied to all")
        rep.add(sec, "PostGIS ST_Covers join, default plan", d.rate, "points/s",
                note=f"{dnote}; count(DISTINCT point){_parallel(d.plan)}; plan: {d.plan}")
        t = pg.best_tuned
        if t is not None:
            rep.add(sec, "PostGIS polygon-outer join, tuned (best)", t.rate, "points/s",
                    note=f"{t.name}: {t.seconds:.2f} s{_parallel(t.plan)}; plan: {t.plan}")
        for x in pg.tuned:
            if x is not t:
                rep.note(f"{sec}: tuned candidate '{x.name}': "
                         + (f"{x.seconds:.2f} s" if x.seconds else x.note)
                         + f"; plan: {x.plan}")
        if pg.resolve_sql_s:
            rep.add(sec, "layers.resolver.resolve_sql (product SQL path)",
                    pg.resolve_sql_n / pg.resolve_sql_s, "points/s",
                    note=f"{pg.resolve_sql_n:,} points in one call: {pg.resolve_sql_s:.2f} s; "
                         f"{pg.resolve_sql_differ} codes differ from the default plan")
        if d.rate:
            rep.add(sec, "gridops per core / PostGIS default", rate / d.rate, "x",
                    Target(">=", goals.vs_default))
        if t is not None and t.rate:
            rep.add(sec, "gridops per core / PostGIS tuned", rate / t.rate, "x",
                    Target(">=", goals.vs_tuned))
        # counts: the default plan, the tuned ones and gridops must cover the same points
        m = d.points
        g_in_m = int((b.grid[:m] >= 0).sum())
        counts = {"default": d.covered, "gridops": g_in_m if m < n else inside}
        if m == n:
            counts.update({x.name: x.covered for x in pg.tuned if x.covered is not None})
        same = len(set(counts.values())) == 1
        rep.add(sec, "points covered: PostGIS plans vs gridops differ", 0 if same else 1,
                "(0 = same)", Target("<=", 0),
                note="; ".join(f"{k}: {v:,}" for k, v in counts.items() if v is not None)
                + (f" (first {m:,} points)" if m < n else "")
                + "; distinct points, since edge points match two grids in a plain join "
                  "and pieces of one grid in the piece join")
        # agreement on the sample: lowest covering code (the documented tie rule)
        k = pg.sample_n
        ours = [str(idx.codes[g]) if g >= 0 else None for g in b.grid[:k].tolist()]
        theirs = [pg.sample_codes.get(i) for i in range(k)]
        bad = sum(a != c for a, c in zip(ours, theirs, strict=True))
        rep.add(sec, "codes differing from PostGIS (default plan)", bad, f"of {k:,}",
                Target("<=", 0), note="sample of the first points; lowest covering code wins")
        rep.add(sec, "PostGIS: COPY + GiST + ANALYZE of the points", pg.load_s, "s",
                note="not part of any timed query")
    else:
        rep.note(f"{sec}: PostGIS baselines skipped (the grid is not in PostGIS)")

    log(f"[{sec}] shapely / geopandas baselines")
    for r in pyspatial.measure(idx.geoms, idx.codes, lon, lat):
        prate = n / r.timing.wall
        rep.add(sec, r.name, prate, "points/s",
                note=f"best of {r.runs}: {r.timing.wall:.2f} s; {r.note}"
                     + ("" if r.covered == inside
                        else f"; covers {r.covered:,} points, gridops {inside:,}"))
        target = (Target(">=", goals.vs_python)
                  if r.short in ("shapely grid tree", "geopandas sjoin") else None)
        rep.add(sec, f"gridops per core / {r.short}", rate / prate, "x", target)
        if r.short == "shapely grid tree":
            rep.add(sec, "gridops with H3 cells per core / shapely grid tree",
                    with_rate / prate, "x", Target(">=", goals.cells_vs_shapely),
                    note="idx.lookup_with_cells")
        gc.collect()


def index_rows(rep: Report, sec: str, goals: Goals, built: inmemory.Built) -> None:
    """Build time and memory of an index."""
    st = built.index.stats
    rep.add(sec, "index build: build_index (read PostGIS + build)", built.wall, "s",
            Target("<=", goals.build_s),
            note=f"{st.grids:,} grids; planar table {st.table_cells:,} cells of "
                 f"{st.cell_m:.0f} m, {st.interior_cells:,} interior, {st.boundary_cells:,} "
                 f"boundary; H3 res {st.resolution} in answers")
    rep.add(sec, "index build: GridIndex.build (idx.stats.seconds)", st.seconds, "s",
            Target("<=", goals.build_s))
    rep.add(sec, "index memory: idx.stats.nbytes", st.nbytes / MIB, "MiB",
            Target("<=", goals.memory_mib))
    rep.add(sec, "index memory: RSS growth of build_index", built.rss_growth / MIB, "MiB",
            Target("<=", goals.memory_mib),
            note="includes shapely geometries and allocator slack")


# ------------------------------------------------------------------ the run


def run_demo(rep: Report, cluster: Cluster, args: argparse.Namespace) -> Engine:
    """Load the demo grid (real loader), then every measurement on it."""
    sec = "demo"
    url = cluster.url()
    settings = Settings(database_url=url, home=cluster.datadir.parent)
    upgrade(url)
    rep.meta["versions"] = _versions(url)
    engine = make_engine(url)
    t_build, specs = timed(songjiang_units)
    n_grids = sum(1 for u in specs if u.level == max(x.level for x in specs))
    rep.add(sec, "demo city built (etl.demo_city)", t_build.wall, "s",
            note=f"{len(specs):,} units, {n_grids:,} grids")
    loaded = load_grid(engine, specs, settings, "bench-demo")
    if loaded.generation is None:
        raise RuntimeError(f"the demo grid did not load: {loaded.error}")
    rep.add(sec, "load_generation (insert + validate x2 + activate)", loaded.seconds, "s")
    rep.add(sec, "ANALYZE grid_unit, grid_piece after the load", analyze(engine), "s",
            note="the loader leaves no statistics; every query below runs with them")
    checks = validation_seconds(engine, loaded.generation, settings)
    rep.add(sec, "one validation pass (validate_generation)", sum(checks.values()), "s",
            note=", ".join(f"{k} {v:.2f}" for k, v in checks.items()))
    built = inmemory.build_active(engine, settings)
    index_rows(rep, sec, DEMO_GOALS, built)
    bench_grid_set(rep, sec, DEMO_GOALS, built.index, settings, args.points, url)
    if not args.skip_http:
        run_http(rep, cluster, built.index, args)
    return engine


def run_http(rep: Report, cluster: Cluster, idx: GridIndex, args: argparse.Namespace) -> None:
    """`gridops serve --workers 2` on the demo database and a bounded loopback load; then
    side by side with the two baselines of benchmarks/baseline_servers.py (a bare
    Starlette + shapely STRtree app, and one asking PostGIS per request), each under
    uvicorn with 2 workers, the same wrk script at 8 connections, alternated round by
    round."""
    sec = "http"
    bounds = tuple(shapely.total_bounds(idx.geoms))
    lon, lat = points.inside(bounds, 10_000, SEED + 2, idx.lookup)
    expect = [str(idx.codes[g]) if g >= 0 else None for g in idx.lookup(lon, lat).tolist()]
    home = cluster.datadir.parent
    log(f"[{sec}] starting gridops serve --workers 2")
    t0 = time.perf_counter()
    rounds, round_s = 3, max(3, args.http_seconds // 3)
    with ExitStack() as stack:
        base = stack.enter_context(serve_load.server(cluster.url(), home, workers=2))
        ready = time.perf_counter() - t0
        rep.add(sec, "server start-up to ready (2 workers)", ready, "s",
                note="migrations, then each worker builds its index")
        bad = serve_load.check_answers(base, lon[:200], lat[:200], expect[:200])
        rep.add(sec, "GET /resolve answers differing from idx", bad, "of 200", Target("<=", 0))
        log(f"[{sec}] load on {base}/resolve for {args.http_seconds} s")
        ld = serve_load.load(base, lon, lat, home, args.http_seconds)
        # latency under a bounded load: 8 connections, the same two shared cores
        bounded = (serve_load.wrk_load(base, lon, lat, home, connections=8,
                                       seconds=args.http_seconds)
                   if shutil.which("wrk") else None)
        sbs = None
        if shutil.which("wrk"):
            log(f"[{sec}] baselines: bare Starlette + STRtree, PostGIS per request "
                f"(uvicorn, 2 workers each)")
            servers = {"gridops": base}
            for kind in ("bare", "postgis"):
                servers[kind] = stack.enter_context(
                    serve_load.baseline_server(kind, cluster.url(), home, workers=2))
            for kind in ("bare", "postgis"):
                bad = serve_load.check_answers(servers[kind], lon[:200], lat[:200],
                                               expect[:200], key=None)
                rep.add(sec, f"baseline {kind}: answers differing from idx", bad, "of 200",
                        Target("<=", 0))
            log(f"[{sec}] side by side: {rounds} rounds of {round_s} s each, 8 connections")
            sbs = serve_load.side_by_side(servers, lon, lat, home, rounds=rounds,
                                          seconds=round_s, connections=8)
    note = (f"{ld.tool}, {ld.connections} connections, {ld.seconds:.1f} s, "
            f"{ld.requests:,} requests, 10,000 distinct points inside the district; "
            f"client and server share the 2 cores")
    rep.add(sec, "GET /resolve throughput (saturating, 32 conn.)", ld.rps, "req/s",
            Target(">=", 5000), note=note)
    rep.add(sec, "GET /resolve latency p50 (32 conn.)", ld.p50_ms, "ms")
    rep.add(sec, "GET /resolve latency p99 (32 conn., queueing)", ld.p99_ms, "ms")
    rep.add(sec, "GET /resolve errors", ld.errors, "", Target("<=", 0))
    if bounded is not None:
        rep.add(sec, "GET /resolve throughput (bounded, 8 conn.)", bounded.rps, "req/s")
        rep.add(sec, "GET /resolve latency p50 (bounded, 8 conn.)", bounded.p50_ms, "ms")
        rep.add(sec, "GET /resolve latency p99 (bounded, 8 conn.)", bounded.p99_ms, "ms",
                Target("<=", 15))
    if sbs is not None:
        _side_by_side_rows(rep, sec, sbs, rounds, round_s)
    else:
        rep.note(f"{sec}: wrk is not installed: the baselines were not measured")


def _side_by_side_rows(rep: Report, sec: str, sbs: serve_load.SideBySide, rounds: int,
                       round_s: int) -> None:
    how = (f"median of {rounds} alternated rounds of {round_s} s, wrk 8 connections, the "
           f"same Lua script, 2 uvicorn workers each")
    names = {"gridops": "gridops GET /resolve (full answer)",
             "bare": "baseline: bare Starlette + shapely STRtree (code only)",
             "postgis": "baseline: PostGIS ST_Covers per request, pooled"}
    for kind, name in names.items():
        rep.add(sec, f"{name}, throughput", sbs.rps(kind), "req/s", note=how)
        rep.add(sec, f"{name}, p99", sbs.p99(kind), "ms",
                Target("<=", 15) if kind == "gridops" else None,
                note=f"errors {sbs.errors(kind)}")
    for kind, bound in (("bare", 1.0), ("postgis", 3.0)):
        rounds_ = ", ".join(f"{x:.2f}" for x in sbs.ratios("gridops", kind))
        rep.add(sec, f"GET /resolve: gridops / {kind} baseline (same run)",
                sbs.ratio("gridops", kind), "x", Target(">=", bound),
                note=f"per round {rounds_}; {how}")
    rep.add(sec, "GET /resolve errors (side by side)", sum(sbs.errors(k) for k in names), "",
            Target("<=", 0))


def index_from_specs(units: list[UnitSpec]) -> GridIndex:
    """The index built straight from generated grids (when PostGIS could not load them)."""
    return GridIndex.build(0, [u.code for u in units], [u.name for u in units],
                           [u.geometry for u in units])


def validation_new_vs_old(rep: Report, sec: str, engine: Engine, gen_id: int,
                          settings: Settings, budget_s: float) -> None:
    """validate_generation (in memory) against the old PostGIS checks, the named baseline
    (timed once; cancelled after budget_s)."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from layers import grids

    with Session(engine) as s:
        t0 = time.perf_counter()
        found = grids.validate_generation(s, gen_id, settings)
        new_s = time.perf_counter() - t0
        n = s.scalar(text("SELECT count(*) FROM grid_unit"))
        rep.add(sec, "validate_generation (in memory, spatial.coverage)", new_s, "s",
                Target("<=", 30.0),
                note=f"{n:,} units, {len(found)} violations; one query (ST_AsBinary) + "
                     "shapely/GEOS checks in this process")
        log(f"[{sec}] baseline: the old PostGIS checks (validate_generation_sql), "
            f"budget {budget_s:.0f} s")
        s.execute(text(f"SET statement_timeout = {int(budget_s * 1000)}"))
        t0 = time.perf_counter()
        try:
            old = grids.validate_generation_sql(s, gen_id, settings)
        except DBAPIError:
            s.rollback()
            rep.add(sec, "baseline: validate_generation_sql (old PostGIS checks)",
                    time.perf_counter() - t0, "s", note=f"cancelled after {budget_s:.0f} s")
            return
        old_s = time.perf_counter() - t0
        s.rollback()
    rep.add(sec, "baseline: validate_generation_sql (old PostGIS checks)", old_s, "s",
            note=f"{len(old)} violations; timed once; sibling_overlap dominates")
    rep.add(sec, "validate_generation: old SQL / in memory", old_s / new_s, "x")


def run_megacity(rep: Report, cluster: Cluster, args: argparse.Namespace) -> None:
    """The 100,000-grid city in a second database, then every measurement on it."""
    sec = "megacity"
    t_build, specs = timed(lambda: build_city(megacity_source(n_grids=args.megacity_grids)))
    finest = max(u.level for u in specs)
    grids_ = [u for u in specs if u.level == finest]
    rep.add(sec, "megacity built (etl.demo_city)", t_build.wall, "s",
            note=f"{len(specs):,} units, {len(grids_):,} grids")
    url = create_database(cluster, "gridops_mega")
    settings = Settings(database_url=url, home=cluster.datadir.parent)
    engine = make_engine(url)
    try:
        log(f"[{sec}] load_generation of {len(specs):,} units (budget {args.load_budget:.0f} s)")
        loaded = load_grid(engine, specs, settings, "bench-megacity", budget_s=args.load_budget)
        what = "cancelled" if loaded.error else "validate once + insert + activate"
        rep.add(sec, f"load_generation ({what})", loaded.seconds, "s", Target("<=", 60.0),
                note=loaded.error or "validated once, in memory (spatial.coverage) before "
                                     "anything is written; the loader validating twice in "
                                     "PostGIS took 255-350 s")
        if loaded.generation is not None:
            validation_new_vs_old(rep, sec, engine, loaded.generation, settings,
                                  args.load_budget)
        if loaded.generation is not None and args.validation_breakdown:
            checks = validation_seconds(engine, loaded.generation, settings)
            rep.add(sec, "one validation pass (validate_generation)", sum(checks.values()), "s",
                    note=", ".join(f"{k} {v:.1f}" for k, v in checks.items()))
        if loaded.generation is not None:
            rep.add(sec, "ANALYZE grid_unit, grid_piece after the load", analyze(engine), "s")
            built = inmemory.build_active(engine, settings)
            index_rows(rep, sec, MEGA_GOALS, built)
            idx = built.index
            db_url: str | None = url
        else:
            rep.note(f"{sec}: the load was too slow ({loaded.error}); PostGIS parts skipped, "
                     "the index is built from the generated geometry instead")
            t_idx, idx = timed(lambda: index_from_specs(grids_))
            rep.add(sec, "index build: GridIndex.build (from memory)", t_idx.wall, "s",
                    Target("<=", MEGA_GOALS.build_s))
            db_url = None
        specs.clear()
        grids_.clear()
        gc.collect()
        bench_grid_set(rep, sec, MEGA_GOALS, idx, settings, args.points, db_url)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run everything; print the table; write the JSON."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    rep = Report()
    started = dt.datetime.now(dt.UTC)
    rep.meta = {
        "started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:],
        "points": args.points, "quick": args.quick, "cpu": _cpu_model(),
        "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
    }
    log(f"gridops benchmarks: {args.points:,} points"
        + (", quick" if args.quick else "") + f"; load average {os.getloadavg()}")
    failed: BaseException | None = None
    try:
        with throwaway_cluster() as cluster:
            log(f"throw-away PostGIS cluster on 127.0.0.1:{cluster.port}")
            engine = run_demo(rep, cluster, args)
            engine.dispose()
            gc.collect()
            if not args.skip_megacity:
                run_megacity(rep, cluster, args)
    except KeyboardInterrupt as e:
        failed = e
        log("interrupted: cluster and server stopped")
    except Exception as e:  # the figures so far are still worth printing
        failed = e
        log(f"failed: {type(e).__name__}: {e}")
    total = time.perf_counter() - rep.t0
    rep.meta.update({"seconds": round(total, 1), "load_avg_end": os.getloadavg(),
                     "peak_rss_mib": round(peak_rss_bytes() / MIB, 1)})
    if failed is not None:
        rep.note(f"the run stopped early: {type(failed).__name__}: {failed}")
    v = rep.meta.get("versions", {})
    rep.finish(f"gridops benchmarks, {started:%Y-%m-%d %H:%M} UTC: {rep.meta['cpus']} x "
               f"{rep.meta['cpu']}; PostgreSQL {v.get('postgresql', '?')}, "
               f"PostGIS {v.get('postgis', '?')}, shapely {v.get('shapely', '?')}, "
               f"geopandas {v.get('geopandas', '?')}\n"
               f"{args.points:,} random points per grid set; load average "
               f"{rep.meta['load_avg_start'][0]:.2f} at start, "
               f"{rep.meta['load_avg_end'][0]:.2f} at end; whole run {total:.0f} s; "
               f"peak RSS {rep.meta['peak_rss_mib']:,.0f} MiB", args.json)
    if failed is not None:
        import traceback

        traceback.print_exception(failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
