"""Generations of the grid: list, one, its validation problems (with geometries), and the
import of a city's grid from a GIS file as a durable background job."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.bodies import read_body
from api.deps import CurrentUser, SessionDep, SettingsDep, WriteSessionDep, require
from api.geojson import GeoJSONResponse, json_response
from api.routing import CheckedRoute, media_type, reads
from api.schemas.common import errors, geojson
from api.schemas.generations import (
    DiscardOut,
    GenerationDetail,
    JobOut,
    ProblemCollection,
)
from layers import gisfile, grid_jobs, grids, jobs
from layers.grid_import import ImportOptions
from layers.workflow import CENTRE, PLANNER
from spatial.errors import InvalidInput, NotFound

router = APIRouter(route_class=CheckedRoute, tags=["generations"])

GenPath = Annotated[int, Path(ge=1, le=2_147_483_647, description="generation id")]
UPLOAD_TYPES = tuple(dict.fromkeys([*gisfile.MEDIA_TYPES.values(), "application/json",
                                    "application/octet-stream"]))


def _detail(session: Any, gen: Any) -> dict[str, Any]:
    state = "active" if gen.active else ("past" if gen.activated_at else "draft")
    return {"id": gen.id, "label": gen.label, "note": gen.note, "created_at": gen.created_at,
            "activated_at": gen.activated_at, "active": gen.active, "state": state,
            "counts": grids.counts_per_level(session, gen.id)}


@router.get("/generations", response_model=list[GenerationDetail],
            responses=errors(422, 503))
def list_generations(session: SessionDep) -> list[dict[str, Any]]:
    """Every generation, oldest first: drafts (never activated), the active one, past ones."""
    return [_detail(session, g) for g in grids.list_generations(session)]


@router.get("/generations/{gen_id}", response_model=GenerationDetail,
            responses=errors(404, 422, 503))
def get_generation(gen_id: GenPath, session: SessionDep) -> dict[str, Any]:
    """One generation with its units per level."""
    return _detail(session, grids.generation_at(session, generation=gen_id))


@router.get("/generations/{gen_id}/problems", response_class=GeoJSONResponse,
            response_model=ProblemCollection,
            responses={200: geojson(ProblemCollection), **errors(401, 403, 404, 422, 503)})
async def generation_problems(gen_id: GenPath, session: SessionDep, settings: SettingsDep,
                              user: CurrentUser) -> GeoJSONResponse:
    """The generation's validation report: every broken invariant with its own geometry
    (the sliver, gap or overlap itself), as a GeoJSON FeatureCollection. A draft's report
    needs a planner or centre token (a draft is not public)."""
    gen = grids.generation_at(session, generation=gen_id)
    if gen.activated_at is None:
        require(user, PLANNER, CENTRE)
    found = await anyio.to_thread.run_sync(
        lambda: grids.validate_generation(session, gen.id, settings))
    counts: dict[str, int] = {}
    for v in found:
        counts[v.kind] = counts.get(v.kind, 0) + 1
    return GeoJSONResponse({"type": "FeatureCollection", "generation": gen.id,
                            "counts": counts, "tolerance_m2": settings.topology_tolerance_m2,
                            "features": [v.as_feature() for v in found]})


@router.delete("/generations/{gen_id}", response_model=DiscardOut,
               responses=errors(401, 403, 404, 409, 422, 503))
def discard_generation(gen_id: GenPath, session: WriteSessionDep,
                       user: CurrentUser) -> dict[str, Any]:
    """Discard a draft (a generation never activated): its rows go, the active grid stays as
    it was. An activated generation is history and cannot be discarded (409)."""
    require(user, PLANNER)
    done = grids.discard_generation(session, gen_id)
    return {"generation": gen_id, "discarded": True, **done}


def _fields(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        target, sep, col = v.partition("=")
        if not sep or not target.strip() or not col.strip():
            raise InvalidInput(f"field: {v[:80]!r} must be written target=FIELD, e.g. "
                               "code=GRIDCODE")
        out[target.strip()] = col.strip()
    return out


def _job_out(job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "href": f"/jobs/{job['id']}"}


@router.post("/generations/import", status_code=202, response_model=JobOut,
             responses=errors(401, 403, 413, 415, 422, 503),
             openapi_extra=reads(*UPLOAD_TYPES, limit="import_max_bytes"))
async def import_generation(
    request: Request, session: WriteSessionDep, settings: SettingsDep, user: CurrentUser,
    filename: Annotated[str | None, Query(max_length=200, description="the file's name "
                                          "(its suffix tells the format when the media type "
                                          "does not)")] = None,
    layer: Annotated[list[str] | None, Query(max_length=200, description="layer(s) to read "
                                             "(default: every polygon layer)")] = None,
    encoding: Annotated[str | None, Query(max_length=40, pattern=r"^[A-Za-z0-9_.\-]+$",
                                          description="text encoding of a Shapefile "
                                          "without .cpg (GBK, GB18030...)")] = None,
    crs: Annotated[str | None, Query(max_length=80, description="the coordinates' CRS when "
                                     "the file does not say it or says it wrong")] = None,
    field: Annotated[list[str] | None, Query(max_length=200, description="target=FIELD: "
                                             "code, name, parent, level, leader_name, "
                                             "leader_phone")] = None,
    snap: Annotated[float | None, Query(gt=0, le=100, description="metres: clean a "
                                        "nearly-valid coverage")] = None,
    snap_max_area: Annotated[float, Query(gt=0, le=1e7, description="m²: larger gaps and "
                                          "overlaps are not cleaned")] = 100.0,
    activate: Annotated[bool, Query(description="activate if valid (default: a draft)")]
    = False,
    keep_invalid: Annotated[bool, Query(description="load an invalid grid as a draft "
                                        "anyway")] = False,
    label: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Import a city's grid from a GIS file (the request body: a GeoPackage, a zipped
    Shapefile, GeoJSON, FlatGeobuf or CSV) into a new generation, as a background job:
    answers 202 with the job (Location: /jobs/{id}); poll it until done or failed."""
    require(user, PLANNER)
    raw = await read_body(request, settings.import_max_bytes,
                          "import it with the command line: gridops grids import FILE")
    opts = ImportOptions(layers=tuple(layer or ()), encoding=encoding, crs=crs,
                         fields=_fields(field or []), snap_m=snap,
                         snap_max_area_m2=snap_max_area, label=label, activate=activate,
                         keep_invalid=keep_invalid)
    mt = media_type(request)
    name = filename or "upload" + {v: gisfile.FORMATS[k][1]
                                   for k, v in gisfile.MEDIA_TYPES.items()}.get(mt, "")
    job_id = grid_jobs.submit_import(session, raw, opts, filename=name,
                                     media_type=None if mt == "application/octet-stream"
                                     else mt, settings=settings, actor=user.name)
    session.flush()
    job = jobs.get(session, job_id)
    resp = json_response(_job_out(job), status=202)
    resp.headers["Location"] = f"/jobs/{job_id}"
    return resp


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(401, 403, 404, 422, 503))
def get_job(job_id: Annotated[int, Path(ge=1, le=2_147_483_647)], session: SessionDep,
            user: CurrentUser) -> dict[str, Any]:
    """A background job: its state, progress, and its result or error (an import's result
    names the generation it made; a refused import's error lists every problem)."""
    require(user, PLANNER, CENTRE)
    try:
        return _job_out(jobs.get(session, job_id))
    except NotFound:
        raise NotFound(f"no job {job_id}") from None
