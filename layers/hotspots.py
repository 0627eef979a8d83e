"""Hot spots of reported problems: cases counted on H3 cells in PostGIS, Gi* in memory
(spatial/hotspots.py) over the study area (every cell whose centre lies in the city), and
chronic spots (顽症): cells hot month after month.

Counted: cases reported in the period that were inside the grid, not merged into another
case (a duplicate report is the same problem) and not rejected as not a case.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.versioning import in_generation
from spatial import h3index
from spatial import hotspots as gi
from spatial.errors import InvalidInput
from spatial.index import GridIndex

RES_MIN, RES_MAX = 6, 10
HOT = 2  # a cell counts as hot in a month at 95 % confidence or more
# matches the partial index case_hotspots (migration 0009): an index-only scan
COUNTED = "c.inside AND c.h3_int IS NOT NULL AND c.status NOT IN ('merged', 'rejected')"


@dataclass(frozen=True)
class CaseFilter:
    """Which cases: reported in [since, until), optionally of a category (code or prefix)
    and owned by a department."""

    since: datetime
    until: datetime
    category: str | None = None
    department: str | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        """WHERE clause on "case" c and its parameters."""
        where = f"c.created_at >= :since AND c.created_at < :until AND {COUNTED}"
        p: dict[str, Any] = {"since": self.since, "until": self.until}
        if self.category:
            where += " AND c.category_code LIKE :category"
            p["category"] = self.category.replace("%", "").replace("_", r"\_") + "%"
        if self.department:
            where += " AND c.owner_department = :department"
            p["department"] = self.department
        return where, p

    def as_dict(self) -> dict[str, Any]:
        """The filter as answers show it."""
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "category": self.category, "department": self.department,
                "counted": "cases reported in [since, until) inside the grid, "
                           "not merged duplicates, not rejected"}


def period_bounds(period: str | None, since: datetime | None, until: datetime | None,
                  tz: str, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) from ?period= (Nd = the last N days, YYYY-MM a month, YYYY a year;
    default the last 30 days) or explicit since/until (naive times are local)."""
    z = ZoneInfo(tz)
    if since is not None or until is not None:
        if period is not None:
            raise InvalidInput("period: give a period or since/until, not both")
        a, b = (d if d is None or d.tzinfo else d.replace(tzinfo=z) for d in (since, until))
        b = b or now
        a = a or b - timedelta(days=30)
    else:
        p = (period or "30d").strip()
        try:
            if p.endswith("d") and p[:-1].isdigit() and 1 <= int(p[:-1]) <= 3660:
                b = now
                a = now - timedelta(days=int(p[:-1]))
            elif len(p) == 7:
                a = datetime.strptime(p, "%Y-%m").replace(tzinfo=z)
                b = (a + timedelta(days=32)).replace(day=1)
            elif len(p) == 4 and p.isdigit():
                a = datetime(int(p), 1, 1, tzinfo=z)
                b = a.replace(year=a.year + 1)
            else:
                raise ValueError
        except ValueError:
            raise InvalidInput(f"period: {p!r} is not Nd (last N days, 1..3660), YYYY-MM "
                               f"or YYYY") from None
    if b <= a:
        raise InvalidInput(f"until: {b.isoformat()} is not after since {a.isoformat()}")
    return a, b


