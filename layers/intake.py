"""Case intake: reports stored in batches, resolved before they come (the answer kept with
the case), a retried request answered with the case it made, and the same problem reported
again nearby (or on the same asset) linked to the open case rather than dispatched twice.
layers.intake_writer gathers the batches; a report outside every grid is kept and flagged."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pyproj import Geod
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from layers.cases import Actor, Intake, Stored, answer_of, check_channel
from layers.models import Case
from layers.prepared import Prepared
from layers.settings import Settings
from layers.workflow import OPEN, SYSTEM
from spatial.errors import Conflict, InvalidInput


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

_LOOK_STMT = Prepared("gridops_intake_look", _LOOK)  # one generic plan each
_WRITE_STMT = Prepared("gridops_intake_write", _WRITE)


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
    dup: int | None = None  # the original's database id (written, never answered)
    dup_ref: str | None = None  # the original's reference (answered)
    reporters: int = 1
    prior: int | None = None  # a retried request: the case it made

    @property
    def status(self) -> str:
        """A new case, or one that joined an open case."""
        return "collected" if self.dup is None else "merged"


def _prepare(it: Intake, actor: Actor, settings: Settings) -> _Row:
    """A report checked and laid out for the batch's statements, with a fresh reference."""
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
            owner_department=r.dept, duplicate_ref=r.dup_ref,
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


def store_one(session: Session, it: Intake, actor: Actor, settings: Settings
              ) -> tuple[Case, bool]:
    """One report (`store_batch` of one), the case loaded as an ORM object for callers that
    act on it next (tests, scripts). Returns (case, created)."""
    got = store_batch(session, [(it, actor)], settings)[0]
    if isinstance(got, Case):
        return got, False
    case = session.get(Case, got.id)
    assert case is not None
    return case, True
