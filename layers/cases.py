"""Cases: one intake for every channel (resolved at once, the answer kept with the case),
duplicates linked rather than dispatched twice, every action an appended event, optimistic
locking so two concurrent actions cannot both win."""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, update
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


def _event(session: Session, case: Case, actor: Actor, action: str, before: str | None,
           after: str | None, note: str = "", data: dict[str, Any] | None = None, *,
           at: datetime) -> None:
    """Append an event, stamped with the time the case row was (the facts kept on the row
    and the log agree to the microsecond)."""
    session.add(CaseEvent(case_id=case.id, at=at, actor=actor.name, role=actor.role,
                          action=action, from_status=before, to_status=after, note=note,
                          data=data or {}))


@dataclass(frozen=True)
class Stored:
    """A case as intake stored it: the fields `view` shows, without loading it back."""

    id: int
    ref: str
    channel: str
    category_code: str
    description: str
    status: str
    inside: bool
    grid_code: str | None
    street_code: str | None
    h3_cell: str | None
    generation_id: int | None
    owner_department: str | None
    duplicate_of: int | None
    duplicate_ref: str | None
    created_at: datetime
    resolution: Any  # the stored JSON as an orjson.Fragment (written once, sent as is)
    reporter_name: str | None
    reporter_phone: str | None
    reporter_email: str | None
    reporter_device: str | None
    version: int = 1
    reporters: int = 1
    escalation: int = 0
    deadline_at: datetime | None = None
    satisfaction: int | None = None
    closed_at: datetime | None = None

    @property
    def updated_at(self) -> datetime:
        """A new case was last changed when it was made."""
        return self.created_at


def duplicate_rule(it: Intake, settings: Settings) -> tuple[float, float]:
    """(radius m, window h) within which a new report joins an open case of its category:
    the category's own rule as resolved with the report, else the server's defaults."""
    rule = ((it.resolution.get("owner") or {}).get("category") or {}).get("duplicate") or {}
    return (float(rule.get("radius_m") or settings.duplicate_radius_m),
            float(rule.get("window_h") or settings.duplicate_window_h))


