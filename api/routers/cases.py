"""The case loop over HTTP: intake from every channel, actions through the state machine,
the event log, listings by role, and the public reference lookup. Queries, actions and the
views of a case live in layers (case_queries, case_actions, case_view); this router parses,
calls them, and answers."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from api.deps import (
    CurrentUser,
    IntakeDep,
    ReportsDep,
    SessionDep,
    SettingsDep,
    WriteSessionDep,
    require,
)
from api.geojson import json_response
from api.routing import CheckedRoute, reads
from api.schemas.cases import (
    ActionIn,
    CaseEvents,
    CaseIn,
    CaseList,
    CaseOut,
    PhotoAdded,
    PublicCase,
    RatingIn,
    RatingOut,
)
from api.schemas.common import Timestamp, errors
from layers import case_actions, case_queries, photos
from layers.case_view import event_view, public_view, view
from layers.cases import Actor, Intake
from layers.models import Case
from layers.rating import check_rating_code, rating_key
from layers.resolution import normalise_point
from layers.workflow import ADMIN, CENTRE, DEPARTMENT, PATROL, PLANNER, PUBLIC, step
from spatial.errors import InvalidInput, NotFound

router = APIRouter(route_class=CheckedRoute, tags=["cases"])


def _private_ok(user: Actor) -> bool:
    return user.role in (CENTRE, ADMIN)


def _view(session: SessionDep, case: Case, user: Actor) -> Response:
    """A case as its caller may see it (reporter contact and rating code: the centre)."""
    private = _private_ok(user)
    return json_response(view(case, private=private,
                              duplicate_ref=case_queries.original_ref(session, case),
                              key=rating_key(session) if private else None))


@router.post("/cases", status_code=201, response_model=CaseOut,
             responses={200: {"model": CaseOut,
                              "description": "a retry (same Idempotency-Key): the case it made"},
                        **errors(401, 403, 422)})
async def create_case(body: CaseIn, user: CurrentUser, reports: ReportsDep,
                      intake: IntakeDep,
                      idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
                      ) -> Response:
    """Report a problem: it is resolved at once (grid chain, owner with its reasons, patrol)
    and the answer is kept with the case. A retry with the same Idempotency-Key creates
    nothing new; the same problem reported again nearby joins the open case."""
    require(user, CENTRE, PATROL)
    first = body.x if body.x is not None else body.lon
    second = body.y if body.y is not None else body.lat
    if first is None or second is None:
        raise InvalidInput("location: give lon and lat (or x and y with a projected crs)")
    pt = normalise_point(first, second, body.crs)
    if reports.needs_io(None):  # no index in memory yet: it is built from the database
        resolution = await anyio.to_thread.run_sync(reports.resolve, pt.lon, pt.lat,
                                                    body.category)
    else:
        resolution = reports.resolve(pt.lon, pt.lat, body.category)
    resolution["crs"] = pt.crs
    it = Intake(channel=body.channel, category=body.category, lon=pt.lon, lat=pt.lat,
                input_crs=pt.crs["key"], description=body.description,
                reporter_name=body.reporter.name if body.reporter else None,
                reporter_phone=body.reporter.phone if body.reporter else None,
                idempotency_key=idempotency_key, resolution=resolution,
                reporter_email=body.reporter.email if body.reporter else None)
    # stored by the worker's intake writer with the reports that arrive meanwhile (one
    # transaction for them all), committed before the answer is sent
    out, created = await intake.submit(it, user, private=_private_ok(user))
    return json_response(out, status=201 if created else 200)


@router.get("/cases", response_model=CaseList, responses=errors(401, 403, 422))
def list_cases(
    session: SessionDep, user: CurrentUser,
    status: Annotated[str | None, Query(description="a state, or 'open'")] = None,
    department: Annotated[str | None, Query()] = None,
    grid: Annotated[str | None, Query()] = None,
    lineage: Annotated[bool, Query(description=(
        "with grid: the cases of every code related to it through boundary changes, both "
        "ways (GET /grids/{code}/lineage): a grid's history across a split or merge"))
    ] = False,
    category: Annotated[str | None, Query()] = None,
    since: Annotated[Timestamp | None, Query()] = None,
    until: Annotated[Timestamp | None, Query()] = None,
    overdue: Annotated[bool, Query(
        description="past the deadline and not suspended (what escalation raises)")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    """Cases, newest first. A department handler sees its own department's only; nobody
    sees reporter contacts on a listing."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    page = case_queries.list_cases(
        session, user, case_queries.CaseFilter(
            status=status, department=department, grid=grid, lineage=lineage,
            category=category,
            since=since, until=until, overdue=overdue), limit=limit, offset=offset)
    return json_response({"numberMatched": page.total, "items": [
        view(c, private=False, duplicate_ref=ref) for c, ref in page.cases]})


