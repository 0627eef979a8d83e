"""The answer to a report, composed once: the point's grid chain from the index, its H3 cell,
the generation, the nearest grid when it lies outside, and the owner from the ownership
snapshot. Typed inputs only (no web request): the API, the CLI and the demo builder call it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from layers.ownership import Snapshot, resolve_owner
from layers.ownership_store import OwnershipRegistry
from layers.resolver import IndexRegistry
from layers.settings import Settings
from spatial import h3index
from spatial.crs import parse_crs, point_to_wgs84
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
