"""The grid aggregate: loading, validating, activating and reading versioned generations."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import shapely
from shapely import MultiPolygon, Polygon, to_wkb
from shapely import is_valid_reason as shapely_valid_reason
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from layers import tiles
from layers.models import Generation, GridLevel, GridUnit
from layers.settings import Settings
from layers.versioning import current, finest_level, in_generation
from spatial.coverage import CoverageConfig, Problem, validate_coverage
from spatial.errors import (
    Conflict,
    GridInvariantError,
    InvalidGeometry,
    InvalidInput,
    NoActiveGrid,
    NotFound,
)

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "gridops_generation"



@dataclass(frozen=True)
class UnitInput:
    """A grid unit to load, geometry in lon/lat (SRID 4326)."""

    code: str
    name: str
    level: int
    parent_code: str | None
    geometry: Polygon | MultiPolygon
    leader_name: str | None = None
    leader_phone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    """One broken invariant: what, which units, where; the problem's own geometry (the
    overlap, the gap, the part outside the parent, the invalid unit) in lon/lat, and its
    area in m² where it has one."""

    kind: str
    codes: tuple[str, ...]
    detail: str
    lon: float | None = None
    lat: float | None = None
    geometry: BaseGeometry | None = field(default=None, compare=False, repr=False)
    area_m2: float | None = None

    @classmethod
    def from_problem(cls, p: Problem) -> Violation:
        """The grid layer's form of a spatial.coverage problem."""
        return cls(p.kind, p.codes, p.detail, p.lon, p.lat, p.geometry, p.area_m2)

    def __str__(self) -> str:
        where = f" at {self.lon:.6f} {self.lat:.6f}" if self.lon is not None else ""
        return f"{self.kind} [{', '.join(self.codes)}]{where}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form used by the API and the CLI."""
        loc = [self.lon, self.lat] if self.lon is not None else None
        return {"kind": self.kind, "codes": list(self.codes), "detail": self.detail,
                "location": loc, "area_m2": self.area_m2}

    def as_feature(self) -> dict[str, Any]:
        """A GeoJSON Feature: the problem's geometry at full precision (its point when it
        has none), the as_dict() fields as properties."""
        return Problem(self.kind, self.codes, self.detail, self.lon, self.lat, self.geometry,
                       self.area_m2).as_feature() | {"properties": self.as_dict()}


# ---------------------------------------------------------------- levels and generations


def sync_levels(session: Session, settings: Settings) -> list[GridLevel]:
    """Apply the deployment's level names (GRIDOPS_LEVELS) and code lengths
    (GRIDOPS_CODE_LENGTHS) to the grid_level table."""
    pairs = settings.level_pairs()
    lengths = settings.code_length_map()
    existing = {lv.rank: lv for lv in session.scalars(select(GridLevel))}
    for rank, (key, name) in enumerate(pairs, start=1):
        lv = existing.get(rank)
        length = lengths.get(rank)
        if lv is None:
            session.add(GridLevel(rank=rank, key=key, name=name, code_length=length))
        elif (lv.key, lv.name, lv.code_length) != (key, name, length):
            lv.key, lv.name, lv.code_length = key, name, length
    session.flush()
    return list(session.scalars(select(GridLevel).order_by(GridLevel.rank)))


def levels(session: Session) -> list[GridLevel]:
    """All grid levels, coarse to fine."""
    return list(session.scalars(select(GridLevel).order_by(GridLevel.rank)))


def level_rank(session: Session, level: str) -> int:
    """A level given by rank ('4') or key ('grid') -> its rank; 422 if unknown."""
    known = levels(session)
    for lv in known:
        if level == str(lv.rank) or level == lv.key or level == lv.name:
            return lv.rank
    names = ", ".join(f"{lv.rank}={lv.key}" for lv in known)
    raise InvalidInput(f"level: unknown level {level!r}; known levels are {names}")


def active_generation(session: Session) -> Generation | None:
    """The generation lookups use by default."""
    return session.scalar(select(Generation).where(Generation.active))


