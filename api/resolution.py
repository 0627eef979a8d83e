"""TEMPORARY shim while the cases and Open311 routers move to layers.resolution (deleted
when they have)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
from fastapi import Request

from layers.resolution import normalise_point


def to_point(x: float, y: float, crs: str) -> tuple[float, float, dict[str, str]]:
    """A reported coordinate -> WGS84 lon/lat and the CRS assumed (422 if bad)."""
    p = normalise_point(x, y, crs)
    return p.lon, p.lat, p.crs


async def resolve_report(request: Request, lon: float, lat: float, category: str,
                         at: datetime | None = None) -> dict[str, Any]:
    """Grid chain, H3 cell, generation, nearest grid if outside, and the owner answer."""
    reports = request.app.state.services.reports
    if reports.needs_io(at):
        out: dict[str, Any] = await anyio.to_thread.run_sync(reports.resolve, lon, lat,
                                                             category, at)
        return out
    answer: dict[str, Any] = reports.resolve(lon, lat, category, at)
    return answer
