"""Who is responsible here: owner resolution with its reasons, everything at a spot (the
dispute lookup), and the 多格合一 alignment of departments' zones with the grid."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import (
    IndexesDep,
    OwnersDep,
    ReportsDep,
    SessionDep,
    SettingsDep,
    StaffViewDep,
)
from api.geojson import json_response
from api.params import At, Crs, Lat, Lon, Radius
from api.routing import CheckedRoute
from api.schemas.common import errors
from api.schemas.responsibility import AlignmentOut, AlignmentRanking, LookupOut, OwnerOut
from layers import grids
from layers.lookup import alignment, spot, zone_departments
from layers.resolution import normalise_point

router = APIRouter(route_class=CheckedRoute, tags=["responsibility"])


@router.get("/owner", response_model=OwnerOut, responses=errors(404, 422, 503))
async def owner(reports: ReportsDep, staff: StaffViewDep, lon: Lon, lat: Lat,
                category: Annotated[str, Query(description="category code, e.g. C0101")],
                crs: Crs = "EPSG:4326", at: At = None) -> Response:
    """The responsible department for a category at a point, with the patrol on duty, the
    grid leader and the trail of every rule tried (in memory)."""
    p = normalise_point(lon, lat, crs)
    if reports.needs_io(at):
        r = await anyio.to_thread.run_sync(reports.resolve, p.lon, p.lat, category, at)
    else:
        r = reports.resolve(p.lon, p.lat, category, at)
    return json_response({"wgs84": {"lon": p.lon, "lat": p.lat}, "crs": p.crs,
                          "inside": bool(r["chain"]), "chain": r["chain"], "h3": r["h3"],
                          "generation": r["generation"], **staff.owner_answer(r["owner"])})


@router.get("/lookup", response_model=LookupOut, responses=errors(404, 422, 503))
def lookup(session: SessionDep, settings: SettingsDep, indexes: IndexesDep, owners: OwnersDep,
           staff: StaffViewDep, lon: Lon, lat: Lat, crs: Crs = "EPSG:4326",
           radius: Radius = 30.0, at: At = None,
           category: Annotated[str | None, Query(description="one category; default: every "
                                                 "category with a candidate here")] = None,
           ) -> Response:
    """Everything at a spot, for settling a dispute: the grid chain, department zones and
    ownership areas covering it, assets within the radius with owners and distances, and
    the owner resolution (for the category, or every category with a candidate here)."""
    p = normalise_point(lon, lat, crs)
    found = spot(session, indexes, owners, settings, p.lon, p.lat, radius, at, category)
    found["owners"] = [staff.owner_answer(o) for o in found["owners"]]
    return json_response({"crs": p.crs, **found})


@router.get("/alignment", response_model=AlignmentRanking,
            responses=errors(404, 422, 503))
def alignment_ranking(session: SessionDep, settings: SettingsDep, at: At = None) -> Response:
    """Every department with a zone layer, ranked by its alignment score (多格合一)."""
    when = at or datetime.now(UTC)
    gen = grids.generation_at(session, at=at)
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


@router.get("/alignment/{department}", response_model=AlignmentOut,
            responses=errors(404, 422, 503))
def alignment_one(department: str, session: SessionDep, settings: SettingsDep, at: At = None,
                  whole_share: Annotated[float, Query(gt=0.5, le=1)] = 0.99,
                  sliver_m2: Annotated[float, Query(ge=0)] = 100.0) -> Response:
    """For each grid: the department's zones covering it and their area shares; grids split
    between zones; slivers under a threshold; the score (share of grids wholly in a zone)."""
    when = at or datetime.now(UTC)
    gen = grids.generation_at(session, at=at)
    return json_response(alignment(session, department, settings, gen.id, when,
                                   whole_share=whole_share, sliver_m2=sliver_m2))