def generation_at(session: Session, *, generation: int | None = None,
                  at: datetime | None = None) -> Generation:
    """The generation a read names: by id, as active at a timestamp, or the active one."""
    if generation is not None:
        gen = session.get(Generation, generation)
        if gen is None:
            raise NotFound(f"generation {generation} does not exist")
        return gen
    if at is not None:
        gen = session.scalar(
            select(Generation)
            .where(Generation.activated_at.is_not(None), Generation.activated_at <= at)
            .order_by(Generation.activated_at.desc(), Generation.id.desc())
            .limit(1)
        )
        if gen is None:
            raise NotFound(f"no generation was active at {at.isoformat()}")
        return gen
    gen = active_generation(session)
    if gen is None:
        raise NoActiveGrid()
    return gen


def list_generations(session: Session) -> list[Generation]:
    """Every generation, oldest first."""
    return list(session.scalars(select(Generation).order_by(Generation.id)))


def create_generation(session: Session, label: str, note: str = "") -> Generation:
    """A new, inactive generation that edits and loads go into."""
    pending = session.scalar(
        select(Generation).where(~Generation.active, Generation.activated_at.is_(None))
    )
    if pending is not None:
        raise InvalidInput(
            f"generation {pending.id} ({pending.label!r}) is still pending; "
            "activate or discard it first"
        )
    gen = Generation(label=label, note=note, active=False)
    session.add(gen)
    session.flush()
    return gen


def activate_generation(session: Session, gen: Generation, settings: Settings, *,
                        validated: bool = False) -> None:
    """Validate a pending generation (unless the caller just did) and make it the active
    one; tells every listener."""
    if not validated:
        violations = validate_generation(session, gen.id, settings)
        if violations:
            raise invariant_error(violations)
    before = session.scalar(select(Generation.id).where(Generation.active))
    session.execute(update(Generation).where(Generation.active).values(active=False))
    session.flush()
    if before is not None and before != gen.id:  # the cached tiles it did not change
        tiles.carry_over(session, before, gen.id)
    gen.active = True
    gen.activated_at = session.scalar(select(func.clock_timestamp()))
    session.flush()
    session.execute(text("SELECT pg_notify(:ch, :payload)"),
                    {"ch": NOTIFY_CHANNEL, "payload": str(gen.id)})


def discard_generation(session: Session, gen_id: int) -> dict[str, int]:
    """Remove a draft (a generation never activated): its own rows go, and the active rows
    it had ended are current again. An activated generation is history: 409."""
    gen = session.get(Generation, gen_id)
    if gen is None:
        raise NotFound(f"generation {gen_id} does not exist")
    if gen.activated_at is not None:
        raise Conflict(f"generation {gen_id} ({gen.label!r}) has been active: history is "
                       "kept, so it cannot be discarded; load a new generation instead")
    removed = session.scalar(text("WITH d AS (DELETE FROM grid_unit WHERE generation_low = :g "
                                  "RETURNING 1) SELECT count(*) FROM d"), {"g": gen_id})
    restored = 0
    active = active_generation(session)
    if active is not None and active.id < gen_id:
        later = session.scalar(select(func.count()).select_from(Generation).where(
            Generation.id > active.id, Generation.id != gen_id))
        if not later:  # the rows ended at the active generation were ended by this draft
            restored = session.scalar(text(
                "WITH r AS (UPDATE grid_unit SET generation_high = NULL "
                "WHERE generation_high = :a RETURNING 1) SELECT count(*) FROM r"),
                {"a": active.id})
    session.delete(gen)
    session.flush()
    return {"removed_rows": int(removed or 0), "restored_rows": int(restored or 0)}


def invariant_error(violations: Sequence[Violation], limit: int = 50) -> GridInvariantError:
    """One error listing the first violations (all of them are in .extra)."""
    head = "; ".join(str(v) for v in violations[:5])
    more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
    return GridInvariantError(
        f"the grid breaks {len(violations)} invariant(s), nothing was loaded: {head}{more}",
        extra={"violations": [v.as_dict() for v in violations[:limit]]},
    )


# ---------------------------------------------------------------- loading