# One statement, one round trip: a retried request (idempotency key) makes nothing; else
# the open case this report duplicates (same category, within the radius and the window, by
# the GiST index; or on the same asset, migration 0008) is locked, the case is inserted with
# its events ('report'; 'flag' outside every grid; 'merge' and the original's
# 'reporter_added' when it joins one) and the original counts one reporter more. Its time
# is never before its original's (a concurrent request may have stored that one later).
# ON CONFLICT: a reference drawn twice or a concurrent retry inserts nothing; the caller
# tries again. Prepared once per connection: neither SQLAlchemy nor PostgreSQL plans it per
# case (planning it took as long as running it).
_OPEN_SQL = ", ".join(f"'{st}'" for st in OPEN)  # the states of index case_open_geom
_INTAKE = f"""
WITH prior AS (SELECT p.id FROM "case" p WHERE p.idempotency_key = %(key)s),
near AS (
    SELECT c.id, ST_Distance(c.geom, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)) AS d
      FROM "case" c
     WHERE c.geom && ST_Expand(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), %(dx)s,
                               %(dy)s)
       AND c.status IN ({_OPEN_SQL}) AND c.duplicate_of IS NULL
       AND c.category_code = %(cat)s
       AND c.created_at >= clock_timestamp()
                           - CAST(%(window_h)s AS float8) * interval '1 hour'
       AND ST_DWithin(c.geom::geography,
                      ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography, %(r)s)
    UNION ALL
    SELECT c.id, ST_Distance(c.geom, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326))
      FROM "case" c
     WHERE c.resolution->'owner'->'asset'->>'code' = %(asset)s
       AND c.status IN ({_OPEN_SQL}) AND c.duplicate_of IS NULL
       AND c.category_code = %(cat)s
       AND c.created_at >= clock_timestamp()
                           - CAST(%(window_h)s AS float8) * interval '1 hour'),
dup AS (
    SELECT c.id, c.ref, c.created_at FROM "case" c
     WHERE NOT EXISTS (SELECT FROM prior)
       AND c.id = (SELECT near.id FROM near ORDER BY near.d, near.id LIMIT 1)
       AND c.status IN ({_OPEN_SQL}) AND c.duplicate_of IS NULL  -- again once locked
       FOR UPDATE),
t AS (SELECT GREATEST(clock_timestamp(),
                      (SELECT created_at + interval '1 microsecond' FROM dup)) AS now),
ins AS (
    INSERT INTO "case" (ref, channel, category_code, description, status, version,
                        duplicate_of, geom, input_crs, inside, grid_code, street_code,
                        h3_cell, generation_id, owner_department, resolution, reporter_name,
                        reporter_phone, reporter_email, reporter_device, idempotency_key,
                        created_at, updated_at)
    SELECT 'SJ' || to_char(t.now, 'YYYY') || '-' || %(refpart)s, %(channel)s, %(cat)s,
           %(description)s, CASE WHEN dup.id IS NULL THEN 'collected' ELSE 'merged' END, 1,
           dup.id, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), %(input_crs)s,
           %(inside)s, %(grid)s, %(street)s, %(h3)s, %(generation)s, %(owner)s,
           CAST(%(resolution)s AS jsonb), %(reporter_name)s, %(reporter_phone)s,
           %(reporter_email)s, %(reporter_device)s, %(key)s, t.now, t.now
      FROM t LEFT JOIN dup ON true
     WHERE NOT EXISTS (SELECT FROM prior)
    ON CONFLICT DO NOTHING
    RETURNING id, ref, status, duplicate_of, created_at),
up AS (
    UPDATE "case" o SET reporters = o.reporters + 1, updated_at = ins.created_at
      FROM ins WHERE o.id = ins.duplicate_of
    RETURNING o.id, o.status, o.reporters),
ev AS (
    INSERT INTO case_event (case_id, at, actor, role, action, from_status, to_status, note,
                            data)
    SELECT ins.id, ins.created_at, %(actor)s, %(role)s, 'report', NULL, 'collected',
           %(note)s, CAST(%(report_data)s AS jsonb) FROM ins
    UNION ALL
    SELECT ins.id, ins.created_at, 'system', %(system)s, 'flag', 'collected', 'collected',
           'outside every grid: kept for the centre', CAST(%(flag_data)s AS jsonb)
      FROM ins WHERE NOT %(inside)s
    UNION ALL
    SELECT ins.id, ins.created_at, 'system', %(system)s, 'merge', 'collected', 'merged',
           'same problem as ' || dup.ref, jsonb_build_object('into', dup.ref)
      FROM ins JOIN dup ON dup.id = ins.duplicate_of
    UNION ALL
    SELECT up.id, ins.created_at, 'system', %(system)s, 'reporter_added', up.status,
           up.status, ins.ref || ' reports the same problem',
           jsonb_build_object('from', ins.ref, 'reporters', up.reporters)
      FROM ins JOIN up ON up.id = ins.duplicate_of
    RETURNING 1)
SELECT ins.id, ins.ref, ins.status, ins.duplicate_of, ins.created_at,
       (SELECT dup.ref FROM dup) AS duplicate_ref, (SELECT id FROM prior) AS prior,
       (SELECT count(*) FROM ev) AS events
  FROM (SELECT 1) one LEFT JOIN ins ON true"""


_INTAKE_PARAMS = {
    "key": "text", "cat": "text", "open": "text[]", "window_h": "float8", "lon": "float8",
    "lat": "float8", "dx": "float8", "dy": "float8", "r": "float8", "asset": "text",
    "refpart": "text", "channel": "text", "description": "text", "input_crs": "text",
    "inside": "boolean", "grid": "text", "street": "text", "h3": "text",
    "generation": "integer", "owner": "text", "resolution": "text",
    "reporter_name": "text", "reporter_phone": "text", "reporter_email": "text",
    "reporter_device": "text", "actor": "text", "role": "text", "system": "text",
    "note": "text", "report_data": "text", "flag_data": "text"}
_NAMES = list(_INTAKE_PARAMS)
_PREPARE = (f"PREPARE gridops_intake ({', '.join(_INTAKE_PARAMS.values())}) AS "
            + re.sub(r"%\((\w+)\)s", lambda m: f"${_NAMES.index(m[1]) + 1}", _INTAKE))
# one plan for every report (custom plans cost more to make than to run)
_EXECUTE = ("SET LOCAL plan_cache_mode = force_generic_plan; "
            f"EXECUTE gridops_intake ({', '.join(f'%({n})s' for n in _NAMES)})")


