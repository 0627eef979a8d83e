"""Cases: one intake for every channel (resolved at once, the answer kept with the case),
duplicates linked rather than dispatched twice, every action an appended event, optimistic
locking so two concurrent actions cannot both win."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pyproj import Geod
from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.orm import Session

from layers.models import Case, CaseEvent, Department
from layers.settings import Settings
from layers.workflow import OPEN, SYSTEM, Forbidden, allowed, step
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
    updated_at: datetime
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


def duplicate_rule(it: Intake, settings: Settings) -> tuple[float, float]:
    """(radius m, window h) within which a new report joins an open case of its category:
    the category's own rule as resolved with the report, else the server's defaults."""
    rule = ((it.resolution.get("owner") or {}).get("category") or {}).get("duplicate") or {}
    radius, window = rule.get("radius_m"), rule.get("window_h")  # radius 0: by asset only
    return (float(settings.duplicate_radius_m if radius is None else radius),
            float(settings.duplicate_window_h if window is None else window))


# Reports are stored in batches (layers.intake_writer) in two statements whatever their
# number: _LOOK finds, for every report, a retried request (its idempotency key), the open
# original it duplicates in the database (same category, within the category's radius and
# window by the partial GiST index of open originals, or on the same asset; the nearest,
# locked so that nobody closes it meanwhile, in id order so that two writers cannot
# deadlock), a new id and the time; Python then links reports of the batch to one another
# as if they had come one by one, and _WRITE inserts the cases and their events and counts
# the originals' new reporters. Per statement PostgreSQL costs ~0.3 ms on top of its rows
# (locks on the table and its indexes, executor start-up): one statement per report was
# most of an intake's database time.
_OPEN_SQL = ", ".join(f"'{st}'" for st in OPEN)  # the states of index case_open_geom
_LOOK = f"""
WITH r AS (
    SELECT * FROM unnest(%(key)s::text[], %(cat)s::text[], %(lon)s::float8[],
                         %(lat)s::float8[], %(dx)s::float8[], %(dy)s::float8[],
                         %(r)s::float8[], %(window_h)s::float8[], %(asset)s::text[],
                         %(ref)s::text[])
           WITH ORDINALITY AS r(key, cat, lon, lat, dx, dy, r, window_h, asset, ref, ord)),
cand AS (
    SELECT r.ord, (SELECT n.id FROM (
        SELECT c.id, ST_Distance(c.geom, ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)) AS d
          FROM "case" c
         WHERE c.geom && ST_Expand(ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326), r.dx, r.dy)
           AND c.status IN ({_OPEN_SQL}) AND c.duplicate_of IS NULL
           AND c.category_code || '' = r.cat  -- (not by index: the place is narrower)
           AND c.created_at >= clock_timestamp() - r.window_h * interval '1 hour'
           AND ST_DWithin(c.geom::geography,
                          ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)::geography, r.r)
        UNION ALL
        SELECT c.id, ST_Distance(c.geom, ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326))
          FROM "case" c
         WHERE c.resolution->'owner'->'asset'->>'code' = r.asset
           AND c.status IN ({_OPEN_SQL}) AND c.duplicate_of IS NULL
           AND c.category_code || '' = r.cat
           AND c.created_at >= clock_timestamp() - r.window_h * interval '1 hour') n
        ORDER BY n.d, n.id LIMIT 1) AS dup,
        (SELECT p.id FROM "case" p WHERE p.idempotency_key = r.key) AS prior,
        EXISTS (SELECT FROM "case" x WHERE x.ref = r.ref) AS ref_taken,
        nextval(pg_get_serial_sequence('"case"', 'id')) AS new_id
      FROM r),
locked AS (
    SELECT c.id, c.ref, c.created_at, c.status, c.reporters FROM "case" c
     WHERE c.id IN (SELECT dup FROM cand)
       -- again, once locked: an original closed meanwhile is dropped (the report becomes
       -- a case of its own rather than joining the second nearest)
       AND c.status IN ({_OPEN_SQL}) AND c.duplicate_of IS NULL
     ORDER BY c.id FOR UPDATE)