def _check_inputs(units: Sequence[UnitInput], known_levels: dict[int, GridLevel]) -> None:
    """Refuse malformed input before it reaches the database (types, codes, geometry)."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    geoms = np.empty(len(units), dtype=object)
    geoms[:] = [u.geometry for u in units]
    areal = np.fromiter((isinstance(g, Polygon | MultiPolygon) for g in geoms), dtype=bool,
                        count=len(units))
    empty = np.ones(len(units), dtype=bool)
    valid = np.zeros(len(units), dtype=bool)
    bounds = np.zeros((len(units), 4))
    if areal.any():
        empty[areal] = shapely.is_empty(geoms[areal])
        ok = areal & ~empty
        valid[ok] = shapely.is_valid(geoms[ok])
        bounds[ok] = shapely.bounds(geoms[ok])
    in_range = ((bounds[:, 0] >= -180) & (bounds[:, 2] <= 180) & (bounds[:, 1] >= -90)
                & (bounds[:, 3] <= 90))
    for i, u in enumerate(units):
        if u.code in seen:
            problems.append(f"unit #{i + 1}: code {u.code!r} repeats unit #{seen[u.code] + 1}")
        seen.setdefault(u.code, i)
        if u.level in known_levels and areal[i] and not empty[i] and valid[i] and in_range[i]:
            continue
        where = f"unit #{i + 1} (code {u.code!r})"
        if u.level not in known_levels:
            problems.append(f"{where}: unknown level {u.level}")
        if not areal[i]:
            problems.append(f"{where}: geometry must be a Polygon or MultiPolygon, "
                            f"got {getattr(u.geometry, 'geom_type', type(u.geometry).__name__)}")
            continue
        if empty[i]:
            problems.append(f"{where}: geometry is empty")
            continue
        if not valid[i]:
            problems.append(f"{where}: invalid geometry: {shapely_valid_reason(u.geometry)}")
        if not in_range[i]:
            minx, miny, maxx, maxy = bounds[i]
            problems.append(f"{where}: coordinates outside lon/lat range (bounds {minx:.3f} "
                            f"{miny:.3f} {maxx:.3f} {maxy:.3f}); give EPSG:4326 lon/lat")
        if len(problems) >= 20:
            break
    if problems:
        raise InvalidGeometry(f"{len(problems)} unit(s) refused, nothing was loaded: "
                              + "; ".join(problems))


def insert_units(session: Session, gen_id: int, units: Sequence[UnitInput],
                 settings: Settings, *, checked: bool = False) -> int:
    """Insert units valid from generation gen_id on, with their metric area; returns count.
    checked: the caller already ran the input checks on them."""
    if not checked:
        known = {lv.rank: lv for lv in levels(session)}
        _check_inputs(units, known)
    if not units:
        return 0
    # COPY into a staging table, then one INSERT ... SELECT: a round trip per 1000 rows
    # (executemany) made a 100,000-grid load spend most of its time on the wire
    buf = io.StringIO()
    wkbs = to_wkb([_as_multi(u.geometry) for u in units], hex=True)
    for u, wkb in zip(units, wkbs, strict=True):
        buf.write(",".join((_csv(u.code), _csv(u.name), str(int(u.level)), _csv(u.parent_code),
                            wkb, _csv(u.leader_name), _csv(u.leader_phone),
                            _csv(orjson.dumps(u.attributes).decode()))))
        buf.write("\n")
    buf.seek(0)
    session.execute(text(
        "CREATE TEMP TABLE IF NOT EXISTS grid_unit_staging (code text, name text, "
        "level smallint, parent_code text, wkb text, leader_name text, leader_phone text, "
        "attributes text) ON COMMIT DROP"))
    session.execute(text("TRUNCATE grid_unit_staging"))
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.copy_expert("COPY grid_unit_staging FROM STDIN WITH (FORMAT csv)", buf)
    session.execute(text(
        """
        INSERT INTO grid_unit (code, name, level, parent_code, generation_low, geom, area_m2,
                               leader_name, leader_phone, attributes)
        SELECT s.code, s.name, s.level, s.parent_code, :g, g.geom,
               ST_Area(ST_Transform(g.geom, :srid)), s.leader_name, s.leader_phone,
               CAST(s.attributes AS jsonb)
          FROM grid_unit_staging s,
               LATERAL (SELECT ST_SetSRID(ST_GeomFromWKB(decode(s.wkb, 'hex')), 4326)
                        AS geom) g
        """), {"g": gen_id, "srid": settings.metric_srid})
    session.execute(text("TRUNCATE grid_unit_staging"))
    return len(units)


def _csv(v: str | None) -> str:
    """A text field of COPY's CSV format: NULL unquoted and empty, text always quoted."""
    if v is None:
        return ""
    return '"' + str(v).replace('"', '""') + '"'