def _run_intake(session: Session, params: dict[str, Any]) -> Any:
    """The intake statement on the session's connection, prepared there on first use (a
    prepared statement lives as long as the connection, whatever its transactions do)."""
    conn = session.connection()
    info = conn.connection.info
    if not info.get("gridops_intake"):
        conn.exec_driver_sql(_PREPARE)
        info["gridops_intake"] = True
    return conn.exec_driver_sql(_EXECUTE, params).one()


def store(session: Session, it: Intake, actor: Actor, settings: Settings
          ) -> Stored | Case:
    """Store a report (never dropped: outside every grid it is kept and flagged) in one
    statement. Returns the new case as stored, or, for a repeated idempotency key, the
    first case unchanged (a `Case`)."""
    if it.channel not in CHANNELS:
        raise InvalidInput(f"channel: {it.channel!r} is not one of {', '.join(CHANNELS)}")
    chain = it.resolution.get("chain") or []
    owner = it.resolution.get("owner") or {}
    asset = (owner.get("asset") or {}).get("code")
    r, window_h = duplicate_rule(it, settings)
    # a box that holds the radius (2 % and 1 cm to spare): only the index's prefilter
    dy = r / 110_574.0 * 1.02 + 1e-7
    dx = r / (111_320.0 * max(math.cos(math.radians(it.lat)), 1e-6)) * 1.02 + 1e-7
    inside = bool(chain)
    dept = (owner.get("owner") or {}).get("code")
    resolution = orjson.dumps(it.resolution, default=str)
    grid: str | None = chain[-1]["code"] if chain else None
    street: str | None = next((u["code"] for u in chain if u["level"] == 2), None)
    h3: str | None = it.resolution.get("h3")
    generation: int | None = it.resolution.get("generation")
    params: dict[str, Any] = {
        "key": it.idempotency_key, "cat": it.category, "open": list(OPEN),
        "window_h": window_h, "lon": it.lon, "lat": it.lat, "r": r, "dx": dx, "dy": dy,
        "asset": asset, "channel": it.channel, "description": it.description,
        "input_crs": it.input_crs, "inside": inside,
        "grid": grid, "street": street, "h3": h3, "generation": generation,
        "owner": dept, "resolution": resolution.decode(),
        "reporter_name": it.reporter_name, "reporter_phone": it.reporter_phone,
        "reporter_email": it.reporter_email, "reporter_device": it.reporter_device,
        "actor": actor.name, "role": actor.role, "system": SYSTEM,
        "note": it.description[:200],
        "report_data": orjson.dumps({"channel": it.channel, "inside": inside, "owner": dept,
                                     "disputed": owner.get("disputed")}).decode(),
        "flag_data": orjson.dumps({"nearest": it.resolution.get("nearest")},
                                  default=str).decode(),
    }
    for _ in range(10):
        params["refpart"] = secrets.token_hex(4).upper()
        row = _run_intake(session, params)
        if row.prior is not None:
            prior = session.get(Case, row.prior)
            assert prior is not None
            return prior
        if row.id is not None:
            return Stored(
                id=row.id, ref=row.ref, channel=it.channel, category_code=it.category,
                description=it.description, status=row.status, inside=inside,
                grid_code=grid, street_code=street, h3_cell=h3, generation_id=generation,
                owner_department=dept, duplicate_of=row.duplicate_of,
                duplicate_ref=row.duplicate_ref, created_at=row.created_at,
                resolution=orjson.Fragment(resolution), reporter_name=it.reporter_name,
                reporter_phone=it.reporter_phone, reporter_email=it.reporter_email,
                reporter_device=it.reporter_device)
        # nothing inserted: the reference was taken, or a retry with the same key is
        # being stored concurrently (the next round finds it as prior)
    raise Conflict("could not store the case (ten references drawn were taken); try again")


def intake(session: Session, it: Intake, actor: Actor, settings: Settings) -> tuple[Case, bool]:
    """`store`, with the case loaded as an ORM object (for callers that act on it next).
    Returns (case, created)."""
    got = store(session, it, actor, settings)
    if isinstance(got, Case):
        return got, False
    case = session.get(Case, got.id)
    assert case is not None
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


def view(case: Case | Stored, *, private: bool) -> dict[str, Any]:
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
