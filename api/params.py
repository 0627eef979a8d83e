"""Query parameters shared by routers, as typed dependencies (tipg's dependencies.py): the
bbox, the generation or time a read names, the grid index for the request, a point and its
CRS, and the case filters of the hot-spot and wall endpoints."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Query

from api.deps import IndexesDep
from api.schemas.common import Timestamp
from layers import hotspots
from spatial.errors import InvalidInput, NoActiveGrid
from spatial.index import GridIndex

# ---------------------------------------------------------------- bbox


def parse_bbox(raw: str) -> tuple[float, float, float, float]:
    """'minlon,minlat,maxlon,maxlat' in EPSG:4326 -> a tuple; 422 naming what is wrong."""
    parts = raw.split(",")
    if len(parts) != 4:
        raise InvalidInput(f"bbox: expected 4 comma-separated numbers "
                           f"minlon,minlat,maxlon,maxlat, got {len(parts)} in {raw!r}")
    values: list[float] = []
    for name, part in zip(("minlon", "minlat", "maxlon", "maxlat"), parts, strict=True):
        try:
            v = float(part)
        except ValueError:
            raise InvalidInput(f"bbox: {name} is not a number: {part.strip()!r}") from None
        if not math.isfinite(v):
            raise InvalidInput(f"bbox: {name} must be finite, got {part.strip()!r}")
        limit = 180.0 if name.endswith("lon") else 90.0
        if not -limit <= v <= limit:
            raise InvalidInput(f"bbox: {name} {v} is outside [-{limit:g}, {limit:g}]")
        values.append(v)
    x0, y0, x1, y1 = values
    if x0 > x1 or y0 > y1:
        raise InvalidInput(f"bbox: min must not exceed max, got {raw!r}")
    return x0, y0, x1, y1


async def get_bbox(bbox: Annotated[str | None, Query(
        description="minlon,minlat,maxlon,maxlat (EPSG:4326)")] = None,
                   ) -> tuple[float, float, float, float] | None:
    """?bbox= parsed, or None."""
    return parse_bbox(bbox) if bbox is not None else None


BboxDep = Annotated[tuple[float, float, float, float] | None, Depends(get_bbox)]

# ---------------------------------------------------------------- generation and index

At = Annotated[Timestamp | None, Query(
    description="as of this time (ISO 8601); default now")]
GenerationParam = Annotated[int | None, Query(
    description="read a named generation (id) instead", ge=1)]


async def get_active_index(indexes: IndexesDep) -> GridIndex:
    """The active grid's index (503 no_active_grid before a grid is loaded)."""
    idx = indexes.active
    if idx is None:
        raise NoActiveGrid()
    return idx


ActiveIndexDep = Annotated[GridIndex, Depends(get_active_index)]

# ---------------------------------------------------------------- a point

Lon = Annotated[float, Query(description="longitude (or x in metres for projected CRS)")]
Lat = Annotated[float, Query(description="latitude (or y in metres)")]
Crs = Annotated[str, Query(description="EPSG:4326 (default), EPSG:4490, GCJ-02, BD-09, "
                                       "EPSG:4549, ...")]
Radius = Annotated[float, Query(gt=0, le=500, description="metres")]

# ---------------------------------------------------------------- case filters

Period = Annotated[str | None, Query(
    description="30d (the last N days, default), YYYY-MM (a month) or YYYY (a year)")]
Since = Annotated[Timestamp | None, Query(description="or from this time (ISO 8601)")]
Until = Annotated[Timestamp | None, Query(description="...until this time (default now)")]
Category = Annotated[str | None, Query(max_length=16,
                                       description="a category code or its prefix (E05)")]
Department = Annotated[str | None, Query(max_length=32, description="owner department code")]
Res = Annotated[int | None, Query(description=f"H3 resolution {hotspots.RES_MIN}.."
                                  f"{hotspots.RES_MAX} (default 9, or from zoom)")]
Zoom = Annotated[float | None, Query(ge=0, le=22, description="web-map zoom, picks res")]
