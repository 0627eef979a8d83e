"""Resolve points to the grid chain: the in-memory index per generation, kept current by
LISTEN/NOTIFY, and the SQL path (ST_Covers, lowest code wins) that batch jobs and tests use."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import grids, heap
from layers.models import Generation
from layers.settings import Settings
from layers.versioning import in_generation
from spatial import h3index
from spatial.crs import parse_crs, to_wgs84
from spatial.errors import InvalidCoordinate
from spatial.index import GridIndex, Level

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationRef:
    """What an answer says about the generation it used."""

    id: int
    label: str
    activated_at: datetime | None


def finest_level(session: Session, gen_id: int) -> int:
    """The finest level present in a generation."""
    lvl = session.scalar(text(f"SELECT max(u.level) FROM grid_unit u WHERE {in_generation('u')}"),
                         {"g": gen_id})
    if lvl is None:
        raise grids.NotFound(f"generation {gen_id} has no grid units")
    return int(lvl)


def warm_nearest(idx: GridIndex) -> None:
    """The nearest-grid buckets for outside points, now rather than on the first such
    request (a point by the territory: the far path's KD-tree, and scipy, wait for a far
    point, which most runs never see)."""
    x0, y0 = idx.meta["bounds"][:2]
    idx.nearest(np.array([x0 - 1e-3]), np.array([y0 - 1e-3]))


def build_index(session: Session, gen: Generation, settings: Settings,
                resolution: int | None = None, *, warm: bool = True) -> GridIndex:
    """Read a generation from PostGIS and build its index (finest level + parent arrays);
    warm: its nearest-grid structure too (else built on the first point outside)."""
    rows = session.execute(
        text(f"SELECT u.code, u.name, u.level, u.parent_code, ST_AsBinary(u.geom) AS wkb "
             f"FROM grid_unit u WHERE {in_generation('u')} ORDER BY u.level, u.code"),
        {"g": gen.id},
    ).all()
    if not rows:
        raise grids.NotFound(f"generation {gen.id} has no grid units")
    finest = max(r.level for r in rows)
    fin = [r for r in rows if r.level == finest]
    parent_of = {r.code: r.parent_code for r in rows}
    lvls = {lv.rank: lv for lv in grids.levels(session)}
    levels: list[Level] = []
    for rank in sorted({r.level for r in rows}):
        units = [r for r in rows if r.level == rank]
        pos = {r.code: i for i, r in enumerate(units)}
        of_finest = np.full(len(fin), -1, dtype=np.int32)
        for i, r in enumerate(fin):
            code: str | None = r.code
            while code is not None and code not in pos:
                code = parent_of.get(code)
            if code is not None:
                of_finest[i] = pos[code]
        lv = lvls.get(rank)
        levels.append(Level(rank, lv.key if lv else str(rank), lv.name if lv else str(rank),
                            np.array([r.code for r in units], dtype=object),
                            np.array([r.name for r in units], dtype=object), of_finest))
    geoms = shapely.from_wkb([bytes(r.wkb) for r in fin])
    kwargs = {"resolution": resolution} if resolution else {}
    idx = GridIndex.build(gen.id, [r.code for r in fin], [r.name for r in fin], list(geoms),
                          levels, **kwargs)
    idx.meta["generation"] = GenerationRef(gen.id, gen.label, gen.activated_at)
    if warm:
        warm_nearest(idx)
    log.info("index for generation %s: %d grids, %d boundary cells, %.2f s, %.1f MB",
             gen.id, idx.stats.grids, idx.stats.boundary_cells, idx.stats.seconds,
             idx.stats.nbytes / 1e6)
    return idx


@lru_cache(maxsize=8)
def metric_transformer(srid: int) -> Callable[..., Any]:
    """lon/lat -> metres in the deployment's metric CRS."""
    return Transformer.from_crs(4326, srid, always_xy=True).transform