def _as_multi(geom: Polygon | MultiPolygon) -> MultiPolygon:
    return geom if isinstance(geom, MultiPolygon) else MultiPolygon([geom])


def load_generation(session: Session, units: Sequence[UnitInput], settings: Settings, *,
                    label: str, note: str = "", activate: bool = True,
                    validated: bool = False) -> Generation:
    """Load a complete grid as a new generation: unchanged units carry over, changed ones are
    versioned, missing ones end; validated as a whole (in memory, before anything is
    written) and refused whole if anything breaks. validated: the caller just ran
    validate_units on these very units (and accepts what it found).

    The caller owns the transaction: on error, roll back and nothing remains.
    """
    known = {lv.rank: lv for lv in levels(session)}
    _check_inputs(units, known)
    if not validated:
        violations = validate_units(units, settings, _db_code_lengths(known),
                                    level_keys={r: lv.key for r, lv in known.items()})
        if violations:
            raise invariant_error(violations)
    current = active_generation(session)
    gen = create_generation(session, label, note)
    if current is None:
        insert_units(session, gen.id, units, settings, checked=True)
    else:
        _carry_over(session, current.id, gen.id, units, settings)
    # cheap sanity check of what was written: every unit once (the heavy checks ran above)
    n, distinct = session.execute(
        text(f"SELECT count(*), count(DISTINCT u.code) FROM grid_unit u "
             f"WHERE {in_generation('u')}"), {"g": gen.id}).one()
    if n != len(units) or distinct != len(units):
        raise GridInvariantError(
            f"generation {gen.id} holds {n} rows for {distinct} codes after the load of "
            f"{len(units)} units; nothing was loaded")
    # fresh statistics, or the planner scans every grid for each point until autovacuum runs
    session.execute(text("ANALYZE grid_unit"))
    session.execute(text("ANALYZE grid_piece"))
    if activate:
        activate_generation(session, gen, settings, validated=True)
    return gen


def _same_attributes(a: Any, b: Any) -> bool:
    return (a or {}) == (b or {})


def _carry_over(session: Session, current_id: int, gen_id: int, units: Sequence[UnitInput],
                settings: Settings) -> None:
    """Version units against the current generation: same row if unchanged, else a new row.

    Geometry counts as unchanged when it is the same up to ring orientation and start (a
    Shapefile round trip reorients rings): equal after normalize, exactly."""
    existing = {
        r.code: r
        for r in session.execute(
            text(f"SELECT u.id, u.code, u.name, u.level, u.parent_code, "
                 f"ST_AsBinary(u.geom) AS wkb, u.leader_name, u.leader_phone, u.attributes "
                 f"FROM grid_unit u WHERE {in_generation('u')}"),
            {"g": current_id},
        )
    }
    # units whose attributes match their old row: compare the geometry, all at once
    candidates: list[int] = []
    for i, u in enumerate(units):
        old = existing.get(u.code)
        if old is not None and (old.name, old.level, old.parent_code, old.leader_name,
                                old.leader_phone) == (u.name, u.level, u.parent_code,
                                                      u.leader_name, u.leader_phone) \
                and _same_attributes(old.attributes, u.attributes):
            candidates.append(i)
    same = np.zeros(len(units), dtype=bool)
    if candidates:
        old_g = shapely.from_wkb([bytes(existing[units[i].code].wkb) for i in candidates])
        new_g = np.empty(len(candidates), dtype=object)
        new_g[:] = [_as_multi(units[i].geometry) for i in candidates]
        eq = shapely.equals_exact(shapely.normalize(old_g), shapely.normalize(new_g),
                                  tolerance=0)
        same[np.array(candidates)[eq]] = True
    changed = [u for i, u in enumerate(units) if not same[i]]
    keep = {u.code for i, u in enumerate(units) if same[i]}
    ended = [r.id for code, r in existing.items() if code not in keep]
    if ended:
        session.execute(
            text("UPDATE grid_unit SET generation_high = :cur WHERE id = ANY(:ids)"),
            {"cur": current_id, "ids": ended},
        )
    insert_units(session, gen_id, changed, settings, checked=True)


# ---------------------------------------------------------------- invariants

