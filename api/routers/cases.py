"""The case loop over HTTP: intake from every channel, actions through the state machine,
the event log, listings by role, and the public reference lookup."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.deps import CurrentUser, SessionDep, WriteSessionDep, require
from api.geojson import json_response
from api.resolution import resolve_report, to_point
from layers import cases, photos
from layers.escalation import ESCALATING
from layers.intake_writer import IntakeWriter
from layers.models import Case
from layers.workflow import ADMIN, CENTRE, DEPARTMENT, OPEN, PATROL, PLANNER, STATES, step
from spatial.errors import InvalidInput, NotFound

router = APIRouter(tags=["cases"])


class Reporter(BaseModel):
    """Who reported (kept private: never on listings or public pages)."""

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)


class CaseIn(BaseModel):
    """A report from any channel."""

    channel: str = Field(description=f"one of {', '.join(cases.CHANNELS)}")
    category: str = Field(description="category code, e.g. C0101 or E0501")
    lon: float | None = None
    lat: float | None = None
    x: float | None = None
    y: float | None = None
    crs: str = "EPSG:4326"
    description: str = Field(default="", max_length=4000)
    reporter: Reporter | None = None


class ActionIn(BaseModel):
    """An action on a case, at the version the caller saw."""

    action: str
    version: int = Field(ge=1, description="the case version the caller saw")
    note: str = Field(default="", max_length=4000)
    data: dict[str, Any] = Field(default_factory=dict)


def _private_ok(user: cases.Actor) -> bool:
    return user.role in (CENTRE, ADMIN)


@router.post("/cases", status_code=201)
async def create_case(request: Request, body: CaseIn, user: CurrentUser,
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
    lon, lat, info = to_point(first, second, body.crs)
    resolution = await resolve_report(request, lon, lat, body.category)
    resolution["crs"] = info
    it = cases.Intake(channel=body.channel, category=body.category, lon=lon, lat=lat,
                      input_crs=info["key"], description=body.description,
                      reporter_name=body.reporter.name if body.reporter else None,
                      reporter_phone=body.reporter.phone if body.reporter else None,
                      idempotency_key=idempotency_key, resolution=resolution,
                      reporter_email=body.reporter.email if body.reporter else None)

    # stored by the worker's intake writer with the reports that arrive meanwhile (one
    # transaction for them all), committed before the answer is sent
    intake: IntakeWriter = request.app.state.intake
    out, created = await intake.submit(it, user, private=_private_ok(user))
    return json_response(out, status=201 if created else 200)


@router.get("/cases")
def list_cases(
    session: SessionDep, user: CurrentUser,
    status: Annotated[str | None, Query(description="a state, or 'open'")] = None,
    department: Annotated[str | None, Query()] = None,
    grid: Annotated[str | None, Query()] = None,
    category: Annotated[str | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    overdue: Annotated[bool, Query(
        description="past the deadline and not suspended (what escalation raises)")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Cases, newest first. A department handler sees its own department's only; nobody
    sees reporter contacts on a listing."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    q = select(Case)
    if user.role == DEPARTMENT:
        q = q.where(Case.owner_department == user.department)
    elif department:
        q = q.where(Case.owner_department == department)
    if status == "open":
        q = q.where(Case.status.in_(OPEN))
    elif status:
        if status not in STATES:
            raise InvalidInput(f"status: {status!r} is not one of open, {', '.join(STATES)}")
        q = q.where(Case.status == status)
    if grid:
        q = q.where(Case.grid_code == grid)
    if category:
        q = q.where(Case.category_code == category)
    if since:
        q = q.where(Case.created_at >= since)
    if until:
        q = q.where(Case.created_at < until)
    if overdue:
        # as the escalation job sees it: a suspended case's clock stands still
        q = q.where(Case.status.in_(ESCALATING), Case.deadline_at < func.clock_timestamp())
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.scalars(q.order_by(Case.created_at.desc(), Case.id.desc())
                           .limit(limit).offset(offset))
    return json_response({"numberMatched": total,
                  "items": [cases.view(c, private=False) for c in rows]})


def _view(session: SessionDep, case: Case, user: cases.Actor) -> Response:
    """A case as its caller may see it (reporter contact and rating code: the centre)."""
    private = _private_ok(user)
    return json_response(cases.view(case, private=private,
                                    key=cases.rating_key(session) if private else None))


def _visible(session: SessionDep, ref: str, user: cases.Actor) -> Case:
    case = cases.get(session, ref)
    if user.role == DEPARTMENT and case.owner_department != user.department:
        raise NotFound(f"no case {ref!r} for department {user.department}")
    return case


@router.get("/cases/{ref}")
def get_case(ref: str, session: SessionDep, user: CurrentUser) -> Response:
    """One case with the answer it was given at intake and the actions now allowed."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    return _view(session, _visible(session, ref, user), user)


