"""GET /hotspots (Gi* on H3 hexagons, GeoJSON) and GET /hotspots/chronic (顽症)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import SessionDep, SettingsDep, StudyAreasDep
from api.geojson import GeoJSONResponse, json_response
from api.params import (
    ActiveIndexDep,
    BboxDep,
    Category,
    Department,
    Period,
    Res,
    Since,
    Until,
    Zoom,
)
from api.routing import CheckedRoute
from api.schemas.common import GEOJSON, errors, geojson, media
from api.schemas.hotspots import ChronicCollection, ChronicOut, HotspotCollection
from layers import hotspots

router = APIRouter(route_class=CheckedRoute, tags=["hotspots"])


@router.get("/hotspots", response_class=GeoJSONResponse, response_model=HotspotCollection,
            responses={200: geojson(HotspotCollection), **errors(422, 503)})
def get_hotspots(session: SessionDep, settings: SettingsDep, idx: ActiveIndexDep,
                 areas: StudyAreasDep, bbox: BboxDep, period: Period = None,
                 since: Since = None, until: Until = None,
                 category: Category = None, department: Department = None, res: Res = None,
                 zoom: Zoom = None,
                 significant: Annotated[bool, Query(
                     description="only cells with a significant Gi* (90 % or more)")] = False,
                 ) -> Response:
    """Getis-Ord Gi* of reported cases on H3 hexagons over the whole city (cells with cases
    or a significant score are returned): z-score, two-sided p-value, confidence bin
    (±3 = 99 %, ±2 = 95 %, ±1 = 90 %) as ArcGIS Hot Spot Analysis and PySAL esda give."""
    r = hotspots.pick_res(res, zoom)
    f = hotspots.case_filter(period, since, until, category, department, settings.timezone)
    result = hotspots.hotspots(session, areas, idx.generation, f, r)
    return GeoJSONResponse({
        "type": "FeatureCollection", "res": r, "filter": f.as_dict(),
        "summary": hotspots.summary(result),
        "features": hotspots.hotspot_features(
            result, significant_only=significant,
            bbox=bbox)})


@router.get("/hotspots/chronic", response_model=ChronicOut, responses={
    200: {"description": "JSON, or GeoJSON with format=geojson",
          "content": {GEOJSON: media(ChronicCollection)}},
    **errors(422, 503)})
def get_chronic(session: SessionDep, settings: SettingsDep, idx: ActiveIndexDep,
                areas: StudyAreasDep,
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
    out = hotspots.chronic(session, areas, idx.generation, idx,
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