_CHECKS: list[tuple[str, str]] = [
    ("invalid_geometry", f"""
        SELECT ARRAY[u.code] AS codes, ST_IsValidReason(u.geom) AS detail,
               ST_X(l.loc) AS lon, ST_Y(l.loc) AS lat
          FROM grid_unit u, LATERAL (SELECT (ST_IsValidDetail(u.geom)).location AS loc) l
         WHERE {in_generation('u')} AND NOT ST_IsValid(u.geom)"""),
    ("duplicate_code", f"""
        SELECT ARRAY[u.code] AS codes, count(*) || ' units share this code' AS detail,
               NULL::float AS lon, NULL::float AS lat
          FROM grid_unit u WHERE {in_generation('u')} GROUP BY u.code HAVING count(*) > 1"""),
    ("bad_code", f"""
        SELECT ARRAY[u.code] AS codes,
               CASE WHEN lv.code_length IS NOT NULL AND length(u.code) <> lv.code_length
                      THEN 'a ' || lv.key || ' code has ' || lv.code_length
                           || ' digits, this one has ' || length(u.code)
                    WHEN u.parent_code IS NOT NULL AND left(u.code, length(u.parent_code))
                         <> u.parent_code
                      THEN 'code does not start with its parent''s code ' || u.parent_code
                    ELSE 'a grid serial must be 001-999' END AS detail,
               ST_X(ST_PointOnSurface(u.geom)) AS lon, ST_Y(ST_PointOnSurface(u.geom)) AS lat
          FROM grid_unit u JOIN grid_level lv ON lv.rank = u.level
         WHERE {in_generation('u')} AND (
               (lv.code_length IS NOT NULL AND length(u.code) <> lv.code_length)
            OR (u.parent_code IS NOT NULL AND left(u.code, length(u.parent_code))
                <> u.parent_code)
            OR (lv.rank = (SELECT max(rank) FROM grid_level) AND lv.code_length = 15
                AND right(u.code, 3) = '000'))"""),
    ("bad_parent", f"""
        SELECT ARRAY[u.code] AS codes,
               CASE WHEN u.level = 1 AND u.parent_code IS NOT NULL
                      THEN 'a top-level unit cannot have a parent'
                    WHEN u.level > 1 AND u.parent_code IS NULL THEN 'no parent given'
                    WHEN p.code IS NULL THEN 'parent ' || u.parent_code
                         || ' does not exist in this generation'
                    ELSE 'parent ' || p.code || ' is at level ' || p.level
                         || ', expected ' || (u.level - 1) END AS detail,
               ST_X(ST_PointOnSurface(u.geom)) AS lon, ST_Y(ST_PointOnSurface(u.geom)) AS lat
          FROM grid_unit u
          LEFT JOIN grid_unit p ON p.code = u.parent_code
               AND {in_generation('p')}
         WHERE {in_generation('u')} AND (
               (u.level = 1 AND u.parent_code IS NOT NULL)
            OR (u.level > 1 AND (u.parent_code IS NULL OR p.code IS NULL
                                 OR p.level <> u.level - 1)))"""),
    ("outside_parent", f"""
        SELECT ARRAY[u.code, p.code] AS codes,
               round(d.area::numeric, 2) || ' m² of the unit lie outside its parent' AS detail,
               ST_X(d.pt) AS lon, ST_Y(d.pt) AS lat
          FROM grid_unit u
          JOIN grid_unit p ON p.code = u.parent_code
               AND {in_generation('p')}
          CROSS JOIN LATERAL (
              SELECT ST_Area(ST_Transform(x.diff, :srid)) AS area, ST_PointOnSurface(x.diff) AS pt
                FROM (SELECT ST_Difference(u.geom, p.geom) AS diff) x) d
         WHERE {in_generation('u')} AND ST_IsValid(u.geom) AND ST_IsValid(p.geom)
           AND NOT ST_CoveredBy(u.geom, p.geom) AND d.area > :tol"""),
    # invalid units (reported by the first check) are left out, each tested once
    ("sibling_overlap", f"""
        WITH bad AS MATERIALIZED (SELECT u.id FROM grid_unit u
                                   WHERE {in_generation('u')} AND NOT ST_IsValid(u.geom))
        SELECT ARRAY[a.code, b.code] AS codes,
               round(i.area::numeric, 2) || ' m² overlap between siblings' AS detail,
               ST_X(i.pt) AS lon, ST_Y(i.pt) AS lat
          FROM grid_unit a
          JOIN grid_unit b ON b.level = a.level
               AND b.parent_code IS NOT DISTINCT FROM a.parent_code AND a.code < b.code
               AND b.geom && a.geom
               AND {in_generation('b')}
          CROSS JOIN LATERAL (
              SELECT ST_Area(ST_Transform(x.ix, :srid)) AS area, ST_PointOnSurface(x.ix) AS pt
                FROM (SELECT ST_Intersection(a.geom, b.geom) AS ix) x) i
         WHERE {in_generation('a')}
           AND a.id NOT IN (SELECT id FROM bad) AND b.id NOT IN (SELECT id FROM bad)
           AND ST_Relate(a.geom, b.geom, '2********') AND i.area > :tol"""),
    ("gap_in_parent", f"""
        SELECT ARRAY[p.code] AS codes,
               round(d.area::numeric, 2) || ' m² of the unit are covered by none of its '
               || c.n || ' children' AS detail,
               ST_X(d.pt) AS lon, ST_Y(d.pt) AS lat
          FROM grid_unit p
          CROSS JOIN LATERAL (
              SELECT count(*) AS n, ST_Union(ch.geom) AS geom FROM grid_unit ch
               WHERE ch.parent_code = p.code AND ch.level = p.level + 1
                 AND {in_generation('ch')}
                 AND ST_IsValid(ch.geom)) c
          CROSS JOIN LATERAL (
              SELECT ST_Area(ST_Transform(x.gap, :srid)) AS area, ST_PointOnSurface(x.gap) AS pt
                FROM (SELECT CASE WHEN c.geom IS NULL THEN p.geom
                                  ELSE ST_Difference(p.geom, c.geom) END AS gap) x) d
         WHERE {in_generation('p')}
           AND ST_IsValid(p.geom)
           AND p.level < {finest_level()}
           AND d.area > :tol"""),
]