def res_for_zoom(zoom: float) -> int:
    """A hexagon size that reads well at a web-map zoom (a cell ~15-40 px across)."""
    return int(min(RES_MAX, max(7, (zoom + 4) // 2)))


def check_res(res: int) -> int:
    """A hexagon resolution hot spots can be computed at, or a 422."""
    if not RES_MIN <= res <= RES_MAX:
        raise InvalidInput(f"res: {res} is outside {RES_MIN}..{RES_MAX} (H3 resolution; 8 is "
                           f"about 0.74 km² a cell, 9 about 0.11 km², 10 about 0.015 km²)")
    return res


def pick_res(res: int | None, zoom: float | None) -> int:
    """?res=, else from ?zoom=, else 9."""
    if res is not None:
        return check_res(res)
    return res_for_zoom(zoom) if zoom is not None else 9


def case_filter(period: str | None, since: datetime | None, until: datetime | None,
                category: str | None, department: str | None, tz: str,
                now: datetime | None = None) -> CaseFilter:
    """The cases a hot-spot or wall request counts: its period and filters."""
    a, b = period_bounds(period, since, until, tz, now or datetime.now().astimezone())
    return CaseFilter(a, b, category, department)


def parent_cell_sql(res: int) -> tuple[str, dict[str, int]]:
    """SQL turning the stored cell (c.h3_int, any finer resolution) into its ancestor at
    res, as a bigint: resolution field set to res, the digits below it set to 7."""
    below = 3 * (15 - res)
    expr = "((c.h3_int & :clear_res) | :set_res)"
    return expr, {"clear_res": ~(0xF << 52), "set_res": (res << 52) | ((1 << below) - 1),
                  "res": res}


def cell_counts(session: Session, f: CaseFilter, res: int, *, tz: str | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(cells, counts) of the filtered cases at res; with tz, counts per calendar month of
    the period as columns (cells × months) and the month labels."""
    where, p = f.sql()
    expr, q = parent_cell_sql(res)
    p |= q
    res_ok = "((c.h3_int >> 52) & 15) >= :res"
    if tz is None:
        rows = session.execute(text(
            f'SELECT {expr} AS cell, count(*) AS n FROM "case" c '
            f"WHERE {where} AND {res_ok} GROUP BY 1"), p).all()
        two = _int_columns(rows, 2)
        return two[:, 0].astype(np.uint64), two[:, 1].astype(np.float64), []
    months = month_starts(f.since, f.until, tz)
    p["tz"] = tz
    local = "(c.created_at AT TIME ZONE :tz)"
    rows = session.execute(text(
        f"SELECT {expr} AS cell, (date_part('year', {local}) * 12 "
        f"+ date_part('month', {local}) - 1)::int AS mi, count(*) AS n "
        f'FROM "case" c WHERE {where} AND {res_ok} GROUP BY 1, 2'), p).all()
    labels = [f"{m:%Y-%m}" for m in months]
    first = months[0].year * 12 + months[0].month - 1 if months else 0
    arr = _int_columns(rows, 3)
    allcells = np.unique(arr[:, 0]).astype(np.uint64)
    counts = np.zeros((allcells.size, len(labels)))
    if arr.size:
        cols = arr[:, 1] - first
        ok = (cols >= 0) & (cols < len(labels))  # local months at the period's edges
        pos = np.searchsorted(allcells, arr[ok, 0].astype(np.uint64))
        np.add.at(counts, (pos, cols[ok]), arr[ok, 2].astype(np.float64))
    return allcells, counts, labels


def _int_columns(rows: Sequence[Any], width: int) -> np.ndarray:
    """Integer result rows as an (n, width) array (columns first: Row objects are slow to
    hand to numpy one by one)."""
    if not rows:
        return np.zeros((0, width), dtype=np.int64)
    return np.stack([np.fromiter(col, dtype=np.int64, count=len(rows))
                     for col in zip(*rows, strict=True)], axis=1)


def month_starts(since: datetime, until: datetime, tz: str) -> list[datetime]:
    """Local first days of the calendar months overlapping [since, until)."""
    z = ZoneInfo(tz)
    m = since.astimezone(z).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out = []
    while m < until:
        out.append(m.replace(tzinfo=None))
        m = (m + timedelta(days=32)).replace(day=1)
    return out


class StudyAreas:
    """The Gi* neighbourhood of the city's cells per (generation, res, k), built once
    (about 0.3 s for 140,000 cells) and kept (a few)."""

    def __init__(self, keep: int = 16) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int | bytes, ...], gi.Neighbourhood] = OrderedDict()

    def get(self, session: Session, gen_id: int, res: int, k: int = 1) -> gi.Neighbourhood:
        """The neighbourhood of the cells whose centre lies in the generation's top level."""
        key = (gen_id, res, k)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        wkb = session.execute(text(
            f"SELECT ST_AsBinary(ST_Union(u.geom)) FROM grid_unit u WHERE {in_generation('u')} AND "
            f"u.level = (SELECT min(u.level) FROM grid_unit u WHERE {in_generation('u')})"),
            {"g": gen_id}).scalar()
        cells = (gi.cells_covering(shapely.from_wkb(bytes(wkb)), res) if wkb
                 else np.zeros(0, np.uint64))
        nb = gi.neighbourhood(cells, k)
        self._put(key, nb)
        return nb

    def extended(self, nb: gi.Neighbourhood, key: tuple[int, int, int], extra: np.ndarray
                 ) -> gi.Neighbourhood:
        """nb with a few more cells, kept too: the same edge cells come back request after
        request, and rebuilding the neighbourhood costs a tenth of a second."""
        ext_key = (*key, extra.tobytes())
        with self._lock:
            hit = self._cache.get(ext_key)
        if hit is None:
            hit = gi.neighbourhood(np.concatenate([nb.cells, extra]), nb.k)
            self._put(ext_key, hit)
        return hit

    def _put(self, key: tuple[int | bytes, ...], nb: gi.Neighbourhood) -> None:
        with self._lock:
            self._cache[key] = nb
            self._cache.move_to_end(key)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)


def study_area(session: Session, areas: StudyAreas, gen_id: int, res: int,
               cells: np.ndarray, k: int = 1) -> gi.Neighbourhood:
    """The city's cells plus cells with cases whose centre falls just outside the city."""
    nb = areas.get(session, gen_id, res, k)
    extra = cells[nb.position(cells) < 0] if nb.n else cells
    return areas.extended(nb, (gen_id, res, k), np.unique(extra)) if extra.size else nb


def align(nb: gi.Neighbourhood, cells: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Counts of some cells placed on the study area's rows (zero elsewhere)."""
    y = np.zeros((nb.n, *counts.shape[1:]))
    if cells.size:
        y[nb.position(cells)] = counts
    return y


def hotspots(session: Session, areas: StudyAreas, gen_id: int, f: CaseFilter, res: int,
             *, k: int = 1) -> dict[str, Any]:
    """Gi* of case counts over every cell of the city at res: arrays and what was done."""
    check_res(res)
    cells, counts, _ = cell_counts(session, f, res)
    nb = study_area(session, areas, gen_id, res, cells, k)
    y = align(nb, cells, counts)
    g = gi.gi_star(y, nb)
    return {"nb": nb, "counts": y, "gi": g}


def hotspot_features(result: dict[str, Any], *, significant_only: bool = False,
                     bbox: tuple[float, float, float, float] | None = None
                     ) -> list[dict[str, Any]]:
    """GeoJSON features of cells with cases or a significant Gi* (the rest is quiet); with
    a bbox, only the cells whose centre lies in it (the statistic is still city-wide)."""
    nb: gi.Neighbourhood = result["nb"]
    g: gi.GiStar = result["gi"]
    y: np.ndarray = result["counts"]
    keep = g.bin != 0 if significant_only else (g.bin != 0) | (y > 0)
    sel = np.flatnonzero(keep)
    if bbox is not None and sel.size:
        lon, lat = h3index.cell_centres(nb.cells[sel])
        pad = 0.01  # a cell straddling the edge of the screen is kept
        sel = sel[(lon >= bbox[0] - pad) & (lon <= bbox[2] + pad)
                  & (lat >= bbox[1] - pad) & (lat <= bbox[3] + pad)]
    with _gc_paused():  # tens of thousands of small lists: collections would triple the time
        return _features(nb.cells[sel], y[sel], g.z[sel], g.p[sel], g.bin[sel])


@contextmanager
def _gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _features(cells: np.ndarray, y: np.ndarray, z: np.ndarray, p: np.ndarray,
              b: np.ndarray) -> list[dict[str, Any]]:
    rings = h3index.cell_rings(cells)
    ids = h3index.cells_str(cells)
    counts = y.astype(np.int64).tolist()
    zs = np.round(z, 4).tolist()
    ps = np.round(p, 6).tolist()
    bins = b.astype(int).tolist()
    return [{"type": "Feature", "id": h,
             "geometry": {"type": "Polygon", "coordinates": [ring]},
             "properties": {"h3": h, "count": n, "z": zv, "p": pv, "bin": bv,
                            "label": gi.BIN_LABELS[bv]}}
            for h, ring, n, zv, pv, bv in zip(ids, rings, counts, zs, ps, bins, strict=True)]


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Counts per bin and the statistic's inputs, for answers and legends."""
    nb: gi.Neighbourhood = result["nb"]
    g: gi.GiStar = result["gi"]
    bins = {str(b): int((g.bin == b).sum()) for b in range(-3, 4)}
    return {"cells": nb.n, "cases": int(result["counts"].sum()),
            "mean": round(float(g.mean[0]), 6), "std": round(float(g.std[0]), 6),
            "bins": bins, "neighbourhood": nb.description(),
            "p_value": "two-sided, normal approximation; no multiple-testing correction",
            "confidence_bins": {str(b): gi.BIN_LABELS[b] for b in range(3, -4, -1)}}


def chronic(session: Session, areas: StudyAreas, gen_id: int, idx: GridIndex | None,
            until: datetime, tz: str, *, months: int = 6, min_run: int = 3, res: int = 9,
            category: str | None = None, department: str | None = None, k: int = 1
            ) -> dict[str, Any]:
    """Chronic spots (顽症): cells hot (Gi* ≥ 95 %) in at least min_run consecutive calendar
    months among the last `months` full months before `until`, with their grid."""
    check_res(res)
    if not 2 <= months <= 36:
        raise InvalidInput(f"months: {months} is outside 2..36")
    if not 1 <= min_run <= months:
        raise InvalidInput(f"min_run: {min_run} is outside 1..months ({months})")
    z = ZoneInfo(tz)
    end = until.astimezone(z).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = end
    for _ in range(months):
        start = (start - timedelta(days=1)).replace(day=1)
    f = CaseFilter(start, end, category, department)
    cells, counts, labels = cell_counts(session, f, res, tz=tz)
    nb = study_area(session, areas, gen_id, res, cells, k)
    y = align(nb, cells, counts.reshape(cells.size, len(labels)))
    g = gi.gi_star(y, nb)
    hot = g.bin >= HOT
    run = gi.longest_run(hot)
    sel = np.flatnonzero(run >= min_run)
    sel = sel[np.lexsort((-y[sel].sum(axis=1), -run[sel]))]
    lon, lat = h3index.cell_centres(nb.cells[sel])
    owners = idx.lookup(lon, lat) if idx is not None and sel.size else np.full(sel.size, -1)
    ids = h3index.cells_str(nb.cells[sel])
    rings = h3index.cell_rings(nb.cells[sel])
    spots = []
    for j, i in enumerate(sel):
        chain = idx.chain(int(owners[j])) if idx is not None and owners[j] >= 0 else []
        spots.append({
            "h3": ids[j], "lon": round(float(lon[j]), 6), "lat": round(float(lat[j]), 6),
            "hot_months": int(hot[i].sum()), "longest_run": int(run[i]),
            "months_hot": [labels[m] for m in np.flatnonzero(hot[i])],
            "counts": [int(v) for v in y[i]], "cases": int(y[i].sum()),
            "max_z": round(float(g.z[i].max()), 3),
            "grid": chain[-1]["code"] if chain else None,
            "grid_name": chain[-1]["name"] if chain else None,
            "street": chain[1]["name"] if len(chain) > 1 else None,
            "ring": rings[j]})
    grids: dict[str, dict[str, Any]] = {}
    for s in spots:
        if s["grid"]:
            e = grids.setdefault(str(s["grid"]), {"grid": s["grid"], "name": s["grid_name"],
                                             "street": s["street"], "cells": 0,
                                             "longest_run": 0, "cases": 0})
            e["cells"] += 1
            e["longest_run"] = max(e["longest_run"], s["longest_run"])
            e["cases"] += s["cases"]
    return {"months": labels, "since": start.isoformat(), "until": end.isoformat(),
            "res": res, "min_run": min_run, "hot": "Gi* hot spot at 95 % confidence or more",
            "neighbourhood": nb.description(), "spots": spots,
            "grids": sorted(grids.values(), key=lambda e: (-e["longest_run"], -e["cases"]))}
