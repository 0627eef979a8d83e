"""GET /hotspots (Gi* on H3 hexagons, GeoJSON) and GET /hotspots/chronic (顽症)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import SessionDep, SettingsDep
from api.geojson import GeoJSONResponse, json_response
from api.routers.grids import parse_bbox
from layers import hotspots
from layers.resolver import IndexRegistry
from spatial.errors import InvalidInput
from spatial.index import GridIndex

router = APIRouter(tags=["hotspots"])

Period = Annotated[str | None, Query(
    description="30d (the last N days, default), YYYY-MM (a month) or YYYY (a year)")]
Since = Annotated[datetime | None, Query(description="or from this time (ISO 8601)")]
Until = Annotated[datetime | None, Query(description="...until this time (default now)")]
Category = Annotated[str | None, Query(max_length=16,
                                       description="a category code or its prefix (E05)")]
Department = Annotated[str | None, Query(max_length=32, description="owner department code")]
Res = Annotated[int | None, Query(description=f"H3 resolution {hotspots.RES_MIN}.."
                                  f"{hotspots.RES_MAX} (default 9, or from zoom)")]
Zoom = Annotated[float | None, Query(ge=0, le=22, description="web-map zoom, picks res")]


def active_index(request: Request) -> GridIndex:
    """The active grid's index, or a 422 naming what is missing."""
    reg: IndexRegistry = request.app.state.indexes
    idx = reg.active
    if idx is None:
        raise InvalidInput("no active grid: load one first")
    return idx


def pick_res(res: int | None, zoom: float | None) -> int:
    """?res=, else from ?zoom=, else 9."""
    if res is not None:
        return hotspots.check_res(res)
    return hotspots.res_for_zoom(zoom) if zoom is not None else 9


def compute(request: Request, session: Any, settings: Any, *, period: str | None,
            since: datetime | None, until: datetime | None, category: str | None,
            department: str | None, res: int) -> tuple[hotspots.CaseFilter, dict[str, Any]]:
    """The filter and the Gi* result of a request (shared with the wall map)."""
    idx = active_index(request)
    now = datetime.now().astimezone()
    a, b = hotspots.period_bounds(period, since, until, settings.timezone, now)
    f = hotspots.CaseFilter(a, b, category, department)
    return f, hotspots.hotspots(session, request.app.state.study_areas, idx.generation, f, res)


@router.get("/hotspots", response_class=GeoJSONResponse)
def get_hotspots(request: Request, session: SessionDep, settings: SettingsDep,
                 period: Period = None, since: Since = None, until: Until = None,
                 category: Category = None, department: Department = None, res: Res = None,
                 zoom: Zoom = None,
                 significant: Annotated[bool, Query(
                     description="only cells with a significant Gi* (90 % or more)")] = False,
                 bbox: Annotated[str | None, Query(description=(
                     "minlon,minlat,maxlon,maxlat: only the cells on screen (the statistic "
                     "is computed over the whole city all the same)"))] = None,
                 ) -> Response:
    """Getis-Ord Gi* of reported cases on H3 hexagons over the whole city (cells with cases
    or a significant score are returned): z-score, two-sided p-value, confidence bin
    (±3 = 99 %, ±2 = 95 %, ±1 = 90 %) as ArcGIS Hot Spot Analysis and PySAL esda give."""
    r = pick_res(res, zoom)
    f, result = compute(request, session, settings, period=period, since=since, until=until,
                        category=category, department=department, res=r)
    return GeoJSONResponse({
        "type": "FeatureCollection", "res": r, "filter": f.as_dict(),
        "summary": hotspots.summary(result),
        "features": hotspots.hotspot_features(
            result, significant_only=significant,
            bbox=parse_bbox(bbox) if bbox else None)})


@router.get("/hotspots/chronic")
def get_chronic(request: Request, session: SessionDep, settings: SettingsDep,
                months: Annotated[int, Query(ge=2, le=36, description=(
                    "full calendar months looked at, ending before this month"))] = 6,
                min_run: Annotated[int, Query(ge=1, le=36, description=(
                    "consecutive hot months that make a spot chronic"))] = 3,
                res: Annotated[int, Query(description="H3 resolution")] = 9,
                category: Category = None, department: Department = None,
                until: Until = None,
                format: Annotated[Literal["json", "geojson"], Query()] = "json") -> Response:
    """Chronic spots (顽症): hexagons that are Gi* hot spots (95 %) month after month, with
    their grid and street, and the grids that hold them."""
    idx = active_index(request)
    out = hotspots.chronic(session, request.app.state.study_areas, idx.generation, idx,
                           until or datetime.now().astimezone(), settings.timezone,
                           months=months, min_run=min_run, res=res, category=category,
                           department=department)
    if format == "geojson":
        feats = [{"type": "Feature", "id": s["h3"],
                  "geometry": {"type": "Polygon", "coordinates": [s["ring"]]},
                  "properties": {k: v for k, v in s.items() if k != "ring"}}
                 for s in out.pop("spots")]
        return GeoJSONResponse({"type": "FeatureCollection", **out, "features": feats})
    for s in out["spots"]:
        del s["ring"]
    return json_response(out)