class IndexRegistry:
    """The active generation's index plus a few others ("as of"), swapped atomically."""

    def __init__(self, factory: Callable[[], Session], settings: Settings,
                 keep: int = 3) -> None:
        self._factory = factory
        self.settings = settings
        self._active: GridIndex | None = None
        self._others: OrderedDict[int, GridIndex] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self.switched_at: float | None = None

    @property
    def active(self) -> GridIndex | None:
        """The index of the active generation (None until a grid is loaded)."""
        return self._active

    def refresh(self, *, finish: bool = True) -> GridIndex | None:
        """Rebuild for the active generation if it changed; the swap is one assignment.

        The index answers as soon as its lookup is built; finish (unless the caller does
        it itself, see finish()) then builds its nearest-grid structure and settles the
        heap, after the swap: a switch costs a worker only the lookup's build."""
        with self._factory() as session:
            gen = grids.active_generation(session)
            if gen is None:
                return None
            cur = self._active
            if cur is not None and cur.generation == gen.id:
                return cur
            idx = build_index(session, gen, self.settings, warm=False)
        first = cur is None
        self._active = idx
        self.switched_at = time.monotonic()
        if finish:
            self.finish(idx, full=first)
        return idx

    @staticmethod
    def finish(idx: GridIndex, *, full: bool = False) -> None:
        """After a swap: the nearest-grid structure, then the heap settled (full at
        start-up; after a switch the old index is freed by its reference count, so only
        the young objects are collected: heap.settle)."""
        warm_nearest(idx)
        heap.settle(full=full)

    def get(self, *, at: datetime | None = None, generation: int | None = None) -> GridIndex:
        """The index a read names: ?generation=, else as of ?at=, else the active one
        (NoActiveGrid when there is none yet)."""
        if at is None and generation is None:
            idx = self._active or self.refresh()
            if idx is None:
                raise grids.NoActiveGrid()
            return idx
        with self._factory() as session:
            gen = grids.generation_at(session, generation=generation, at=at)
        return self.for_generation(gen)

    def for_generation(self, gen: Generation) -> GridIndex:
        """The index of any generation (built on first use, a few kept)."""
        cur = self._active
        if cur is not None and cur.generation == gen.id:
            return cur
        with self._lock:
            if gen.id in self._others:
                self._others.move_to_end(gen.id)
                return self._others[gen.id]
            with self._factory() as session:
                idx = build_index(session, gen, self.settings)
            self._others[gen.id] = idx
            while len(self._others) > self._keep:
                self._others.popitem(last=False)
            return idx


def resolve_sql(session: Session, gen_id: int, lon: np.ndarray, lat: np.ndarray,
                level: int | None = None) -> list[str | None]:
    """The truth: ST_Covers on the stored geometry, lowest code wins; one code per point."""
    lvl = level if level is not None else finest_level(session, gen_id)
    rows = session.execute(
        text(f"""
        SELECT p.i, g.code
          FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]))
               WITH ORDINALITY AS p(x, y, i)
          LEFT JOIN LATERAL (
              SELECT u.code FROM grid_unit u
               WHERE u.level = :lvl AND {in_generation('u')}
                 AND ST_Covers(u.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326))
               ORDER BY u.code LIMIT 1) g ON true
         ORDER BY p.i"""),
        {"xs": [float(x) for x in lon], "ys": [float(y) for y in lat], "lvl": lvl, "g": gen_id},
    ).all()
    return [r.code for r in rows]


@dataclass
class Resolved:
    """Vectorised answers for WGS84 points against one index."""

    lon: np.ndarray
    lat: np.ndarray
    grid: np.ndarray  # finest grid index, -1 outside
    cells: np.ndarray  # uint64 H3 cells
    nearest: np.ndarray  # for points outside: nearest grid index, else -1
    distance_m: np.ndarray  # for points outside: metres to it, else nan


def resolve_points(idx: GridIndex, lon: np.ndarray, lat: np.ndarray,
                   settings: Settings, *, nearest: bool = True) -> Resolved:
    """Finest grid, H3 cell and, for points outside the territory, the nearest grid."""
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    cells = idx.cells(lon, lat)
    g = idx.lookup(lon, lat, cells)
    near = np.full(len(g), -1, dtype=np.int32)
    dist = np.full(len(g), np.nan)
    out = np.flatnonzero(g < 0)
    if nearest and out.size:
        ng, nd = idx.nearest(lon[out], lat[out])
        near[out] = ng
        dist[out] = nd
    return Resolved(lon, lat, g, cells, near, dist)


CHUNK = 100_000


