"""Generations of the grid: list, one, its validation problems (with geometries), the
import of a city's grid from a GIS file as a durable background job, and the planners'
drafts: make one, edit its units (replace, split, merge, redraw a shared edge, move to
another parent), each edit validated where it acts and audited."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from shapely.geometry import mapping

from api import visibility
from api.bodies import parse_json, read_body
from api.deps import CurrentUser, SessionDep, SettingsDep, WriteSessionDep, require
from api.geojson import GeoJSONResponse, json_response
from api.routing import CheckedRoute, media_type, reads
from api.schemas.common import errors, geojson
from api.schemas.generations import (
    DiscardOut,
    DraftIn,
    DraftUnitFeature,
    EditOut,
    EventOut,
    GenerationDetail,
    JobOut,
    MergeIn,
    MoveIn,
    ProblemCollection,
    RedrawIn,
    SplitIn,
)
from layers import drafts, gisfile, grid_jobs, grids, jobs
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
            "counts": grids.counts_per_level(session, gen.id),
            "created_by": gen.created_by, "base": gen.base_id}


@router.get("/generations", response_model=list[GenerationDetail],
            responses=errors(401, 422, 503))
def list_generations(session: SessionDep, user: CurrentUser) -> list[dict[str, Any]]:
    """Every generation, oldest first: the active one and past ones, and drafts (never
    activated) for a planner or centre token (to anyone else a draft does not exist)."""
    drafts_too = visibility.may_read_drafts(user)
    return [_detail(session, g) for g in grids.list_generations(session)
            if drafts_too or g.activated_at is not None]


@router.get("/generations/{gen_id}", response_model=GenerationDetail,
            responses=errors(401, 404, 422, 503))
def get_generation(gen_id: GenPath, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """One generation with its units per level (a draft: planner or centre token, else
    404 "not published", as for an id never used)."""
    return _detail(session, visibility.readable(session, user, generation=gen_id))


@router.get("/generations/{gen_id}/problems", response_class=GeoJSONResponse,
            response_model=ProblemCollection,
            responses={200: geojson(ProblemCollection), **errors(401, 403, 404, 422, 503)})
async def generation_problems(gen_id: GenPath, session: SessionDep, settings: SettingsDep,
                              user: CurrentUser) -> GeoJSONResponse:
    """The generation's validation report: every broken invariant with its own geometry
    (the sliver, gap or overlap itself), as a GeoJSON FeatureCollection. A draft's report
    needs a planner or centre token (a draft is not public). Same as /validation."""
    return await _report(gen_id, session, settings, user)


@router.get("/generations/{gen_id}/validation", response_class=GeoJSONResponse,
            response_model=ProblemCollection,
            responses={200: geojson(ProblemCollection), **errors(401, 403, 404, 422, 503)})
async def generation_validation(gen_id: GenPath, session: SessionDep, settings: SettingsDep,
                                user: CurrentUser) -> GeoJSONResponse:
    """The whole validation report of a generation (a draft's after its edits), every
    violation with its geometry; an empty FeatureCollection when it is valid."""
    return await _report(gen_id, session, settings, user)


async def _report(gen_id: int, session: Any, settings: Any, user: Any) -> GeoJSONResponse:
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
    drafts.record(session, gen_id, user.name, "discard", removed_rows=done["removed_rows"],
                  restored_rows=done["restored_rows"])
    return {"generation": gen_id, "discarded": True, **done}


# ---------------------------------------------------------------- drafts and their edits

CodePath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9]+$",
                               description="a unit's code")]
DryRun = Annotated[bool, Query(description="validate and answer what the edit would do, "
                               "change nothing")]
EDIT_ERRORS = errors(401, 403, 404, 409, 413, 415, 422, 503)


@router.post("/generations", status_code=201, response_model=GenerationDetail,
             responses=errors(401, 403, 404, 409, 413, 415, 422, 503))
def create_draft(body: DraftIn, session: WriteSessionDep, settings: SettingsDep,
                 user: CurrentUser) -> Response:
    """Make a draft (planner): a copy of the active generation, or of another one named by
    `from` (a rollback is a new generation made from an old one). One draft at a time: a
    second is a 409 saying whose the pending one is. Location: /generations/{id}."""
    require(user, PLANNER)
    gen = drafts.create_draft(session, settings, actor=user.name,
                              base_id=body.from_generation, label=body.label, note=body.note)
    resp = json_response(_detail(session, gen), status=201)
    resp.headers["Location"] = f"/generations/{gen.id}"
    return resp


@router.get("/generations/{gen_id}/events", response_model=list[EventOut],
            responses=errors(401, 403, 422, 503))
def generation_events(gen_id: GenPath, session: SessionDep,
                      user: CurrentUser) -> list[dict[str, Any]]:
    """The audit log of a generation's planning: who did what, when, to which units (kept
    after a draft is discarded)."""
    require(user, PLANNER, CENTRE)
    return [{"id": e.id, "generation": e.generation_id, "at": e.at, "actor": e.actor,
             "action": e.action, "codes": e.codes, "detail": e.detail}
            for e in drafts.events(session, gen_id)]


def _unit_feature(session: Any, settings: Any, row: drafts.Row) -> dict[str, Any]:
    from spatial.coverage import metric_area

    area = float(metric_area([row.geom], settings.metric_srid)[0])
    return {"type": "Feature", "id": row.code, "geometry": mapping(row.geom),
            "properties": {"code": row.code, "name": row.name, "level": row.level,
                           "parent_code": row.parent_code, "leader_name": row.leader_name,
                           "leader_phone": row.leader_phone, "attributes": row.attributes,
                           "area_m2": round(area, 2), "generation_low": row.generation_low,
                           "revision": row.revision, "etag": row.etag}}


@router.get("/generations/{gen_id}/units/{code}", response_class=GeoJSONResponse,
            response_model=DraftUnitFeature,
            responses={200: geojson(DraftUnitFeature), **errors(401, 403, 404, 422, 503)})
def get_draft_unit(gen_id: GenPath, code: CodePath, session: SessionDep,
                   settings: SettingsDep, user: CurrentUser) -> Response:
    """One unit as a generation holds it, at full precision, with its ETag (send it back
    as If-Match to replace the unit). Planner or centre token."""
    require(user, PLANNER, CENTRE)
    grids.generation_at(session, generation=gen_id)
    row = drafts.unit(session, gen_id, code)
    resp = GeoJSONResponse(_unit_feature(session, settings, row))
    resp.headers["ETag"] = row.etag
    return resp


def _edited(result: drafts.EditResult) -> Response:
    return json_response(result.as_dict())


@router.put("/generations/{gen_id}/units/{code}", response_model=EditOut,
            responses={**EDIT_ERRORS, **errors(428)},
            openapi_extra=reads("application/geo+json", "application/json",
                                limit="json_body_max_bytes"))
async def put_draft_unit(
    gen_id: GenPath, code: CodePath, request: Request, session: WriteSessionDep,
    settings: SettingsDep, user: CurrentUser, dry_run: DryRun = False,
    crs: Annotated[str | None, Query(max_length=80, description="the geometry's CRS "
                                     "(default EPSG:4326)")] = None,
    if_match: Annotated[str | None, Header(max_length=200, description="the unit's ETag "
                                           "as read (required)")] = None,
) -> Response:
    """Replace a unit of a draft (planner): a GeoJSON Feature whose properties may change
    name, leader_name, leader_phone and attributes, and whose geometry (or null: kept)
    must keep the coverage. If-Match is required: a stale ETag is a 409, so two planners
    cannot overwrite each other. Answers what changed with the new ETag (also in ETag)."""
    require(user, PLANNER)
    raw = await read_body(request, settings.json_body_max_bytes)
    body = parse_json(raw)
    if not isinstance(body, dict) or body.get("type") != "Feature":
        raise InvalidInput("body: a GeoJSON Feature (type, geometry, properties)")
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise InvalidInput("properties: a JSON object")
    geom = None if body.get("geometry") is None else gisfile.lonlat_geometry(body["geometry"], crs,
                                                                 "geometry")
    result = await anyio.to_thread.run_sync(  # off the loop: it waits for the draft's lock
        lambda: drafts.put_unit(session, gen_id, code, settings, actor=user.name,
                                if_match=if_match, geometry=geom, properties=props,
                                dry_run=dry_run))
    resp = _edited(result)
    tag = result.units.get(code, {}).get("etag")
    if tag:
        resp.headers["ETag"] = tag
    return resp


@router.post("/generations/{gen_id}/split", response_model=EditOut, responses=EDIT_ERRORS)
def split_unit(gen_id: GenPath, body: SplitIn, session: WriteSessionDep,
               settings: SettingsDep, user: CurrentUser, dry_run: DryRun = False) -> Response:
    """Split a unit of a draft (planner) by a cutting line or into given parts: the parts
    take the next free codes under its parent, west to east and north to south; its code
    ends."""
    require(user, PLANNER)
    line = None if body.line is None else gisfile.lonlat_geometry(body.line, body.crs, "line")
    parts = None if body.parts is None else [
        gisfile.lonlat_geometry(p, body.crs, f"parts[{i}]") for i, p in enumerate(body.parts)]
    return _edited(drafts.split(session, gen_id, body.code, settings, actor=user.name,
                                line=line, parts=parts, names=body.names, dry_run=dry_run))


@router.post("/generations/{gen_id}/merge", response_model=EditOut, responses=EDIT_ERRORS)
def merge_units(gen_id: GenPath, body: MergeIn, session: WriteSessionDep,
                settings: SettingsDep, user: CurrentUser, dry_run: DryRun = False) -> Response:
    """Merge sibling units of a draft (planner) that share edges: the result keeps `keep`'s
    code or takes the next free one."""
    require(user, PLANNER)
    return _edited(drafts.merge(session, gen_id, body.codes, settings, actor=user.name,
                                keep=body.keep, name=body.name, dry_run=dry_run))


@router.post("/generations/{gen_id}/redraw", response_model=EditOut, responses=EDIT_ERRORS)
def redraw_boundary(gen_id: GenPath, body: RedrawIn, session: WriteSessionDep,
                    settings: SettingsDep, user: CurrentUser,
                    dry_run: DryRun = False) -> Response:
    """Move the boundary two units of a draft share (planner), once, for both: their outline
    together is kept exactly and cut anew by `line`, or by the first unit's new `geometry`
    (the second takes the rest). No gap or overlap can appear; parents follow."""
    require(user, PLANNER)
    line = None if body.line is None else gisfile.lonlat_geometry(body.line, body.crs, "line")
    geom = (None if body.geometry is None
            else gisfile.lonlat_geometry(body.geometry, body.crs, "geometry"))
    a, b = body.codes
    return _edited(drafts.redraw(session, gen_id, a, b, settings, actor=user.name, line=line,
                                 geometry=geom, dry_run=dry_run))


@router.post("/generations/{gen_id}/move", response_model=EditOut, responses=EDIT_ERRORS)
def move_unit(gen_id: GenPath, body: MoveIn, session: WriteSessionDep,
              settings: SettingsDep, user: CurrentUser, dry_run: DryRun = False) -> Response:
    """Give a unit of a draft another parent (planner): it takes the next free code under
    the new parent, the old code ends, both parents follow."""
    require(user, PLANNER)
    return _edited(drafts.move(session, gen_id, body.code, body.parent, settings,
                               actor=user.name, name=body.name, dry_run=dry_run))


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