def coverage_config(settings: Settings, code_lengths: dict[int, int | None] | None = None,
                    level_keys: dict[int, str] | None = None) -> CoverageConfig:
    """The spatial.coverage settings of a deployment: code lengths (default
    GRIDOPS_CODE_LENGTHS), level keys (default GRIDOPS_LEVELS), metric CRS, tolerance."""
    lengths = settings.code_length_map() if code_lengths is None else dict(code_lengths)
    keys = ({r: k for r, (k, _) in enumerate(settings.level_pairs(), start=1)}
            if level_keys is None else dict(level_keys))
    return CoverageConfig(code_lengths=lengths, metric_srid=settings.metric_srid,
                          tolerance_m2=settings.topology_tolerance_m2,
                          finest_rank=max(lengths) if lengths else None, level_keys=keys)


def _db_code_lengths(known: dict[int, GridLevel]) -> dict[int, int | None]:
    return {r: lv.code_length for r, lv in known.items()}


def validate_units(units: Sequence[UnitInput], settings: Settings,
                   code_lengths: dict[int, int | None] | None = None, *,
                   level_keys: dict[int, str] | None = None) -> list[Violation]:
    """The nested-grid invariants of units not yet in the database (in memory): what
    validate_generation would find once they are loaded as a generation."""
    cfg = coverage_config(settings, code_lengths, level_keys)
    found = validate_coverage([u.code for u in units], [u.level for u in units],
                              [u.parent_code for u in units], [u.geometry for u in units], cfg)
    return [Violation.from_problem(p) for p in found]


def validate_generation(session: Session, gen_id: int, settings: Settings) -> list[Violation]:
    """Check the nested-grid invariants of the units valid in a generation: one query loads
    them, spatial.coverage checks them in memory (code lengths from grid_level)."""
    known = {lv.rank: lv for lv in levels(session)}
    rows = session.execute(
        text(f"SELECT u.code, u.level, u.parent_code, ST_AsBinary(u.geom) AS wkb "
             f"FROM grid_unit u WHERE {in_generation('u')}"), {"g": gen_id}).all()
    if not rows:
        return []
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows])
    cfg = coverage_config(settings, _db_code_lengths(known),
                          {r: lv.key for r, lv in known.items()})
    found = validate_coverage([r.code for r in rows], [r.level for r in rows],
                              [r.parent_code for r in rows], list(geoms), cfg)
    return [Violation.from_problem(p) for p in found]