def resolve_chunks(idx: GridIndex, x_all: np.ndarray, y_all: np.ndarray,
                   errors: dict[int, str], crs: str, settings: Settings, *, first_row: int = 1
                   ) -> Iterator[tuple[int, Resolved, np.ndarray, np.ndarray]]:
    """Resolve in chunks; rows with bad coordinates get an error, not a failed batch.

    Yields (start, answers, ok mask, error messages as an object array); error messages
    number the rows from first_row (x_all[0] being that row)."""
    info = parse_crs(crs)
    names = ("x", "y") if info.projected else ("lon", "lat")
    for start in range(0, len(x_all), CHUNK):
        x = np.asarray(x_all[start:start + CHUNK], dtype=np.float64)
        y = np.asarray(y_all[start:start + CHUNK], dtype=np.float64)
        errs = np.full(len(x), None, dtype=object)
        for k, msg in errors.items():
            if start <= k < start + len(x):
                errs[k - start] = msg
        ok = np.isfinite(x) & np.isfinite(y)
        if not info.projected:
            ok &= (np.abs(x) <= 180) & (np.abs(y) <= 90)
        lon = np.full(len(x), np.nan)
        lat = np.full(len(x), np.nan)
        try:
            lon[ok], lat[ok], _ = to_wgs84(x[ok], y[ok], crs, fields=names)
        except InvalidCoordinate:
            # rare: some points lie outside a projected CRS's area; find them one by one
            for i in np.flatnonzero(ok):
                try:
                    lo, la, _ = to_wgs84(x[i:i + 1], y[i:i + 1], crs, fields=names)
                    lon[i], lat[i] = lo[0], la[0]
                except InvalidCoordinate as e:
                    ok[i] = False
                    errs[i] = e.detail
        for i in np.flatnonzero(~ok & (errs == None)):  # noqa: E711 - elementwise
            errs[i] = (f"row {first_row + start + i}: {names[0]}={float(x[i])!r}, "
                       f"{names[1]}={float(y[i])!r} is not a valid {info.key} coordinate")
        r = resolve_points(idx, np.where(ok, lon, 0.0), np.where(ok, lat, 0.0), settings)
        r.grid[~ok] = -1
        r.nearest[~ok] = -1
        yield start, r, ok, errs


def columns(idx: GridIndex) -> list[str]:
    """Batch output columns: the point, one code column per level, the finest grid's name."""
    return ["id", "wgs84_lon", "wgs84_lat", "inside", *[lv.key for lv in idx.levels],
            "grid_name", "h3", "nearest_grid", "distance_m", "error"]


def resolve_columns(idx: GridIndex, x: np.ndarray, y: np.ndarray, ids: np.ndarray | None,
                    errors: dict[int, str], crs: str, settings: Settings, *,
                    first_row: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Batch answers as column arrays (`columns(idx)`), a chunk at a time; vectorised."""
    for start, r, ok, errs in resolve_chunks(idx, x, y, errors, crs, settings,
                                             first_row=first_row):
        n = len(r.grid)
        g = r.grid
        gi = np.maximum(g, 0)
        inside = g >= 0
        none = np.full(n, None, dtype=object)
        has_near = r.nearest >= 0
        ident = (np.asarray(ids[start:start + n], dtype=object) if ids is not None
                 else np.arange(start + 1, start + n + 1))
        out: dict[str, np.ndarray] = {
            "id": ident,
            "wgs84_lon": np.where(ok, r.lon, np.nan),
            "wgs84_lat": np.where(ok, r.lat, np.nan),
            "inside": np.where(ok, inside, none),
        }
        for lv in idx.levels:  # a grid with no unit at a level: empty there
            k = lv.of_finest[gi]
            out[lv.key] = np.where(inside & (k >= 0), lv.codes[np.maximum(k, 0)], none)
        out["grid_name"] = np.where(inside, idx.names[gi], none)
        out["h3"] = np.where(ok, np.asarray(h3index.cells_str(r.cells), dtype=object), none)
        out["nearest_grid"] = np.where(has_near, idx.codes[np.maximum(r.nearest, 0)], none)
        out["distance_m"] = np.where(has_near, np.round(r.distance_m, 2), np.nan)
        out["error"] = errs
        yield out
