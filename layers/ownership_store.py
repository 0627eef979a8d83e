"""The ownership snapshot's loading (the layers valid at a time, read from PostGIS) and the
registry that keeps the current snapshot; the rules that answer from it are in ownership.py."""

from __future__ import annotations

import logging
import sys
import threading
import time as _time
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from scipy.spatial import cKDTree
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import heap, versioning
from layers.ownership import ASSET_EXTENT_PAD_DEG, STATES, AssetSet, Snapshot
from layers.resolver import metric_transformer
from layers.settings import Settings
from layers.versioning import valid_at

log = logging.getLogger(__name__)


def load_snapshot(session: Session, settings: Settings, at: datetime | None = None,
                  near: tuple[float, float, float] | None = None,
                  generation: int | None = None) -> Snapshot:
    """Read the layers valid at `at` (default now); `near` = (lon, lat, metres) limits
    assets and areas to a neighbourhood (for questions about another time)."""
    t0 = _time.perf_counter()
    at = at or session.execute(text("SELECT clock_timestamp()")).scalar_one()
    p: dict[str, Any] = {"at": at}
    metric = metric_transformer(settings.metric_srid)
    depts = {r["code"]: dict(r) for r in session.execute(text(
        f"SELECT code, name, name_en, tier, parent_code, contact_name, contact_phone, "
        f"territory_code FROM department d WHERE {valid_at('d')}"), p).mappings()}
    cats = {r["code"]: dict(r) for r in session.execute(text(
        f"SELECT code, kind, major_code, major_name, name, name_en, default_department, "
        f"deadline_hours, owner_rule, asset_kind, area_kinds, snap_radius_m, "
        f"duplicate_radius_m, duplicate_window_h "
        f"FROM category c WHERE {valid_at('c')}"), p).mappings()}
    street_office = {d["territory_code"]: code for code, d in depts.items()
                     if d["territory_code"]}
    where_near = ""
    if near is not None:
        p.update(lon=near[0], lat=near[1], r=near[2])
        where_near = (" AND ST_DWithin(a.geom::geography, "
                      "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :r)")
    rows = session.execute(text(
        f"SELECT a.kind, a.code, a.name, a.category_code, a.owner_department, "
        f"a.maintainer_department, a.supervising_department, a.state, "
        f"ST_X(ST_ClosestPoint(a.geom, ST_Centroid(a.geom))) AS lon, "
        f"ST_Y(ST_ClosestPoint(a.geom, ST_Centroid(a.geom))) AS lat "
        f"FROM asset a WHERE {valid_at('a')}{where_near} ORDER BY a.kind, a.code"),
        p).all()
    dept_ix: dict[str, int] = {}
    state_ix = {st: i for i, st in enumerate(STATES)}
    assets: dict[str, AssetSet] = {}
    n_assets = len(rows)
    start = 0
    while start < len(rows):
        kind = rows[start][0]
        end = start
        while end < len(rows) and rows[end][0] == kind:
            end += 1
        part = rows[start:end]
        cols = list(zip(*part, strict=True))
        dcols = np.empty((len(part), 3), dtype=np.int16)
        for j, col in enumerate(cols[4:7]):
            dcols[:, j] = [dept_ix.setdefault(c, len(dept_ix)) for c in col]
        x, y = metric(np.asarray(cols[8], dtype=float), np.asarray(cols[9], dtype=float))
        assets[kind] = AssetSet(
            tree=cKDTree(np.column_stack([x, y])),
            codes=np.asarray(cols[1], dtype="S16"),
            names=np.asarray([sys.intern(n) if n == "" else n for n in cols[2]],
                             dtype=object),
            depts=dcols,
            states=np.asarray([state_ix[v] for v in cols[7]], dtype=np.int8),
            categories=np.asarray([sys.intern(c) for c in cols[3]], dtype=object),
            kind=kind)
        start = end
    asset_extent = None
    if rows:
        lons = np.fromiter((r[8] for r in rows), dtype=np.float64, count=len(rows))
        lats = np.fromiter((r[9] for r in rows), dtype=np.float64, count=len(rows))
        pad = ASSET_EXTENT_PAD_DEG
        asset_extent = (float(lons.min()) - pad, float(lats.min()) - pad,
                        float(lons.max()) + pad, float(lats.max()) + pad)
    del rows
    dept_codes = [c for c, _ in sorted(dept_ix.items(), key=lambda kv: kv[1])]
    area_near = ""
    if near is not None:
        area_near = (" AND ST_DWithin(o.geom::geography, "
                     "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :r)")
    arows = session.execute(text(
        f"SELECT o.code, o.kind, o.name, o.owner_department, o.priority, o.applies_to, "
        f"ST_AsBinary(o.geom) AS wkb FROM ownership_area o "
        f"WHERE {valid_at('o')}{area_near} ORDER BY o.code"), p).mappings().all()
    areas = [{k: v for k, v in r.items() if k != "wkb"} for r in arows]
    geoms = shapely.from_wkb([bytes(r["wkb"]) for r in arows]) if arows else np.empty(0)
    if len(geoms):
        shapely.prepare(geoms)
    specialists: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in session.execute(text(
            f"SELECT grid_code, name, phone, department_code FROM grid_role g "
            f"WHERE role = 'specialist' AND {valid_at('g')}"), p).mappings():
        specialists[r["grid_code"]][r["department_code"]] = {
            "name": r["name"], "phone": r["phone"], "department": r["department_code"]}
    gen_cond = versioning.in_generation("u") if generation else versioning.current("u")
    if generation:
        p["g"] = generation
    leaders = {r["code"]: {"name": r["leader_name"], "phone": r["leader_phone"]}
               for r in session.execute(text(
                   f"SELECT code, leader_name, leader_phone FROM grid_unit u "
                   f"WHERE leader_name IS NOT NULL AND {gen_cond}"), p).mappings()}
    shifts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in session.execute(text(
            f"SELECT team_code, grid_code, shift, weekdays, start_time, end_time "
            f"FROM patrol_assignment s WHERE {valid_at('s')}"), p).mappings():
        shifts[r["grid_code"]].append(dict(r))
    teams = {r["code"]: dict(r) for r in session.execute(text(
        f"SELECT code, name, department_code, members FROM patrol_team t "
        f"WHERE {valid_at('t')}"), p).mappings()}
    snap = Snapshot(at=at, departments=depts, categories=cats, street_office=street_office,
                    assets=assets, dept_codes=dept_codes, areas=areas,
                    area_tree=shapely.STRtree(geoms) if len(geoms) else None,
                    area_geoms=geoms, specialists=dict(specialists), leaders=leaders,
                    shifts=dict(shifts), teams=teams, metric=metric,
                    asset_extent=asset_extent)
    snap.built_seconds = _time.perf_counter() - t0
    snap.counts = {"departments": len(depts), "categories": len(cats),
                   "assets": n_assets, "areas": len(areas), "teams": len(teams)}
    return snap