def validate_generation_sql(session: Session, gen_id: int, settings: Settings
                            ) -> list[Violation]:
    """The former PostGIS checks (_CHECKS): the regression reference and the benchmark's
    baseline for validate_generation; slow on big cities (minutes for 100,000 grids)."""
    params = {"g": gen_id, "srid": settings.metric_srid, "tol": settings.topology_tolerance_m2}
    found: list[Violation] = []
    for kind, sql in _CHECKS:
        for r in session.execute(text(sql), params):
            found.append(Violation(kind, tuple(r.codes), r.detail, r.lon, r.lat))
    return found


# ---------------------------------------------------------------- reading


def counts_per_level(session: Session, gen_id: int) -> dict[str, int]:
    """Number of units per level key in a generation."""
    rows = session.execute(
        text(f"SELECT lv.key, count(u.id) AS n FROM grid_level lv "
             f"LEFT JOIN grid_unit u ON u.level = lv.rank AND {in_generation('u')} "
             f"GROUP BY lv.rank, lv.key ORDER BY lv.rank"),
        {"g": gen_id},
    )
    return {r.key: int(r.n) for r in rows}


_UNIT_COLUMNS = (
    "u.id, u.code, u.name, u.level, lv.key AS level_key, lv.name AS level_name, u.parent_code, "
    "u.generation_low, u.generation_high, u.area_m2, u.leader_name, u.leader_phone, "
    "u.attributes"
)


def list_units(session: Session, gen_id: int, *, level: int | None = None,
               parent: str | None = None, bbox: tuple[float, float, float, float] | None = None,
               limit: int = 1000, offset: int = 0, precision: int = 7,
               codes: Sequence[str] | None = None) -> tuple[list[Any], int]:
    """A page of units (with GeoJSON geometry) and the total that match."""
    where = [in_generation('u')]
    params: dict[str, Any] = {"g": gen_id, "limit": limit, "offset": offset,
                              "precision": precision}
    if codes is not None:
        where.append("u.code = ANY(:codes)")
        params["codes"] = list(codes)
    if level is not None:
        where.append("u.level = :level")
        params["level"] = level
    if parent is not None:
        where.append("u.parent_code = :parent")
        params["parent"] = parent
    if bbox is not None:
        where.append("u.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) AND "
                     "ST_Intersects(u.geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))")
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    cond = " AND ".join(where)
    total = session.execute(text(f"SELECT count(*) FROM grid_unit u WHERE {cond}"),
                            params).scalar_one()
    rows = session.execute(
        text(f"SELECT {_UNIT_COLUMNS}, ST_AsGeoJSON(u.geom, :precision) AS geojson "
             f"FROM grid_unit u JOIN grid_level lv ON lv.rank = u.level WHERE {cond} "
             f"ORDER BY u.level, u.code LIMIT :limit OFFSET :offset"),
        params,
    ).all()
    return list(rows), int(total)


def generation_units(session: Session, gen_id: int) -> list[UnitInput]:
    """Every unit of a generation as a UnitInput (what load_generation takes), coarse to
    fine: a generation read back to be changed and loaded again."""
    rows = session.execute(text(
        f"SELECT u.code, u.name, u.level, u.parent_code, ST_AsBinary(u.geom) AS wkb, "
        f"u.leader_name, u.leader_phone, u.attributes FROM grid_unit u "
        f"WHERE {in_generation('u')} ORDER BY u.level, u.code"), {"g": gen_id}).all()
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows]) if rows else []
    return [UnitInput(r.code, r.name, r.level, r.parent_code, g, r.leader_name,
                      r.leader_phone, dict(r.attributes or {}))
            for r, g in zip(rows, geoms, strict=True)]


def get_unit(session: Session, gen_id: int, code: str, *, precision: int = 7) -> Any:
    """One unit valid in a generation, with GeoJSON geometry; 404 if there is none."""
    row = session.execute(
        text(f"SELECT {_UNIT_COLUMNS}, ST_AsGeoJSON(u.geom, :precision) AS geojson, "
             f"ST_X(ST_PointOnSurface(u.geom)) AS lon, ST_Y(ST_PointOnSurface(u.geom)) AS lat "
             f"FROM grid_unit u JOIN grid_level lv ON lv.rank = u.level "
             f"WHERE u.code = :code AND {in_generation('u')}"),
        {"g": gen_id, "code": code, "precision": precision},
    ).first()
    if row is None:
        exists = session.scalar(select(func.count()).select_from(GridUnit)
                                .where(GridUnit.code == code))
        when = "in this generation" if exists else "in any generation"
        raise NotFound(f"grid unit {code!r} does not exist {when} (generation {gen_id})")
    return row


