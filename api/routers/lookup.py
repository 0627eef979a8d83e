"""Who is responsible here: owner resolution with its reasons, everything at a spot (the
dispute lookup), and the 多格合一 alignment of departments' zones with the grid."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep
from api.geojson import json_response
from api.resolution import resolve_report, to_point
from layers import grids
from layers.lookup import alignment, layers_at, zone_departments
from layers.ownership import candidate_categories, resolve_owner
from layers.ownership_store import OwnershipRegistry
from layers.settings import Settings
from spatial import h3index
from spatial.errors import InvalidInput
from spatial.index import GridIndex

router = APIRouter(tags=["responsibility"])

Lon = Annotated[float, Query(description="longitude (or x in metres for projected CRS)")]
Lat = Annotated[float, Query(description="latitude (or y in metres)")]
Crs = Annotated[str, Query(description="EPSG:4326, EPSG:4490, GCJ-02, BD-09, EPSG:...")]
At = Annotated[datetime | None, Query(description="as of this time (default now)")]


def _chain(idx: GridIndex, lon: float, lat: float) -> tuple[list[dict[str, Any]], int]:
    g, cell = idx.lookup_one(lon, lat)
    return (idx.chain(g) if g >= 0 else []), cell


def _owners(request: Request) -> OwnershipRegistry:
    reg: OwnershipRegistry = request.app.state.owners
    return reg


@router.get("/owner")
async def owner(request: Request, lon: Lon, lat: Lat,
                category: Annotated[str, Query(description="category code, e.g. C0101")],
                crs: Crs = "EPSG:4326", at: At = None) -> Response:
    """The responsible department for a category at a point, with the patrol on duty, the
    grid leader and the trail of every rule tried (in memory)."""
    x, y, info = to_point(lon, lat, crs)
    r = await resolve_report(request, x, y, category, at)
    return json_response({"wgs84": {"lon": x, "lat": y}, "crs": info, "inside": bool(r["chain"]),
                  "chain": r["chain"], "h3": r["h3"], "generation": r["generation"],
                  **r["owner"]})


def spot(request: Request, session: Session, settings: Settings, x: float, y: float,
         radius: float, at: datetime | None, category: str | None) -> dict[str, Any]:
    """Everything at a WGS84 spot (the /lookup answer, also the dispute page's data)."""
    when = at or datetime.now(UTC)
    reg_idx = request.app.state.indexes
    idx = reg_idx.active if at is None else reg_idx.for_generation(
        grids.generation_at(session, at=at))
    if idx is None:
        raise InvalidInput("no active grid: load one first")
    chain, cell = _chain(idx, x, y)
    found = layers_at(session, x, y, radius, when)
    reg = _owners(request)
    snap = reg.current if at is None else reg.at(at, x, y)
    cats = [category] if category else candidate_categories(snap, x, y)
    owners = [resolve_owner(snap, x, y, c, chain, settings, when=at) for c in cats]
    return {"wgs84": {"lon": x, "lat": y}, "radius_m": radius, "at": when,
            "inside": bool(chain), "chain": chain, "h3": h3index.cell_str(cell),
            "generation": idx.generation, **found, "owners": owners}


@router.get("/lookup")
def lookup(request: Request, session: SessionDep, settings: SettingsDep, lon: Lon, lat: Lat,
           crs: Crs = "EPSG:4326",
           radius: Annotated[float, Query(gt=0, le=500, description="metres")] = 30.0,
           at: At = None,
           category: Annotated[str | None, Query(description="one category; default: every "
                                                 "category with a candidate here")] = None,
           ) -> Response:
    """Everything at a spot, for settling a dispute: the grid chain, department zones and
    ownership areas covering it, assets within the radius with owners and distances, and
    the owner resolution (for the category, or every category with a candidate here)."""
    x, y, info = to_point(lon, lat, crs)
    return json_response({"crs": info, **spot(request, session, settings, x, y, radius, at,
                                              category)})


@router.get("/alignment")
def alignment_ranking(request: Request, session: SessionDep, settings: SettingsDep,
                      at: At = None) -> Response:
    """Every department with a zone layer, ranked by its alignment score (多格合一)."""
    when = at or datetime.now(UTC)
    gen = grids.generation_at(session, at=at) if at else grids.generation_at(session)
    ranking = []
    for dept in zone_departments(session, when):
        a = alignment(session, dept, settings, gen.id, when)
        ranking.append({k: a[k] for k in ("department", "zones", "grids", "grids_whole",
                                          "grids_split", "grids_uncovered", "score")}
                       | {"slivers": len(a["slivers"])})
    ranking.sort(key=lambda r: (-r["score"], r["department"]))
    for i, r in enumerate(ranking, start=1):
        r["rank"] = i
    return json_response({"generation": gen.id, "at": when, "ranking": ranking})


@router.get("/alignment/{department}")
def alignment_one(department: str, session: SessionDep, settings: SettingsDep, at: At = None,
                  whole_share: Annotated[float, Query(gt=0.5, le=1)] = 0.99,
                  sliver_m2: Annotated[float, Query(ge=0)] = 100.0) -> Response:
    """For each grid: the department's zones covering it and their area shares; grids split
    between zones; slivers under a threshold; the score (share of grids wholly in a zone)."""
    when = at or datetime.now(UTC)
    gen = grids.generation_at(session, at=at) if at else grids.generation_at(session)
    return json_response(alignment(session, department, settings, gen.id, when,
                           whole_share=whole_share, sliver_m2=sliver_m2))