@router.get("/cases/{ref}", response_model=CaseOut, responses=errors(401, 403, 404))
def get_case(ref: str, session: SessionDep, user: CurrentUser) -> Response:
    """One case with the answer it was given at intake and the actions now allowed."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    return _view(session, case_queries.get_for(session, ref, user), user)


@router.post("/cases/{ref}/actions", response_model=CaseOut,
             responses=errors(401, 403, 404, 409, 422))
def act(ref: str, body: ActionIn, session: WriteSessionDep, user: CurrentUser,
        reports: ReportsDep) -> Response:
    """Take an action (accept, reject, dispatch, take, bounce, feedback, verify, reopen,
    evaluate, suspend, resume, cancel, extend, re_resolve, note...). An illegal one is a 409
    listing the allowed ones; a stale version is a 409 too. `re_resolve` resolves the case's
    point again against today's grid and layers; the event keeps the answer it had."""
    require(user, CENTRE, DEPARTMENT, PATROL)
    case = case_queries.get_for(session, ref, user)
    resolution = None
    if body.action == "re_resolve":  # today's grid and layers, for the point as stored
        lon, lat = case_queries.point(session, case)
        resolution = reports.resolve(lon, lat, case.category_code)  # (a worker thread)
    case = case_actions.act(session, case, body.action, user, version=body.version,
                            note=body.note, data=body.data, resolution=resolution)
    return _view(session, case, user)


@router.get("/cases/{ref}/events", response_model=CaseEvents,
            responses=errors(401, 403, 404))
def case_events(ref: str, session: SessionDep, user: CurrentUser) -> Response:
    """Every action on the case, oldest first (who, role, when, from, to, note)."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    case = case_queries.get_for(session, ref, user)
    return json_response({"ref": case.ref, "events": [
        event_view(e, private=_private_ok(user)) for e in case_queries.events(session, case)]})


@router.post("/cases/{ref}/photos", status_code=201, response_model=PhotoAdded,
             responses=errors(401, 403, 404, 409, 413, 415),
             openapi_extra=reads("image/jpeg", "image/png", "image/webp",
                                limit="photo_max_bytes"))
async def add_photo(ref: str, request: Request, session: WriteSessionDep,
                    user: CurrentUser, settings: SettingsDep) -> Response:
    """Attach a photo (the raw image as the body: image/jpeg, image/png or image/webp, up to
    GRIDOPS_PHOTO_MAX_BYTES): checked by content, stored on disk, an event on the case."""
    require(user, CENTRE, DEPARTMENT, PATROL)
    case = case_queries.get_for(session, ref, user)
    step(case.status, "note", user.role)  # a finished case takes no photo: 409 before storing
    root = settings.photos_root
    info, new = await photos.store(request.stream(), request.headers.get("content-type", ""),
                                   root, case.ref, settings.photo_max_bytes)
    try:  # off the loop: the case's row lock may be another request's for a while
        await anyio.to_thread.run_sync(lambda: case_actions.act(
            session, case, "note", user, version=case.version, note="photo",
            data={"photo": info}))
    except Exception:
        if new:  # nothing half-stored: the file goes with its event
            (root / case.ref / str(info["file"])).unlink(missing_ok=True)
        raise
    return json_response({"ref": case.ref, "photo": info}, status=201)


@router.get("/cases/{ref}/photos/{name}", response_class=Response,
            responses={200: {"content": {media: {} for media in photos.EXT},
                             "description": "the image as it was sent"},
                       **errors(401, 403, 404)})
def get_photo(ref: str, name: str, session: SessionDep, user: CurrentUser,
              settings: SettingsDep) -> Response:
    """A photo of a case."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    case = case_queries.get_for(session, ref, user)
    sha, _, ext = name.partition(".")
    path = settings.photos_root / case.ref / f"{sha}.{ext}"
    if not (len(sha) == 64 and ext in photos.EXT.values() and path.is_file()):
        raise NotFound(f"no photo {name!r} on case {ref}")
    media = next(k for k, v in photos.EXT.items() if v == ext)
    return Response(path.read_bytes(), media_type=media)


@router.get("/public/cases/{ref}", response_model=PublicCase, responses=errors(404))
def public_case(ref: str, session: SessionDep) -> Response:
    """What a citizen may see of a case by its reference: no personal data."""
    return json_response(public_view(case_queries.get(session, ref)))


@router.post("/public/cases/{ref}/rating", response_model=RatingOut,
             responses=errors(403, 404, 409, 422))
def rate_case(ref: str, body: RatingIn, session: WriteSessionDep) -> Response:
    """The reporter's satisfaction (1-5) with a closed case, by its public reference and the
    rating code that came with it (references are public, e.g. on Open311: the code is what
    shows the rating is the reporter's)."""
    case = case_queries.get(session, ref)
    check_rating_code(session, case, body.code)
    case = case_actions.act(session, case, "evaluate", Actor("public", PUBLIC),
                            version=case.version, note=body.comment,
                            data={"satisfaction": body.satisfaction})
    return json_response({"ref": case.ref, "status": case.status,
                          "satisfaction": case.satisfaction})
