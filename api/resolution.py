"""One point, fully resolved: normalised to WGS84, its grid chain from the index, and its
owner from the responsibility snapshot. Shared by /owner and case intake."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
import numpy as np
from fastapi import Request

from api.routers.resolve import _index
from layers.ownership import resolve_owner
from layers.ownership_store import OwnershipRegistry
from layers.resolver import metric_transformer
from layers.settings import Settings
from spatial import h3index
from spatial.crs import parse_crs, point_to_wgs84


def to_point(x: float, y: float, crs: str) -> tuple[float, float, dict[str, str]]:
    """A reported coordinate -> WGS84 lon/lat and the CRS assumed (422 if bad)."""
    info = parse_crs(crs)
    names = ("x", "y") if info.projected else ("lon", "lat")
    lon, lat, info = point_to_wgs84(x, y, crs, fields=names)
    return lon, lat, {"key": info.key, "name": info.name}


async def resolve_report(request: Request, lon: float, lat: float, category: str,
                         at: datetime | None = None) -> dict[str, Any]:
    """Grid chain, H3 cell, generation, nearest grid if outside, and the owner answer."""
    settings: Settings = request.app.state.settings
    idx = await _index(request, at, None)
    g, cell = idx.lookup_one(lon, lat)
    chain = idx.chain(g) if g >= 0 else []
    nearest = None
    if g < 0:
        ng, nd = idx.nearest(np.array([lon]), np.array([lat]),
                             metric_transformer(settings.metric_srid))
        if ng[0] >= 0:
            nearest = {"code": str(idx.codes[int(ng[0])]), "distance_m": round(float(nd[0]), 2)}
    reg: OwnershipRegistry = request.app.state.owners
    snap = reg.current if at is None else await anyio.to_thread.run_sync(reg.at, at, lon, lat)
    owner = resolve_owner(snap, lon, lat, category, chain, settings, when=at)
    return {"chain": chain, "h3": h3index.cell_str(cell), "generation": idx.generation,
            "nearest": nearest, "owner": owner}