class OwnershipRegistry:
    """The current snapshot (rebuilt when a layer or the grid changes) and small snapshots
    for questions about other times."""

    def __init__(self, factory: Any, settings: Settings) -> None:
        self._factory = factory
        self.settings = settings
        self._current: Snapshot | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        """The snapshot of now (built on first use)."""
        snap = self._current
        if snap is None:
            return self.refresh()
        return snap

    def refresh(self, *, settle: bool = True) -> Snapshot:
        """Rebuild the current snapshot; the swap is one assignment. settle: the heap
        settled after it (a caller that settles itself passes False)."""
        with self._lock, self._factory() as session:
            snap = load_snapshot(session, self.settings)
        first = self._current is None
        self._current = snap
        if settle:  # the new snapshot out of the collector's way, the old one collected
            heap.settle(full=first)
        log.info("ownership snapshot: %s in %.2f s", snap.counts, snap.built_seconds)
        return snap

    def at(self, when: datetime | None, lon: float, lat: float) -> Snapshot:
        """The snapshot for a time: the current one, or a small one near the point."""
        if when is None:
            return self.current
        radius = max([c["snap_radius_m"] for c in self.current.categories.values()] + [0.0])
        with self._factory() as session:
            return load_snapshot(session, self.settings, at=when,
                                 near=(lon, lat, radius + 50.0))
