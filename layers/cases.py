"""Cases: one intake for every channel (resolved at once, the answer kept with the case),
duplicates linked rather than dispatched twice, every action an appended event, optimistic
locking so two concurrent actions cannot both win."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from layers.models import Case, CaseEvent
from layers.settings import Settings
from layers.workflow import OPEN, SYSTEM, allowed, step
from spatial.errors import Conflict, InvalidInput, NotFound

CHANNELS = ("hotline_12345", "hotline_12319", "hotline_962121", "hotline_110", "patrol_app",
            "camera", "web", "letter", "media", "open311")


class StaleVersion(Conflict):
    """Somebody else changed the case first."""

    code = "stale_version"


@dataclass(frozen=True)
class Actor:
    """Who acts: a name, a role, and for department handlers their department."""

    name: str
    role: str
    department: str | None = None


@dataclass(frozen=True)
class Intake:
    """A report as it arrives, already normalised to WGS84 and resolved."""

    channel: str
    category: str
    lon: float
    lat: float
    input_crs: str
    description: str
    reporter_name: str | None
    reporter_phone: str | None
    idempotency_key: str | None
    resolution: dict[str, Any]  # chain, h3, generation, owner answer with its trail
    reporter_email: str | None = None
    reporter_device: str | None = None  # the app's device id (Open311 device_id)


def new_ref(session: Session, at: datetime) -> str:
    """A public reference: year and a random part that says nothing about the reporter."""
    for _ in range(10):
        ref = f"SJ{at:%Y}-{secrets.token_hex(4).upper()}"
        if session.scalar(select(Case.id).where(Case.ref == ref)) is None:
            return ref
    raise Conflict("could not draw a free case reference; try again")


def _event(session: Session, case: Case, actor: Actor, action: str, before: str | None,
           after: str | None, note: str = "", data: dict[str, Any] | None = None, *,
           at: datetime) -> None:
    """Append an event, stamped with the time the case row was (the facts kept on the row
    and the log agree to the microsecond)."""
    session.add(CaseEvent(case_id=case.id, at=at, actor=actor.name, role=actor.role,
                          action=action, from_status=before, to_status=after, note=note,
                          data=data or {}))


def find_duplicate(session: Session, it: Intake, settings: Settings) -> Case | None:
    """An open case of the same category within the radius and time window, or on the same
    asset: the new report joins it instead of becoming a second dispatch. Found by index:
    the cases in a box around the point (GiST; the geodesic distance decides) or on the
    asset (migration 0008), whatever the number of open cases."""
    asset = ((it.resolution.get("owner") or {}).get("asset") or {}).get("code")
    r = settings.duplicate_radius_m
    # a box that holds the radius (2 % and 1 cm to spare): only a prefilter
    dy = r / 110_574.0 * 1.02 + 1e-7
    dx = r / (111_320.0 * max(math.cos(math.radians(it.lat)), 1e-6)) * 1.02 + 1e-7
    row = session.execute(text("""
        SELECT c.id FROM "case" c
         WHERE c.category_code = :cat AND c.duplicate_of IS NULL
           AND c.status = ANY(:open)
           AND c.created_at >= clock_timestamp() - CAST(:h AS float8) * interval '1 hour'
           AND ((c.geom && ST_Expand(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :dx, :dy)
                 AND ST_DWithin(c.geom::geography,
                                ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :r))
                OR c.resolution->'owner'->'asset'->>'code' = CAST(:asset AS text))
         ORDER BY ST_Distance(c.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)), c.id
         LIMIT 1 FOR UPDATE"""),
        {"cat": it.category, "open": list(OPEN), "h": settings.duplicate_window_h,
         "lon": it.lon, "lat": it.lat, "r": r, "dx": dx, "dy": dy, "asset": asset},
    ).first()
    return session.get(Case, row.id) if row else None


def intake(session: Session, it: Intake, actor: Actor, settings: Settings) -> tuple[Case, bool]:
    """Store a report (never dropped: outside every grid it is kept and flagged). Returns
    (case, created); a repeated idempotency key returns the first case unchanged."""
    if it.channel not in CHANNELS:
        raise InvalidInput(f"channel: {it.channel!r} is not one of {', '.join(CHANNELS)}")
    # one round trip: the time, the new case's id, a retried request, a free reference
    ref = f"SJ{datetime.now(UTC):%Y}-{secrets.token_hex(4).upper()}"
    first = session.execute(text("""
        SELECT clock_timestamp() AS now,
               nextval(pg_get_serial_sequence('"case"', 'id')) AS id,
               (SELECT p.id FROM "case" p WHERE p.idempotency_key = :key) AS prior,
               EXISTS (SELECT 1 FROM "case" r WHERE r.ref = :ref) AS taken"""),
        {"key": it.idempotency_key, "ref": ref}).one()
    if first.prior is not None:
        prior = session.get(Case, first.prior)
        assert prior is not None
        return prior, False
    now: datetime = first.now
    if first.taken or not ref.startswith(f"SJ{now:%Y}-"):
        ref = new_ref(session, now)
    chain = it.resolution.get("chain") or []
    owner = it.resolution.get("owner") or {}
    dup = find_duplicate(session, it, settings)
    if dup is not None and dup.created_at > now:
        # the original was stored by a request that began after this one: this report
        # is the later one now, so that a duplicate never predates its original
        now = session.execute(select(func.clock_timestamp())).scalar_one()
    case = Case(
        id=first.id, ref=ref, channel=it.channel, category_code=it.category,
        description=it.description, status="collected" if dup is None else "merged",
        version=1, duplicate_of=dup.id if dup is not None else None,
        geom=f"SRID=4326;POINT({it.lon!r} {it.lat!r})", input_crs=it.input_crs,
        inside=bool(chain), grid_code=chain[-1]["code"] if chain else None,
        street_code=next((u["code"] for u in chain if u["level"] == 2), None),
        h3_cell=it.resolution.get("h3"), generation_id=it.resolution.get("generation"),
        owner_department=(owner.get("owner") or {}).get("code"),
        resolution=orjson.loads(orjson.dumps(it.resolution, default=str)),
        reporter_name=it.reporter_name, reporter_phone=it.reporter_phone,
        reporter_email=it.reporter_email, reporter_device=it.reporter_device,
        idempotency_key=it.idempotency_key, created_at=now, updated_at=now,
    )
    session.add(case)
    _event(session, case, actor, "report", None, "collected", it.description[:200],
           {"channel": it.channel, "inside": case.inside,
            "owner": case.owner_department, "disputed": owner.get("disputed")}, at=now)
    if not case.inside:
        _event(session, case, Actor("system", SYSTEM), "flag", "collected", "collected",
               "outside every grid: kept for the centre", {"nearest": it.resolution.get(
                   "nearest")}, at=now)
    if dup is not None:
        dup.reporters += 1  # the row is locked (find_duplicate: FOR UPDATE)
        dup.updated_at = now
        _event(session, case, Actor("system", SYSTEM), "merge", "collected", "merged",
               f"same problem as {dup.ref}", {"into": dup.ref}, at=now)
        _event(session, dup, Actor("system", SYSTEM), "reporter_added", dup.status,
               dup.status, f"{case.ref} reports the same problem",
               {"from": case.ref, "reporters": dup.reporters}, at=now)
    session.flush()  # the case, its events and the original's count in one flush
    return case, True


def get(session: Session, ref: str) -> Case:
    """A case by its public reference; 404 if none."""
    case = session.scalar(select(Case).where(Case.ref == ref))
    if case is None:
        raise NotFound(f"no case {ref!r}")
    return case


def _previous_open(session: Session, case: Case) -> str | None:
    """The state a suspended case came from."""
    return session.scalar(select(CaseEvent.from_status).where(
        CaseEvent.case_id == case.id, CaseEvent.to_status == "suspended").order_by(
        CaseEvent.id.desc()).limit(1))


def act(session: Session, case: Case, action: str, actor: Actor, *, version: int | None,
        note: str = "", data: dict[str, Any] | None = None,
        settings: Settings | None = None) -> Case:
    """Take an action: check it is legal for the state and the role, apply it with an
    optimistic lock (a stale version is a 409), and append its event."""
    data = dict(data or {})
    if actor.role == "department" and case.owner_department != actor.department:
        raise NotFound(f"no case {case.ref!r} for department {actor.department}")
    before = case.status
    prev = _previous_open(session, case) if before == "suspended" else None
    after = step(before, action, actor.role, prev)
    now = session.execute(select(func.clock_timestamp())).scalar_one()
    values: dict[str, Any] = {"status": after, "version": case.version + 1, "updated_at": now}
    original = case.duplicate_of  # merge/split: the case it duplicates
    if action == "dispatch":
        dept = data.get("department") or case.owner_department
        if not dept:
            raise InvalidInput("department: nobody to dispatch to; name a department")
        hours = data.get("deadline_hours") or (case.resolution.get("owner") or {}).get(
            "category", {}).get("deadline_hours") or 24
        values.update(owner_department=dept, deadline_at=now + timedelta(hours=float(hours)),
                      dispatched_at=now)
        data.update(department=dept, deadline_at=values["deadline_at"].isoformat())
    elif action == "bounce":
        if not note.strip():
            raise InvalidInput("note: a bounce ('not ours') needs a reason")
        # the dispatch no longer stands; remember whose it was
        values.update(dispatched_at=None,
                      bounced_by=[*(case.bounced_by or []), case.owner_department])
        data["department"] = case.owner_department
    elif action == "accept":
        values["accepted_at"] = now
    elif action == "take":
        values["taken_at"] = now
    elif action == "feedback" and case.feedback_at is None:
        values["feedback_at"] = now
    elif action == "verify":
        values["verified_role"] = actor.role
    elif action == "extend":
        hours = data.get("hours")
        if not isinstance(hours, int | float) or hours <= 0:
            raise InvalidInput("hours: an extension names a positive number of hours")
        base = case.deadline_at or now
        values["deadline_at"] = base + timedelta(hours=float(hours))
        data["deadline_at"] = values["deadline_at"].isoformat()
    elif action == "evaluate":
        score = data.get("satisfaction")
        if score not in (1, 2, 3, 4, 5):
            raise InvalidInput("satisfaction: 1 (very unhappy) to 5 (very satisfied)")
        values["satisfaction"] = score
    elif action == "merge":
        target = _merge_target(session, case, data)
        values["duplicate_of"] = original = target.id
        data["into"] = target.ref
    elif action == "split":
        values["duplicate_of"] = None
    if after == "closed":
        values["closed_at"] = now
    if after == "in_progress" and before == "feedback":
        values["closed_at"] = None
    res = session.execute(
        update(Case).where(Case.id == case.id, Case.version == (version or case.version))
        .values(**values))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(case)
        raise StaleVersion(f"case {case.ref} is at version {case.version}, not {version}: "
                           "somebody changed it first; reload and retry",
                           extra={"version": case.version, "status": case.status})
    if action in ("merge", "split") and original is not None:
        ref = _count_reporter(session, case, original, +1 if action == "merge" else -1,
                              actor, now)
        if action == "split":
            data["from"] = ref
    _event(session, case, actor, action, before, after, note, data, at=now)
    session.flush()
    session.refresh(case)
    return case


def _merge_target(session: Session, case: Case, data: dict[str, Any]) -> Case:
    """The open case a report is merged into by hand (data "into": its reference)."""
    ref = data.get("into")
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("into: name the reference of the case this one duplicates")
    if ref == case.ref:
        raise InvalidInput(f"into: {ref} is this case; a case cannot duplicate itself")
    target = get(session, ref)
    if target.duplicate_of is not None:
        first = session.get(Case, target.duplicate_of)
        raise Conflict(f"{ref} is itself a duplicate of {first.ref if first else '?'}: "
                       "merge into that case")
    if target.status not in OPEN:
        raise Conflict(f"{ref} is {target.status}: only an open case takes duplicates")
    return target


def _count_reporter(session: Session, case: Case, original_id: int, delta: int,
                    actor: Actor, now: datetime) -> str:
    """The original of a merge counts one reporter more (or, on a split, one less), in one
    statement (concurrent merges and splits cannot lose a count), with an event on it; its
    version stays, so nobody's pending action on it goes stale. Returns its reference."""
    row = session.execute(
        update(Case).where(Case.id == original_id)
        .values(reporters=Case.reporters + delta, updated_at=now)
        .returning(Case.ref, Case.status, Case.reporters)).one()
    original = session.get(Case, original_id)
    assert original is not None
    if delta > 0:
        _event(session, original, actor, "reporter_added", row.status, row.status,
               f"{case.ref} reports the same problem",
               {"from": case.ref, "reporters": row.reporters}, at=now)
    else:
        _event(session, original, actor, "reporter_removed", row.status, row.status,
               f"{case.ref} split off: not the same problem",
               {"split": case.ref, "reporters": row.reporters}, at=now)
    return str(row.ref)


def events(session: Session, case: Case) -> list[CaseEvent]:
    """The case's history, oldest first."""
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                .order_by(CaseEvent.id)))


def view(case: Case, *, private: bool) -> dict[str, Any]:
    """A case as the API shows it; reporter contact only when private is allowed."""
    out = {
        "ref": case.ref, "channel": case.channel, "category": case.category_code,
        "description": case.description, "status": case.status, "version": case.version,
        "inside": case.inside, "grid": case.grid_code, "street": case.street_code,
        "h3": case.h3_cell, "generation": case.generation_id,
        "department": case.owner_department, "deadline_at": case.deadline_at,
        "escalation": case.escalation, "reporters": case.reporters,
        "duplicate_of": case.duplicate_of, "satisfaction": case.satisfaction,
        "created_at": case.created_at, "updated_at": case.updated_at,
        "closed_at": case.closed_at, "resolution": case.resolution,
        "allowed": allowed(case.status),
    }
    if private:
        out["reporter"] = {"name": case.reporter_name, "phone": case.reporter_phone,
                           "email": case.reporter_email, "device_id": case.reporter_device}
    return out