def parent_chain(session: Session, gen_id: int, code: str) -> list[Any]:
    """The unit's ancestors, top level first."""
    rows = session.execute(
        text(f"""
        WITH RECURSIVE chain AS (
            SELECT u.code, u.name, u.level, u.parent_code, 0 AS depth FROM grid_unit u
             WHERE u.code = :code AND {in_generation('u')}
            UNION ALL
            SELECT u.code, u.name, u.level, u.parent_code, c.depth + 1 FROM grid_unit u
              JOIN chain c ON u.code = c.parent_code WHERE {in_generation('u')})
        SELECT c.code, c.name, c.level, lv.key AS level_key, lv.name AS level_name
          FROM chain c JOIN grid_level lv ON lv.rank = c.level
         WHERE c.depth > 0 ORDER BY c.level"""),
        {"g": gen_id, "code": code},
    )
    return list(rows)


def children(session: Session, gen_id: int, code: str) -> list[Any]:
    """The unit's direct children, by code."""
    return list(session.execute(
        text(f"SELECT u.code, u.name, u.level, u.area_m2 FROM grid_unit u "
             f"WHERE u.parent_code = :code AND {in_generation('u')} ORDER BY u.code"),
        {"g": gen_id, "code": code},
    ))


def neighbours(session: Session, gen_id: int, code: str, settings: Settings,
               min_shared_m: float = 1.0) -> list[dict[str, Any]]:
    """Same-level units sharing an edge (≥ min_shared_m metres) and the side they lie on
    (四至), judged from the unit's centroid to the middle of the shared boundary."""
    rows = session.execute(
        text(f"""
        WITH me AS (SELECT u.id, u.level, u.geom, ST_Transform(ST_Centroid(u.geom), :srid) AS c
                      FROM grid_unit u WHERE u.code = :code AND {in_generation('u')})
        SELECT u.code, u.name, s.len AS shared_m,
               degrees(ST_Azimuth(me.c, ST_Transform(ST_PointOnSurface(s.line), :srid))) AS az
          FROM me JOIN grid_unit u ON u.level = me.level AND u.id <> me.id
               AND u.geom && ST_Expand(me.geom, 1e-6) AND {in_generation('u')}
          CROSS JOIN LATERAL (
              SELECT x.line, ST_Length(ST_Transform(x.line, :srid)) AS len FROM (
                  SELECT ST_Intersection(ST_Boundary(me.geom),
                                         ST_Buffer(ST_Boundary(u.geom), 1e-6)) AS line) x) s
         WHERE s.len >= :min_len
         ORDER BY u.code"""),
        {"g": gen_id, "code": code, "srid": settings.metric_srid, "min_len": min_shared_m},
    )
    out = []
    for r in rows:
        az = (r.az or 0.0) % 360.0
        side = ("north", "east", "south", "west")[int(((az + 45.0) % 360.0) // 90.0)]
        out.append({"code": r.code, "name": r.name, "side": side,
                    "shared_boundary_m": round(float(r.shared_m), 1),
                    "bearing_deg": round(az, 1)})
    return out


def history(session: Session, code: str) -> list[Any]:
    """Every version of a unit across activated generations (a draft's rows stay invisible),
    oldest first; 404 if the code never was."""
    rows = list(session.execute(
        text(f"""
        SELECT u.id, u.code, u.name, u.level, u.parent_code, u.generation_low, u.generation_high,
               {current('u')} AS current,
               gl.label AS low_label, gl.activated_at AS valid_from,
               (SELECT min(g2.activated_at) FROM generation g2
                 WHERE g2.id > coalesce(u.generation_high, 2147483647)
                   AND g2.activated_at IS NOT NULL) AS valid_to,
               u.area_m2, u.leader_name, u.leader_phone, u.created_at,
               ST_AsGeoJSON(u.geom, 7) AS geojson
          FROM grid_unit u JOIN generation gl ON gl.id = u.generation_low
         WHERE u.code = :code AND gl.activated_at IS NOT NULL
         ORDER BY u.generation_low"""),
        {"code": code},
    ))
    if not rows:
        raise NotFound(f"grid unit {code!r} does not exist in any generation")
    return rows