SELECT cand.ord, cand.prior, cand.ref_taken, cand.new_id, clock_timestamp() AS now,
       locked.id AS dup,
       locked.ref AS dup_ref, locked.created_at AS dup_created_at,
       locked.status AS dup_status, locked.reporters AS dup_reporters,
       ST_Distance(ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)::geography,
                   o.geom::geography) AS dup_m
  FROM cand JOIN r USING (ord)
  LEFT JOIN locked ON locked.id = cand.dup
  LEFT JOIN "case" o ON o.id = locked.id
 ORDER BY cand.ord"""

_WRITE = """
WITH c AS (
    INSERT INTO "case" (id, ref, channel, category_code, description, status, version,
                        duplicate_of, geom, input_crs, inside, grid_code, street_code,
                        h3_cell, generation_id, owner_department, resolution, reporter_name,
                        reporter_phone, reporter_email, reporter_device, idempotency_key,
                        reporters, created_at, updated_at)
    SELECT id, ref, channel, cat, description, status, 1, dup,
           ST_SetSRID(ST_MakePoint(lon, lat), 4326), input_crs, inside, grid, street, h3,
           generation, owner, CAST(resolution AS jsonb), reporter_name, reporter_phone,
           reporter_email, reporter_device, key, reporters, at, updated_at
      FROM unnest(%(id)s::bigint[], %(ref)s::text[], %(channel)s::text[], %(cat)s::text[],
                  %(description)s::text[], %(status)s::text[], %(dup)s::bigint[],
                  %(lon)s::float8[], %(lat)s::float8[], %(input_crs)s::text[],
                  %(inside)s::boolean[], %(grid)s::text[], %(street)s::text[],
                  %(h3)s::text[], %(generation)s::int[], %(owner)s::text[],
                  %(resolution)s::text[], %(reporter_name)s::text[],
                  %(reporter_phone)s::text[], %(reporter_email)s::text[],
                  %(reporter_device)s::text[], %(key)s::text[], %(reporters)s::int[],
                  %(at)s::timestamptz[], %(updated_at)s::timestamptz[])
           AS t(id, ref, channel, cat, description, status, dup, lon, lat, input_crs, inside,
                grid, street, h3, generation, owner, resolution, reporter_name,
                reporter_phone, reporter_email, reporter_device, key, reporters, at,
                updated_at)
    RETURNING id),
o AS (
    UPDATE "case" o SET reporters = o.reporters + t.n, updated_at = t.at
      FROM unnest(%(o_id)s::bigint[], %(o_n)s::int[], %(o_at)s::timestamptz[]) AS t(id, n, at)
     WHERE o.id = t.id
    RETURNING o.id),
e AS (
    INSERT INTO case_event (case_id, at, actor, role, action, from_status, to_status, note,
                            data)
    SELECT * FROM unnest(%(e_case)s::bigint[], %(e_at)s::timestamptz[], %(e_actor)s::text[],
                         %(e_role)s::text[], %(e_action)s::text[], %(e_from)s::text[],
                         %(e_to)s::text[], %(e_note)s::text[], %(e_data)s::text[]::jsonb[])
    RETURNING 1)
SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM o), (SELECT count(*) FROM e)"""


# One plan for every batch, made by index: a plan made once must not depend on how many
# cases there were when it was made (on a new database, a sequential scan of the empty
# table would look cheapest and then stay, while the table grows).
_GENERIC = ("SET LOCAL plan_cache_mode = force_generic_plan; "
            "SET LOCAL enable_seqscan = off; ")


_PARAM = re.compile(r"%\((\w+)\)s::(\w+(?:\[\])?)")  # a parameter and its type


class _Prepared:
    """A statement prepared once per connection and run with one generic plan (planning
    the intake's statements took as long as running them). The plan is made again each
    time the connection has run it twice as often (10, 20, 40... times) and at least every
    10 minutes, so that it follows the tables as they grow (a plan made on a new, empty
    database would otherwise stay, whatever the table became). Every parameter is written
    `%(name)s::type` in the SQL: that cast is its type in the PREPARE."""

    def __init__(self, name: str, sql: str, replan_s: float = 600.0) -> None:
        types = dict(_PARAM.findall(sql))  # in the order of first use
        names = list(types)
        body = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", sql)
        self.name, self.replan_s = name, replan_s
        self._prepare = f"PREPARE {name} ({', '.join(types.values())}) AS {body}"
        self._execute = _GENERIC + f"EXECUTE {name} ({', '.join(f'%({n})s' for n in names)})"

    def run(self, conn: Connection, params: dict[str, Any]) -> Any:
        """Execute on a connection (SQLAlchemy's), preparing it there when due (a prepared
        statement lives as long as the connection, whatever its transactions do)."""
        info = conn.connection.info
        state = info.get(self.name)  # [executions, next replan at, prepared at]
        now = time.monotonic()
        if state is None or state[0] >= state[1] or now - state[2] > self.replan_s:
            if state is not None:
                conn.exec_driver_sql(f"DEALLOCATE {self.name}")
            conn.exec_driver_sql(self._prepare)
            runs = 0 if state is None else state[0]
            state = info[self.name] = [runs, max(10, runs * 2), now]
        state[0] += 1
        return conn.exec_driver_sql(self._execute, params)


_LOOK_STMT = _Prepared("gridops_intake_look", _LOOK)
_WRITE_STMT = _Prepared("gridops_intake_write", _WRITE)


@dataclass
class _Row:
    """A report of a batch on its way to the database."""

    it: Intake
    actor: Actor
    ref: str  # drawn at random, checked against the stored ones
    resolution: bytes  # JSON, as stored and as answered
    inside: bool
    grid: str | None
    street: str | None
    dept: str | None
    disputed: Any
    asset: str | None
    radius_m: float
    window_h: float
    id: int = 0
    at: datetime | None = None
    updated: datetime | None = None  # later, if reports of the same batch joined it
    dup: int | None = None  # the original's id
    dup_ref: str | None = None
    reporters: int = 1
    prior: int | None = None  # a retried request: the case it made

    @property
    def status(self) -> str:
        """A new case, or one that joined an open case."""
        return "collected" if self.dup is None else "merged"


def check_channel(channel: str) -> None:
    """422 for a channel gridops does not know."""
    if channel not in CHANNELS:
        raise InvalidInput(f"channel: {channel!r} is not one of {', '.join(CHANNELS)}")


@dataclass(frozen=True)
class Answer:
    """What a resolution says that is kept in the case row's own columns."""

    inside: bool
    grid: str | None
    street: str | None
    dept: str | None  # the owner department the rules found
    disputed: Any
    asset: str | None  # the asset that decided, if one did


def answer_of(resolution: dict[str, Any]) -> Answer:
    """The grid, street, owner and deciding asset of a stored resolution."""
    chain = resolution.get("chain") or []
    owner = resolution.get("owner") or {}
    return Answer(bool(chain), chain[-1]["code"] if chain else None,
                  next((u["code"] for u in chain if u["level"] == 2), None),
                  (owner.get("owner") or {}).get("code"), owner.get("disputed"),
                  (owner.get("asset") or {}).get("code"))


def _prepare(it: Intake, actor: Actor, settings: Settings) -> _Row:
    check_channel(it.channel)
    a = answer_of(it.resolution)
    r, window_h = duplicate_rule(it, settings)
    return _Row(it, actor, _new_ref(), orjson.dumps(it.resolution, default=str), a.inside,
                a.grid, a.street, a.dept, a.disputed, a.asset, r, window_h)


def _new_ref() -> str:
    """A public reference: the year and 32 random bits that say nothing about the reporter."""
    return f"SJ{datetime.now(UTC):%Y}-{secrets.token_hex(4).upper()}"


def _redraw_taken(conn: Connection, rows: list[_Row]) -> None:
    """New references for those drawn already (1 in ~10,000 at a million cases)."""
    for _ in range(10):
        if not rows:
            return
        for r in rows:
            r.ref = _new_ref()
        taken = {t for (t,) in conn.exec_driver_sql(
            'SELECT ref FROM "case" WHERE ref = ANY(%(refs)s)',
            {"refs": [r.ref for r in rows]})}
        rows = [r for r in rows if r.ref in taken]
    raise Conflict("could not draw a free case reference; try again")


_GEOD = Geod(ellps="WGS84")  # as PostGIS measures geography (the same spheroid)


def store_batch(session: Session, reports: list[tuple[Intake, Actor]], settings: Settings
                ) -> list[Stored | Case]:
    """Store reports in one transaction as if they came one by one in this order (never
    dropped: outside every grid a report is kept and flagged). For each, the new case as
    stored or, for a repeated idempotency key, the first case unchanged (a `Case`)."""
    rows = [_prepare(it, actor, settings) for it, actor in reports]
    if not rows:
        return []
    conn = session.connection()
    look = _LOOK_STMT.run(conn, {
        "key": [r.it.idempotency_key for r in rows], "cat": [r.it.category for r in rows],
        "lon": [r.it.lon for r in rows], "lat": [r.it.lat for r in rows],
        # a box that holds the radius (2 % and 1 cm to spare): only the index's prefilter
        "dy": [r.radius_m / 110_574.0 * 1.02 + 1e-7 for r in rows],
        "dx": [r.radius_m / (111_320.0 * max(math.cos(math.radians(r.it.lat)), 1e-6))
               * 1.02 + 1e-7 for r in rows],
        "r": [r.radius_m for r in rows], "window_h": [r.window_h for r in rows],
        "asset": [r.asset for r in rows], "ref": [r.ref for r in rows]}).all()
    _redraw_taken(conn, [r for r, f in zip(rows, look, strict=True) if f.ref_taken])
    tick = timedelta(microseconds=1)
    by_key: dict[str, _Row] = {}
    originals: dict[int, list[Any]] = {}  # database originals: [ref, status, reporters, at]
    new_originals: list[_Row] = []  # cases of this batch that others may join
    for k, (row, found) in enumerate(zip(rows, look, strict=True)):
        key = row.it.idempotency_key
        if found.prior is not None:  # a retried request: the case stored before...
            row.prior = found.prior
            continue
        if key is not None and key in by_key:  # ...or earlier in this batch
            row.prior = by_key[key].id
            continue
        if key is not None:
            by_key[key] = row
        row.id = found.new_id
        row.at = found.now + k * tick  # in the order they came, to the microsecond
        best = (found.dup_m, 0, found.dup) if found.dup is not None else None
        for j, other in enumerate(new_originals):  # the batch's own, as if stored already
            if other.it.category != row.it.category:
                continue
            same_asset = row.asset is not None and other.asset == row.asset
            _, _, m = _GEOD.inv(row.it.lon, row.it.lat, other.it.lon, other.it.lat)
            if (same_asset or m <= row.radius_m) and (best is None or (m, 1 + j) < best[:2]):
                best = (m, 1 + j, other.id)
        if best is None:
            new_originals.append(row)
            continue
        if best[1] == 0:  # the database's original
            o = originals.setdefault(found.dup, [found.dup_ref, found.dup_status,
                                                 found.dup_reporters, found.dup_created_at])
            row.dup, row.dup_ref = found.dup, o[0]
            row.at = max(row.at, found.dup_created_at + tick)
        else:
            first = new_originals[best[1] - 1]
            row.dup, row.dup_ref = first.id, first.ref
    stored = [r for r in rows if r.prior is None]
    by_id = {r.id: r for r in stored}
    events: list[tuple[Any, ...]] = []
    o_n: dict[int, int] = {}
    o_at: dict[int, datetime] = {}
    for r in stored:
        it = r.it
        events.append((r.id, r.at, r.actor.name, r.actor.role, "report", None, "collected",
                       it.description[:200], orjson.dumps({
                           "channel": it.channel, "inside": r.inside, "owner": r.dept,
                           "disputed": r.disputed}).decode()))
        if not r.inside:
            events.append((r.id, r.at, "system", SYSTEM, "flag", "collected", "collected",
                           "outside every grid: kept for the centre", orjson.dumps(
                               {"nearest": it.resolution.get("nearest")},
                               default=str).decode()))
        if r.dup is None:
            continue
        events.append((r.id, r.at, "system", SYSTEM, "merge", "collected", "merged",
                       f"same problem as {r.dup_ref}",
                       orjson.dumps({"into": r.dup_ref}).decode()))
        if r.dup in by_id:  # an original of this batch
            first = by_id[r.dup]
            first.reporters += 1
            first.updated = r.at
            count, status = first.reporters, "collected"
        else:
            o = originals[r.dup]
            o[2] += 1
            o_n[r.dup] = o_n.get(r.dup, 0) + 1
            o_at[r.dup] = r.at  # type: ignore[assignment]
            count, status = o[2], o[1]
        events.append((r.dup, r.at, "system", SYSTEM, "reporter_added", status, status,
                       f"{r.ref} reports the same problem",
                       orjson.dumps({"from": r.ref, "reporters": count}).decode()))
    if stored:
        cols = list(zip(*events, strict=True))
        _WRITE_STMT.run(conn, {
            "id": [r.id for r in stored], "ref": [r.ref for r in stored],
            "channel": [r.it.channel for r in stored], "cat": [r.it.category for r in stored],
            "description": [r.it.description for r in stored],
            "status": [r.status for r in stored],
            "dup": [r.dup for r in stored], "lon": [r.it.lon for r in stored],
            "lat": [r.it.lat for r in stored], "input_crs": [r.it.input_crs for r in stored],
            "inside": [r.inside for r in stored], "grid": [r.grid for r in stored],
            "street": [r.street for r in stored],
            "h3": [r.it.resolution.get("h3") for r in stored],
            "generation": [r.it.resolution.get("generation") for r in stored],
            "owner": [r.dept for r in stored],
            "resolution": [r.resolution.decode() for r in stored],
            "reporter_name": [r.it.reporter_name for r in stored],
            "reporter_phone": [r.it.reporter_phone for r in stored],
            "reporter_email": [r.it.reporter_email for r in stored],
            "reporter_device": [r.it.reporter_device for r in stored],
            "key": [r.it.idempotency_key for r in stored],
            "reporters": [r.reporters for r in stored], "at": [r.at for r in stored],
            "updated_at": [r.updated or r.at for r in stored],
            "o_id": list(o_n), "o_n": list(o_n.values()), "o_at": [o_at[i] for i in o_n],
            "e_case": list(cols[0]), "e_at": list(cols[1]), "e_actor": list(cols[2]),
            "e_role": list(cols[3]), "e_action": list(cols[4]), "e_from": list(cols[5]),
            "e_to": list(cols[6]), "e_note": list(cols[7]), "e_data": list(cols[8])})
    out: list[Stored | Case] = []
    for r in rows:
        if r.prior is not None:
            prior = session.get(Case, r.prior, populate_existing=True)
            assert prior is not None
            _same_report(prior, r.it)
            out.append(prior)
            continue
        it = r.it
        out.append(Stored(
            id=r.id, ref=r.ref, channel=it.channel, category_code=it.category,
            description=it.description, status=r.status,
            inside=r.inside, grid_code=r.grid, street_code=r.street,
            h3_cell=it.resolution.get("h3"), generation_id=it.resolution.get("generation"),
            owner_department=r.dept, duplicate_of=r.dup, duplicate_ref=r.dup_ref,
            created_at=r.at, updated_at=r.updated or r.at,  # type: ignore[arg-type]
            resolution=orjson.Fragment(r.resolution),
            reporter_name=it.reporter_name, reporter_phone=it.reporter_phone,
            reporter_email=it.reporter_email, reporter_device=it.reporter_device,
            reporters=r.reporters))
    return out


def _same_report(prior: Case, it: Intake) -> None:
    """A retry must be the same report: a key used again for another one is the caller's
    mistake (422), not a reason to answer with a case that is not theirs."""
    diff = [name for name, a, b in (("channel", prior.channel, it.channel),
                                    ("category", prior.category_code, it.category),
                                    ("description", prior.description, it.description))
            if a != b]
    if diff:
        raise InvalidInput(f"Idempotency-Key {it.idempotency_key!r} was used for case "
                           f"{prior.ref} with another {', '.join(diff)}: a new report needs "
                           "a new key")


def store(session: Session, it: Intake, actor: Actor, settings: Settings) -> Stored | Case:
    """Store one report: `store_batch` of one."""
    return store_batch(session, [(it, actor)], settings)[0]


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
    """A case by its public reference, as the database has it now (intake changes rows by
    plain SQL: an object the session holds already is refreshed); 404 if none."""
    case = session.scalar(select(Case).where(Case.ref == ref)
                          .execution_options(populate_existing=True))
    if case is None:
        raise NotFound(f"no case {ref!r}")
    return case


def _previous_open(session: Session, case: Case) -> str | None:
    """The state a suspended case came from."""
    return session.scalar(select(CaseEvent.from_status).where(
        CaseEvent.case_id == case.id, CaseEvent.to_status == "suspended").order_by(
        CaseEvent.id.desc()).limit(1))


def _stale(case: Case, version: int | None) -> StaleVersion:
    return StaleVersion(f"case {case.ref} is at version {case.version}, not {version}: "
                        "somebody changed it first; reload and retry",
                        extra={"version": case.version, "status": case.status})


def point(session: Session, case: Case) -> tuple[float, float]:
    """The case's WGS84 lon/lat as stored."""
    row = session.execute(select(func.ST_X(Case.geom), func.ST_Y(Case.geom))
                          .where(Case.id == case.id)).one()
    return float(row[0]), float(row[1])


# re-resolution may move a case to another department only before a dispatch stands
_REASSIGNABLE = ("collected", "accepted", "bounced")


def act(session: Session, case: Case, action: str, actor: Actor, *, version: int | None,
        note: str = "", data: dict[str, Any] | None = None,
        settings: Settings | None = None, resolution: dict[str, Any] | None = None) -> Case:
    """Take an action: check it is legal for the state and the role, apply it with an
    optimistic lock (a stale version is a 409), and append its event. `re_resolve` takes
    the new `resolution` made by the server's resolver for the case's point."""
    data = dict(data or {})
    if actor.role == "department" and case.owner_department != actor.department:
        raise NotFound(f"no case {case.ref!r} for department {actor.department}")
    if version is not None and version != case.version:  # what the caller saw is gone
        raise _stale(case, version)
    before = case.status
    prev = _previous_open(session, case) if before == "suspended" else None
    after = step(before, action, actor.role, prev)
    now = session.execute(select(func.clock_timestamp())).scalar_one()
    values: dict[str, Any] = {"status": after, "version": case.version + 1, "updated_at": now}
    original = case.duplicate_of  # merge/split: the case it duplicates
    if action == "dispatch":
        dept = case.owner_department
        if data.get("department") is not None:
            dept = _department(session, data["department"])
        if not dept:
            raise InvalidInput("department: nobody to dispatch to; name a department")
        if data.get("deadline_hours") is not None:
            hours = _hours(data, "deadline_hours")
        else:
            hours = ((case.resolution.get("owner") or {}).get("category", {})
                     .get("deadline_hours") or 24)
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
    elif action == "feedback":
        if not note.strip():
            raise InvalidInput("note: feedback states the result of the handling")
        if data.get("photos") is not None:
            data["photos"] = _attached(session, case, data["photos"])
        if case.feedback_at is None:
            values["feedback_at"] = now
    elif action == "verify":
        values["verified_role"] = actor.role
    elif action == "extend":
        hours = _hours(data, "hours")
        base = case.deadline_at or now
        values["deadline_at"] = base + timedelta(hours=hours)
        data["deadline_at"] = values["deadline_at"].isoformat()
    elif action == "evaluate":
        score = data.get("satisfaction")
        if isinstance(score, bool) or score not in (1, 2, 3, 4, 5):
            raise InvalidInput("satisfaction: 1 (very unhappy) to 5 (very satisfied)")
        values["satisfaction"] = score
    elif action == "merge":
        target = _merge_target(session, case, data)
        values["duplicate_of"] = original = target.id
        data["into"] = target.ref
    elif action == "split":
        values["duplicate_of"] = None
    elif action == "re_resolve":
        if resolution is None:
            raise InvalidInput("re_resolve: the server resolves the case's point again; "
                               "it takes no resolution from the caller")
        values.update(_re_resolved(case, resolution, data))
    if after == "closed":
        values["closed_at"] = now
    if after == "in_progress" and before == "feedback":
        values["closed_at"] = None
    res = session.execute(
        update(Case).where(Case.id == case.id, Case.version == (version or case.version))
        .values(**values))
    if res.rowcount != 1:  # type: ignore[attr-defined]  # changed since it was read
        session.refresh(case)
        raise _stale(case, version)
    if action in ("merge", "split") and original is not None:
        ref = _count_reporter(session, case, original, +1 if action == "merge" else -1,
                              actor, now)
        if action == "split":
            data["from"] = ref
    _event(session, case, actor, action, before, after, note, data, at=now)
    session.flush()
    session.refresh(case)
    return case


MAX_HOURS = 24 * 366  # a deadline or an extension of more than a year is a typo


def _hours(data: dict[str, Any], key: str) -> float:
    """data[key] as a number of hours: finite, more than 0, at most a year (422 if not)."""
    v = data.get(key)
    if (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            or not 0 < v <= MAX_HOURS):
        raise InvalidInput(f"data.{key}: {v!r} is not a number of hours above 0 and at "
                           f"most {MAX_HOURS}")
    return float(v)


def _attached(session: Session, case: Case, names: Any) -> list[str]:
    """Photos a feedback points to: files attached to this case before (422 if not)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInput("data.photos: a list of photo file names attached to the case")
    have = set(session.scalars(select(CaseEvent.data["photo"]["file"].astext).where(
        CaseEvent.case_id == case.id, CaseEvent.action == "note")))
    missing = [n for n in names if n not in have]
    if missing:
        raise InvalidInput(f"data.photos: {', '.join(missing[:5])} not attached to case "
                           f"{case.ref} (POST /cases/{case.ref}/photos first)")
    return names


def _department(session: Session, code: Any) -> str:
    """A department named by the caller: one that exists today (422 if not)."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput(f"data.department: {code!r} is not a department code")
    if session.scalar(select(Department.code).where(
            Department.code == code, Department.valid_to.is_(None))) is None:
        raise InvalidInput(f"data.department: no current department {code[:40]!r} "
                           "(GET /layers/departments lists them)")
    return code


def _summary(resolution: dict[str, Any]) -> dict[str, Any]:
    """What a re-resolution's event compares of the answers before and after."""
    a = answer_of(resolution)
    return {"grid": a.grid, "generation": resolution.get("generation"), "owner": a.dept,
            "asset": a.asset, "decided_by": (resolution.get("owner") or {}).get("decided_by")}


def _re_resolved(case: Case, resolution: dict[str, Any], data: dict[str, Any]
                 ) -> dict[str, Any]:
    """The row's new answer after an explicit re-resolution; the event's data keeps the
    whole answer it had before, what changed, and whether the owner moved (only before a
    dispatch stands: a dispatched case stays with its department until the centre acts)."""
    old = case.resolution or {}
    new = orjson.loads(orjson.dumps({**resolution, "crs": old.get("crs", resolution.get("crs"))},
                                    default=str))  # as intake stores it: plain JSON
    b = answer_of(new)
    reassign = case.status in _REASSIGNABLE
    values: dict[str, Any] = {
        "resolution": new, "inside": b.inside, "grid_code": b.grid, "street_code": b.street,
        "h3_cell": new.get("h3"), "generation_id": new.get("generation")}
    if reassign:
        values["owner_department"] = b.dept
    before, after = _summary(old), _summary(new)
    data.update(before=before, after=after,
                changed=[k for k in before if before[k] != after[k]],
                department=b.dept if reassign else case.owner_department,
                owner_moved=reassign and b.dept != case.owner_department,
                previous_resolution=old)
    return values


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


_PHONE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8})(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_contacts(text: str | None) -> str | None:
    """Phone numbers and e-mail addresses blanked out of text (a description or a note) for
    everyone but the centre: contacts typed into the text are contacts too."""
    if not text:
        return text
    return _EMAIL.sub("[email removed]", _PHONE.sub("[phone removed]", text))


_RATING_KEYS: dict[str, bytes] = {}  # per database: the key never changes once made


def rating_key(session: Session) -> bytes:
    """The key of citizens' rating codes (migration 0012), read once per database."""
    url = str(session.get_bind().engine.url)
    key = _RATING_KEYS.get(url)
    if key is None:
        value = session.scalar(text("SELECT value FROM server_secret WHERE name = 'rating'"))
        if value is None:
            raise RuntimeError("no rating key in server_secret: run the migrations")
        key = _RATING_KEYS[url] = bytes.fromhex(value)
    return key


def rating_code(key: bytes, ref: str) -> str:
    """The code a reporter quotes to rate a case: 8 characters, an HMAC of its reference
    (the reference is public; the code goes to the reporter only, by SMS or on the call)."""
    digest = hmac.new(key, ref.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:5]).decode()


def check_rating_code(session: Session, case: Case, code: str) -> None:
    """403 unless the code is the case's rating code."""
    want = rating_code(rating_key(session), case.ref)
    if not hmac.compare_digest(want, code.strip().upper()):
        raise Forbidden(f"the rating code does not match case {case.ref}: it comes with the "
                        "case's reference to the person who reported it")


def view(case: Case | Stored, *, private: bool, key: bytes | None = None) -> dict[str, Any]:
    """A case as the API shows it; reporter contact (and, given the key, the rating code
    for the reporter) only when private is allowed."""
    out = {
        "ref": case.ref, "channel": case.channel, "category": case.category_code,
        "description": case.description if private else mask_contacts(case.description),
        "status": case.status, "version": case.version,
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
        if key is not None:
            out["rating_code"] = rating_code(key, case.ref)
    return out
