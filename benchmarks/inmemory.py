"""gridops in process: index build (time, memory), batch lookups and single lookups."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from layers import grids
from layers.resolver import build_index, resolve_points
from layers.settings import Settings
from spatial.index import GridIndex

from .measure import Timing, best_of, percentiles_us, rss_bytes, timed


@dataclass
class Built:
    """The active generation's index and what building it cost."""

    index: GridIndex
    wall: float  # build_index: read from PostGIS + GridIndex.build
    rss_growth: int


def build_active(engine: Engine, settings: Settings) -> Built:
    """`layers.resolver.build_index` on the active generation, with RSS growth."""
    gc.collect()
    rss0 = rss_bytes()
    with Session(engine) as s:
        gen = grids.active_generation(s)
        if gen is None:
            raise RuntimeError("no active generation to index")
        t, idx = timed(lambda: build_index(s, gen, settings))
    gc.collect()
    return Built(idx, t.wall, rss_bytes() - rss0)


@dataclass
class Batch:
    """Batch lookup timings and the answers."""

    lookup: Timing  # idx.lookup: the planar table, no H3
    lookup_runs: int
    with_cells: Timing  # idx.lookup_with_cells: the grid and the H3 cell of every point
    cells: Timing  # the H3 step alone (idx.cells), part of with_cells
    grid: np.ndarray
    nearest: Timing  # idx.nearest on the outside points alone (tree built before)
    resolve: Timing
    resolve_runs: int
    nearest_first: float  # seconds of the first call that builds the nearest-grid tree
    outside: int


def batch(idx: GridIndex, lon: np.ndarray, lat: np.ndarray, settings: Settings,
          repeats: int = 3) -> Batch:
    """`idx.lookup` on every point (best of n), `lookup_with_cells`, `nearest` on the
    outside points, then the full `resolve_points`."""
    lookup_t, grid, runs = best_of(lambda: idx.lookup(lon, lat), repeats)
    with_t, (g2, _), _ = best_of(lambda: idx.lookup_with_cells(lon, lat), repeats)
    if not np.array_equal(g2, grid):
        raise AssertionError("lookup_with_cells and lookup disagree")
    cells_t, _, _ = best_of(lambda: idx.cells(lon, lat), repeats)
    out = np.flatnonzero(grid < 0)
    first = 0.0
    if out.size:  # the first outside point builds the nearest-grid tree: time it apart
        t0 = time.perf_counter()
        resolve_points(idx, lon[out[:1]], lat[out[:1]], settings)
        first = time.perf_counter() - t0
    olon, olat = lon[out], lat[out]
    near_t, _, _ = best_of(lambda: idx.nearest(olon, olat), repeats)
    resolve_t, res, rruns = best_of(lambda: resolve_points(idx, lon, lat, settings), repeats)
    if not np.array_equal(res.grid, grid):
        raise AssertionError("resolve_points and lookup disagree")
    return Batch(lookup_t, runs, with_t, cells_t, grid, near_t, resolve_t, rruns, first,
                 int(out.size))


@dataclass
class Single:
    """Latency of one-point lookups in process, in microseconds."""

    one_p50: float
    one_p99: float
    vec_p50: float
    vec_p99: float
    timer_us: float  # the timer's own cost, included in the figures above


def single(idx: GridIndex, lon: np.ndarray, lat: np.ndarray) -> Single:
    """`lookup_one(lon, lat)` and `lookup` with 1-element arrays, one call per point."""
    xs = [float(x) for x in lon]
    ys = [float(y) for y in lat]
    n = len(xs)
    clock = time.perf_counter_ns
    for i in range(min(n, 500)):  # warm-up
        idx.lookup_one(xs[i], ys[i])
    one = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = clock()
        idx.lookup_one(xs[i], ys[i])
        one[i] = clock() - t0
    ax = [np.array([x]) for x in xs]
    ay = [np.array([y]) for y in ys]
    vec = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = clock()
        idx.lookup(ax[i], ay[i])
        vec[i] = clock() - t0
    empty = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = clock()
        empty[i] = clock() - t0
    o50, o99 = percentiles_us(one)
    v50, v99 = percentiles_us(vec)
    return Single(o50, o99, v50, v99, percentiles_us(empty, (50,))[0])
