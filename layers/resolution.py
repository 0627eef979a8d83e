"""The answer to a report, composed once: the point's grid chain from the index, its H3 cell,
the generation, the nearest grid when it lies outside, and the owner from the ownership
snapshot. Typed inputs only (no web request): the API, the CLI and the demo builder call it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from layers.ownership import Snapshot, resolve_owner
from layers.ownership_store import OwnershipRegistry
from layers.resolver import IndexRegistry
from layers.settings import Settings
from spatial import h3index
from spatial.crs import CRSInfo, parse_crs, point_to_wgs84
from spatial.index import GridIndex


@dataclass(frozen=True)
class ReportedPoint:
    """A reported coordinate normalised to WGS84, with the CRS that was assumed."""

    lon: float
    lat: float
    crs: dict[str, str]


def normalise_point(x: float, y: float, crs: str) -> ReportedPoint:
    """A reported coordinate (lon/lat, or x/y for a projected CRS) -> WGS84 (422 if bad)."""
    info = parse_crs(crs)
    names = ("x", "y") if info.projected else ("lon", "lat")
    lon, lat, info = point_to_wgs84(x, y, crs, fields=names)
    return ReportedPoint(lon, lat, {"key": info.key, "name": info.name})


def nearest_grid(idx: GridIndex, lon: float, lat: float) -> dict[str, Any] | None:
    """For a point outside every grid: the nearest grid (code, name) and its geodesic
    distance in metres."""
    ng, nd = idx.nearest(np.array([lon]), np.array([lat]))
    if ng[0] < 0:
        return None
    n = int(ng[0])
    return {"code": str(idx.codes[n]), "name": str(idx.names[n]),
            "distance_m": round(float(nd[0]), 2)}


# ---------------------------------------------------------------- one point as JSON

_FRAGMENTS = "point_answer_fragments"  # idx.meta key of the encoded parts of answers


class _Fragments:
    """The parts of /resolve answers that depend on the grid or generation only, each JSON
    encoded once: per finest grid (on first use) its `grid` and `chain`, the generation,
    each CRS."""

    def __init__(self, idx: GridIndex) -> None:
        self.grids: list[tuple[orjson.Fragment, orjson.Fragment] | None] = [None] * len(
            idx.codes)
        self.ref: Any = None
        self.generation = orjson.Fragment(b"null")
        self.crs: dict[CRSInfo, orjson.Fragment] = {}

    def grid(self, idx: GridIndex, g: int) -> tuple[orjson.Fragment, orjson.Fragment]:
        """(`grid`, `chain`) of finest grid g of idx (the index these are kept on)."""
        frag = self.grids[g]
        if frag is None:
            chain = idx.chain(g)
            frag = self.grids[g] = (orjson.Fragment(orjson.dumps(chain[-1] if chain else None)),
                                    orjson.Fragment(orjson.dumps(chain)))
        return frag

    def generation_of(self, ref: Any) -> orjson.Fragment:
        """The `generation` object (encoded again only if the index's ref changed)."""
        if ref is not self.ref:
            self.generation = orjson.Fragment(orjson.dumps(
                {"id": ref.id, "label": ref.label,
                 "activated_at": ref.activated_at.isoformat() if ref.activated_at else None}))
            self.ref = ref
        return self.generation

    def crs_of(self, info: CRSInfo) -> orjson.Fragment:
        """The `crs` object of a CRS."""
        frag = self.crs.get(info)
        if frag is None:
            frag = self.crs[info] = orjson.Fragment(
                orjson.dumps({"key": info.key, "name": info.name}))
        return frag


def _fragments(idx: GridIndex) -> _Fragments:
    frags: _Fragments | None = idx.meta.get(_FRAGMENTS)
    if frags is None:  # two threads racing build equal copies: either one will do
        frags = idx.meta[_FRAGMENTS] = _Fragments(idx)
    return frags


def point_answer_json(idx: GridIndex, lon: float, lat: float, info: CRSInfo,
                      raw: dict[str, Any]) -> bytes:
    """The /resolve answer of one WGS84 point as JSON (api.schemas.resolve.ResolveOut):
    inside, grid, chain, nearest, h3, wgs84, crs, input (the coordinates as given) and
    generation. What depends on the grid only is encoded once per grid."""
    frags = _fragments(idx)
    g, cell = idx.lookup_one(lon, lat)
    grid: orjson.Fragment | None
    chain: orjson.Fragment | list[Any]
    nearest: dict[str, Any] | None
    if g >= 0:
        grid, chain = frags.grid(idx, g)
        inside, nearest = True, None
    else:
        grid, chain = None, []
        inside, nearest = False, nearest_grid(idx, lon, lat)
    return orjson.dumps({
        "inside": inside, "grid": grid, "chain": chain, "nearest": nearest,
        "h3": {"cell": h3index.cell_str(cell), "resolution": idx.resolution},
        "wgs84": {"lon": lon, "lat": lat}, "crs": frags.crs_of(info), "input": raw,
        "generation": frags.generation_of(idx.meta["generation"])})


def answer_for(idx: GridIndex, snap: Snapshot, lon: float, lat: float, category: str,
               settings: Settings, *, when: datetime | None = None) -> dict[str, Any]:
    """Grid chain, H3 cell, generation, nearest grid if outside, and the owner answer."""
    g, cell = idx.lookup_one(lon, lat)
    chain = idx.chain(g) if g >= 0 else []
    nearest = None if g >= 0 else nearest_grid(idx, lon, lat)
    owner = resolve_owner(snap, lon, lat, category, chain, settings, when=when)
    return {"chain": chain, "h3": h3index.cell_str(cell), "generation": idx.generation,
            "nearest": nearest, "owner": owner}


@dataclass(frozen=True)
class ReportResolver:
    """answer_for over the live registries: the active index and snapshot, or those of a
    past time (`at`), built or read on demand."""

    indexes: IndexRegistry
    owners: OwnershipRegistry
    settings: Settings

    def resolve(self, lon: float, lat: float, category: str,
                at: datetime | None = None) -> dict[str, Any]:
        """The whole answer for a WGS84 point and a category, now or as of `at`."""
        idx = self.indexes.get(at=at)
        snap = self.owners.current if at is None else self.owners.at(at, lon, lat)
        return answer_for(idx, snap, lon, lat, category, self.settings, when=at)

    def needs_io(self, at: datetime | None) -> bool:
        """Whether resolve may query the database (so callers run it off the event loop)."""
        return at is not None or self.indexes.active is None