@router.post("/cases/{ref}/actions")
def act(ref: str, body: ActionIn, request: Request, session: WriteSessionDep,
        user: CurrentUser) -> Response:
    """Take an action (accept, reject, dispatch, take, bounce, feedback, verify, reopen,
    evaluate, suspend, resume, cancel, extend, re_resolve, note...). An illegal one is a 409
    listing the allowed ones; a stale version is a 409 too. `re_resolve` resolves the case's
    point again against today's grid and layers; the event keeps the answer it had."""
    require(user, CENTRE, DEPARTMENT, PATROL)
    case = _visible(session, ref, user)
    resolution = None
    if body.action == "re_resolve":  # today's grid and layers, for the point as stored
        lon, lat = cases.point(session, case)
        resolution = anyio.from_thread.run(resolve_report, request, lon, lat,
                                           case.category_code)
    case = cases.act(session, case, body.action, user, version=body.version, note=body.note,
                     data=body.data, resolution=resolution)
    return _view(session, case, user)


@router.get("/cases/{ref}/events")
def case_events(ref: str, session: SessionDep, user: CurrentUser) -> Response:
    """Every action on the case, oldest first (who, role, when, from, to, note)."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    case = _visible(session, ref, user)
    return json_response({"ref": ref, "events": [
        {"at": e.at, "actor": e.actor, "role": e.role, "action": e.action,
         "from": e.from_status, "to": e.to_status, "note": e.note, "data": e.data}
        for e in cases.events(session, case)]})


@router.post("/cases/{ref}/photos", status_code=201)
async def add_photo(ref: str, request: Request, session: WriteSessionDep,
                    user: CurrentUser) -> Response:
    """Attach a photo (the raw image as the body: image/jpeg, image/png or image/webp, up to
    GRIDOPS_PHOTO_MAX_BYTES): checked by content, stored on disk, an event on the case."""
    require(user, CENTRE, DEPARTMENT, PATROL)
    case = _visible(session, ref, user)
    step(case.status, "note", user.role)  # a finished case takes no photo: 409 before storing
    settings = request.app.state.settings
    root = settings.photos_dir or (settings.home / "photos")
    info, new = await photos.store(request.stream(), request.headers.get("content-type", ""),
                                   root, case.ref, settings.photo_max_bytes)
    try:
        cases.act(session, case, "note", user, version=case.version, note="photo",
                  data={"photo": info})
        session.flush()
    except Exception:
        if new:  # nothing half-stored: the file goes with its event
            (root / case.ref / str(info["file"])).unlink(missing_ok=True)
        raise
    return json_response({"ref": case.ref, "photo": info}, status=201)


@router.get("/cases/{ref}/photos/{name}")
def get_photo(ref: str, name: str, request: Request, session: SessionDep,
              user: CurrentUser) -> Response:
    """A photo of a case."""
    require(user, CENTRE, DEPARTMENT, PATROL, PLANNER)
    case = _visible(session, ref, user)
    settings = request.app.state.settings
    root = settings.photos_dir or (settings.home / "photos")
    sha, _, ext = name.partition(".")
    path = root / case.ref / f"{sha}.{ext}"
    if not (len(sha) == 64 and ext in photos.EXT.values() and path.is_file()):
        raise NotFound(f"no photo {name!r} on case {ref}")
    media = next(k for k, v in photos.EXT.items() if v == ext)
    return Response(path.read_bytes(), media_type=media)


@router.get("/public/cases/{ref}")
def public_case(ref: str, session: SessionDep) -> Response:
    """What a citizen may see of a case by its reference: no personal data."""
    case = cases.get(session, ref)
    return json_response({"ref": case.ref, "category": case.category_code, "status": case.status,
                  "created_at": case.created_at, "updated_at": case.updated_at,
                  "closed_at": case.closed_at, "department": case.owner_department,
                  "satisfaction": case.satisfaction,
                  "can_rate": case.status == "closed"})


class RatingIn(BaseModel):
    """A citizen's satisfaction with a closed case."""

    satisfaction: int = Field(ge=1, le=5)
    code: str = Field(min_length=1, max_length=16,
                      description="the rating code the reporter was given with the reference")
    comment: str = Field(default="", max_length=1000)


@router.post("/public/cases/{ref}/rating")
def rate_case(ref: str, body: RatingIn, session: WriteSessionDep) -> Response:
    """The reporter's satisfaction (1-5) with a closed case, by its public reference and the
    rating code that came with it (references are public, e.g. on Open311: the code is what
    shows the rating is the reporter's)."""
    case = cases.get(session, ref)
    cases.check_rating_code(session, case, body.code)
    case = cases.act(session, case, "evaluate", cases.Actor("public", "public"),
                     version=case.version, note=body.comment,
                     data={"satisfaction": body.satisfaction})
    return json_response({"ref": case.ref, "status": case.status,
                          "satisfaction": case.satisfaction})
