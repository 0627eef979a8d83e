"""Planners' drafts of the grid: a draft is a generation never activated, made from the
active one (or from an older one, for a rollback); edits change only the draft's own rows,
and every step is an audited event (generation_event: who, when, what, on which codes).

Row versioning inside a draft (see layers.versioning): a unit carried over from the base
generation is shared with it; an edit ends that row at the active generation and inserts
the draft's own row (generation_low = the draft); a draft's own row is edited in place, its
revision bumped (the unit's ETag, so two planners cannot overwrite each other silently).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import shapely
from shapely import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import split as shapely_split
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from layers import grids
from layers.models import Generation, GenerationEvent, GridLevel
from layers.settings import Settings
from layers.versioning import in_generation
from spatial.coverage import Problem, metric_area, to_metric
from spatial.coverage import areal as _polygonal
from spatial.coverage import coverage_union as _union
from spatial.errors import (
    Conflict,
    GridInvariantError,
    InvalidGeometry,
    InvalidInput,
    NotFound,
)


def record(session: Session, gen_id: int, actor: str, action: str,
           codes: list[str] | tuple[str, ...] = (), **detail: Any) -> GenerationEvent:
    """Append one planning step to the audit log."""
    ev = GenerationEvent(generation_id=gen_id, actor=actor, action=action,
                         codes=list(codes), detail=detail)
    session.add(ev)
    session.flush()
    return ev


def events(session: Session, gen_id: int) -> list[GenerationEvent]:
    """The audit log of a generation, oldest first (kept after a discard)."""
    return list(session.scalars(select(GenerationEvent).where(
        GenerationEvent.generation_id == gen_id).order_by(GenerationEvent.id)))


def pending(session: Session) -> Generation | None:
    """The draft in progress, if any (a generation neither active nor ever activated)."""
    return session.scalar(select(Generation).where(
        ~Generation.active, Generation.activated_at.is_(None)).order_by(Generation.id))


def require_draft(session: Session, gen_id: int, *, lock: bool = False) -> Generation:
    """The draft gen_id (404 if there is no such generation, 409 if it was activated).
    lock: take its row lock, so edits of one draft run one after the other."""
    q = select(Generation).where(Generation.id == gen_id)
    if lock:
        q = q.with_for_update()
    gen = session.scalar(q)
    if gen is None:
        raise NotFound(f"generation {gen_id} does not exist")
    if gen.activated_at is not None:
        raise Conflict(f"generation {gen_id} ({gen.label!r}) has been activated: it is "
                       "history and cannot be edited; make a new draft (POST /generations)")
    return gen


class StaleUnit(Conflict):
    """Somebody changed the unit since the caller read it."""

    code = "stale_version"


# ====================================================================== rows of a draft


@dataclass
class Row:
    """A grid unit as the draft sees it (geometry in lon/lat)."""

    id: int | None
    code: str
    name: str
    level: int
    parent_code: str | None
    geom: BaseGeometry
    generation_low: int | None = None
    revision: int = 1
    leader_name: str | None = None
    leader_phone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        """The unit's version as an HTTP entity tag: its row and revision."""
        return f'"{self.id}-{self.revision}"'


_ROW_SQL = ("SELECT u.id, u.code, u.name, u.level, u.parent_code, u.generation_low, "
            "u.revision, u.leader_name, u.leader_phone, u.attributes, "
            "ST_AsBinary(u.geom) AS wkb FROM grid_unit u ")


def _rows(session: Session, sql: str, params: dict[str, Any]) -> list[Row]:
    got = session.execute(text(_ROW_SQL + sql), params).all()
    geoms = shapely.from_wkb([bytes(r.wkb) for r in got]) if got else []
    return [Row(r.id, r.code, r.name, r.level, r.parent_code, g, r.generation_low,
                r.revision, r.leader_name, r.leader_phone, dict(r.attributes or {}))
            for r, g in zip(got, geoms, strict=True)]


def units(session: Session, gen_id: int, codes: Iterable[str]) -> dict[str, Row]:
    """The draft's units of these codes (missing codes are absent)."""
    rows = _rows(session, f"WHERE u.code = ANY(:codes) AND {in_generation('u')}",
                 {"codes": list(codes), "g": gen_id})
    return {r.code: r for r in rows}


def unit(session: Session, gen_id: int, code: str) -> Row:
    """One unit of a draft; 404 naming the code."""
    got = units(session, gen_id, [code])
    if code not in got:
        raise NotFound(f"grid unit {code!r} is not in generation {gen_id}")
    return got[code]


def _children(session: Session, gen_id: int, code: str) -> list[Row]:
    return _rows(session, f"WHERE u.parent_code = :p AND {in_generation('u')} "
                          "ORDER BY u.code", {"p": code, "g": gen_id})


def _near(session: Session, gen_id: int, level: int, box: tuple[float, ...],
          exclude: Sequence[str]) -> list[Row]:
    """Same-level units of the draft whose box meets `box`, except `exclude`."""
    return _rows(session, f"WHERE u.level = :lv AND {in_generation('u')} "
                          "AND u.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) "
                          "AND u.code <> ALL(:ex)",
                 {"g": gen_id, "lv": level, "x0": box[0], "y0": box[1], "x1": box[2],
                  "y1": box[3], "ex": list(exclude)})


def _level_info(session: Session) -> dict[int, GridLevel]:
    return {lv.rank: lv for lv in grids.levels(session)}


# ====================================================================== drafts


def create_draft(session: Session, settings: Settings, *, actor: str,
                 base_id: int | None = None, label: str | None = None,
                 note: str = "") -> Generation:
    """A new draft made from the active generation, or from another one (a rollback: the
    draft then holds that generation's units, as new rows; history is never rewritten).
    Only one draft at a time: a second is a 409 naming whose the pending one is."""
    other = pending(session)
    if other is not None:
        who = f" by {other.created_by}" if other.created_by else ""
        raise Conflict(f"generation {other.id} ({other.label!r}) is a draft{who} since "
                       f"{other.created_at:%Y-%m-%d %H:%M} UTC; only one draft at a time: "
                       "activate or discard it first",
                       extra={"draft": other.id, "created_by": other.created_by})
    active = grids.active_generation(session)
    if base_id is None:
        if active is None:
            raise InvalidInput("no active generation to make a draft from: import a grid "
                               "first (gridops grids import)")
        base_id = active.id
    base = session.get(Generation, base_id)
    if base is None:
        raise NotFound(f"generation {base_id} does not exist")
    if base.activated_at is None:
        raise InvalidInput(f"from: generation {base_id} was never activated; a draft is "
                           "made from the active generation or a past one")
    gen = Generation(label=label or f"draft from generation {base_id}", note=note,
                     active=False, created_by=actor, base_id=base_id)
    session.add(gen)
    session.flush()
    copied = ended = 0
    if active is not None and base_id != active.id:
        # rows of the active generation the base does not have end at the active one
        ended = session.execute(text(
            f"UPDATE grid_unit u SET generation_high = :a WHERE {in_generation('u', ':a')} "
            f"AND NOT ({in_generation('u', ':b')})"), {"a": active.id, "b": base_id}
        ).rowcount  # type: ignore[attr-defined]
        # and the base's rows the active generation lost come back as the draft's own
        copied = session.execute(text(
            f"""INSERT INTO grid_unit (code, name, level, parent_code, generation_low, geom,
                                       area_m2, leader_name, leader_phone, attributes)
                SELECT u.code, u.name, u.level, u.parent_code, :d, u.geom, u.area_m2,
                       u.leader_name, u.leader_phone, u.attributes
                  FROM grid_unit u
                 WHERE {in_generation('u', ':b')} AND NOT ({in_generation('u', ':a')})"""),
            {"a": active.id, "b": base_id, "d": gen.id}).rowcount  # type: ignore[attr-defined]
    record(session, gen.id, actor, "create", base=base_id, label=gen.label,
           rows_copied=copied, rows_ended=ended)
    return gen


def owner_of(gen: Generation) -> dict[str, Any]:
    """Whose draft it is and what it was made from (for answers)."""
    return {"created_by": gen.created_by, "base": gen.base_id}


# ====================================================================== an edit's plan


@dataclass
class Plan:
    """What one edit does to a draft: the rows it ends or replaces (old, by code) and the
    new state of every unit it creates or changes (new, by code); `direct` are the codes the
    planner edited (the rest are parents that follow their children)."""

    action: str
    old: dict[str, Row] = field(default_factory=dict)
    new: dict[str, Row] = field(default_factory=dict)
    direct: set[str] = field(default_factory=set)

    def codes(self) -> set[str]:
        return set(self.old) | set(self.new)


def _metric(geoms: Sequence[BaseGeometry | None], settings: Settings) -> np.ndarray:
    """Areas in m²; densified first, so that an overlay's zero-area sliver along a long
    lon/lat edge (collinear in lon/lat, a curve once projected) measures nothing."""
    return metric_area(list(geoms), settings.metric_srid, densify=True)


def _pieces(g: BaseGeometry) -> int:
    return int(shapely.get_num_geometries(g)) if isinstance(g, MultiPolygon) else 1


def _follow_parents(session: Session, gen_id: int, plan: Plan, settings: Settings) -> None:
    """Parents follow their children: level by level upwards, each parent whose set of
    children changed in outline becomes the union of its children in the draft."""
    tol = settings.topology_tolerance_m2
    touched = [r.level for r in (*plan.old.values(), *plan.new.values())]
    if not touched:
        return
    for level in range(max(touched), 1, -1):
        olds = [r for r in plan.old.values() if r.level == level]
        news = [r for r in plan.new.values() if r.level == level]
        parents = sorted({r.parent_code for r in (*olds, *news) if r.parent_code})
        if not parents:
            continue
        current = units(session, gen_id, [p for p in parents if p not in plan.new])
        for p in parents:
            was = [r.geom for r in olds if r.parent_code == p]
            now = [r.geom for r in news if r.parent_code == p]
            if was and now:
                diff = shapely.symmetric_difference(_union(was), _union(now))
                if _metric([diff], settings)[0] <= tol:
                    continue  # the children changed inside the parent, not its outline
            prow = plan.new.get(p) or current.get(p)
            if prow is None:
                raise InvalidInput(f"parent {p!r} is not in generation {gen_id}")
            kids = [r for r in _children(session, gen_id, p) if r.code not in plan.codes()]
            kids += [r for r in news if r.parent_code == p]
            if not kids:
                raise InvalidInput(f"unit {p!r} would have no units left under it; merge "
                                   "it with a neighbour or move units into it first")
            geom = _polygonal(_union([k.geom for k in kids]))
            if p not in plan.new:
                plan.old[p] = prow
            plan.new[p] = Row(prow.id if prow.generation_low == gen_id else None, p,
                              prow.name, prow.level, prow.parent_code, geom,
                              prow.generation_low, prow.revision, prow.leader_name,
                              prow.leader_phone, dict(prow.attributes))


# ====================================================================== incremental checks


def _violation(kind: str, codes: Sequence[str], detail: str, geom: BaseGeometry | None,
               area: float | None = None) -> grids.Violation:
    pt = shapely.point_on_surface(geom) if geom is not None and not geom.is_empty else None
    return grids.Violation(kind, tuple(codes), detail, None if pt is None else pt.x,
                           None if pt is None else pt.y, geom,
                           None if area is None else round(float(area), 2))


def validate_plan(session: Session, gen_id: int, plan: Plan, settings: Settings
                  ) -> tuple[list[grids.Violation], int]:
    """The invariants an edit could break, checked only where it acts: the units it
    creates or changes, their same-level neighbours and their parents (in memory, with
    GEOS). Returns the violations and how many units were looked at."""
    from spatial.coverage import validate_coverage

    tol = settings.topology_tolerance_m2
    known = _level_info(session)
    found: list[grids.Violation] = []
    subset: dict[str, Row] = {}
    for level in sorted({r.level for r in (*plan.old.values(), *plan.new.values())}):
        olds = [r for r in plan.old.values() if r.level == level]
        news = [r for r in plan.new.values() if r.level == level]
        geoms = [r.geom for r in (*olds, *news)]
        x0, y0, x1, y1 = (float(v) for v in
                          shapely.total_bounds(np.asarray(geoms, dtype=object)))
        e = 1e-7
        near = _near(session, gen_id, level, (x0 - e, y0 - e, x1 + e, y1 + e),
                     sorted(plan.codes()))
        for r in (*near, *news):
            subset[r.code] = r
        okn = [r for r in news if isinstance(r.geom, Polygon | MultiPolygon)
               and r.geom.is_valid and not r.geom.is_empty]
        # overlaps across parents (between siblings validate_coverage reports them)
        others = [*near, *okn]
        tree = shapely.STRtree([r.geom for r in others])
        for r in okn:
            for j in tree.query(r.geom, predicate="intersects"):
                o = others[int(j)]
                if o.code == r.code or (o.code in {x.code for x in okn}
                                        and o.code < r.code):
                    continue
                if o.parent_code == r.parent_code:
                    continue
                ix = _polygonal(shapely.intersection(r.geom, o.geom)) \
                    if shapely.relate_pattern(r.geom, o.geom, "2********") else None
                if ix is None:
                    continue
                a = _metric([ix], settings)[0]
                if a > tol:
                    found.append(_violation("overlap", (r.code, o.code),
                                            f"{a:.2f} m² overlap with a unit of another "
                                            "parent", ix, a))
        # the territory the edited units held must stay covered, and not grow (checked at
        # the level edited: the parents that follow would only repeat it)
        if olds and okn and any(r.code in plan.direct for r in (*olds, *news)):
            was, now = _union([r.geom for r in olds]), _union([r.geom for r in okn])
            held = _union([r.geom for r in near]) if near else None
            lost = shapely.difference(was, now)
            if held is not None:
                lost = shapely.difference(lost, held)
            a = _metric([lost], settings)[0]
            if a > tol:
                parents = sorted({r.parent_code or r.code for r in olds})
                found.append(_violation("gap_in_parent", parents,
                                        f"{a:.2f} m² the edited units held are covered by "
                                        "no unit after the edit", _polygonal(lost), a))
            grown = shapely.difference(now, was)
            if held is not None:
                grown = shapely.difference(grown, held)
            a = _metric([grown], settings)[0]
            if a > tol:
                codes = sorted({r.code for r in okn if r.geom.intersects(grown)})
                found.append(_violation("outside_parent", codes,
                                        f"{a:.2f} m² lie outside the territory the "
                                        "edited units held (outside every parent)",
                                        _polygonal(grown), a))
    # parents of the new rows, and children of units edited directly above the finest level
    need = {r.parent_code for r in plan.new.values() if r.parent_code} - set(subset)
    for code, r in units(session, gen_id, sorted(need - set(plan.new))).items():
        subset[code] = r
    for code, r in plan.new.items():
        subset[code] = r
    complete: set[str] = set()
    for code in plan.direct:
        if code not in plan.new:
            continue
        kids = [k for k in _children(session, gen_id, code) if k.code not in plan.codes()]
        kids += [k for k in plan.new.values() if k.parent_code == code]
        if kids:
            complete.add(code)
            for k in kids:
                subset.setdefault(k.code, k)
    rows = list(subset.values())
    cfg = grids.coverage_config(settings, {r: lv.code_length for r, lv in known.items()},
                                {r: lv.key for r, lv in known.items()})
    problems: list[Problem] = validate_coverage(
        [r.code for r in rows], [r.level for r in rows], [r.parent_code for r in rows],
        [r.geom for r in rows], cfg, gaps_for=sorted(complete))
    mine = plan.codes()
    for p in problems:
        if not set(p.codes) & mine:
            continue
        if p.kind == "gap_in_parent" and not set(p.codes) & complete:
            continue
        found.append(grids.Violation.from_problem(p))
    # a code the edit gives must not be taken by another unit of the draft
    taken = session.execute(text(
        f"SELECT u.code FROM grid_unit u WHERE u.code = ANY(:c) AND {in_generation('u')}"),
        {"c": [c for c in plan.new if c not in plan.old], "g": gen_id}).scalars().all()
    for c in taken:
        found.append(grids.Violation("duplicate_code", (c,), "the code is already a unit "
                                     "of the draft"))
    # a parent that follows its children must stay in one piece
    for code, r in plan.new.items():
        if code in plan.direct or code not in plan.old:
            continue
        before, after = _pieces(plan.old[code].geom), _pieces(r.geom)
        if after > before:
            found.append(_violation("disconnected", (code,),
                                    f"the unit would fall into {after} separate parts "
                                    f"(it has {before})", r.geom))
    return found, len(rows)


# ====================================================================== applying a plan


def _write_geom(g: BaseGeometry) -> str:
    return shapely.to_wkb(g if isinstance(g, MultiPolygon) else MultiPolygon([g]), hex=True)


def _apply(session: Session, gen_id: int, plan: Plan, settings: Settings) -> dict[str, Row]:
    """Write the plan: a draft's own row is changed in place (revision + 1) or deleted; a
    row shared with the active generation ends there and the draft gets its own row."""
    active = grids.active_generation(session)
    end_at = active.id if active is not None else None
    for code, old in plan.old.items():
        if old.generation_low == gen_id:
            if code not in plan.new:
                session.execute(text("DELETE FROM grid_unit WHERE id = :id"), {"id": old.id})
            continue
        if end_at is None:
            raise Conflict(f"unit {code!r} belongs to no draft and no active generation")
        session.execute(text("UPDATE grid_unit SET generation_high = :h WHERE id = :id"),
                        {"h": end_at, "id": old.id})
    written: dict[str, Row] = {}
    for code, r in plan.new.items():
        prev = plan.old.get(code)
        params = {"code": code, "name": r.name, "level": r.level, "parent": r.parent_code,
                  "wkb": _write_geom(r.geom), "leader": r.leader_name,
                  "phone": r.leader_phone, "attrs": orjson.dumps(r.attributes).decode(),
                  "g": gen_id, "srid": settings.metric_srid}
        if prev is not None and prev.generation_low == gen_id:
            params["id"] = prev.id
            rev = session.execute(text(
                "UPDATE grid_unit SET name = :name, parent_code = :parent, "
                "geom = ST_SetSRID(ST_GeomFromWKB(decode(:wkb, 'hex')), 4326), "
                "area_m2 = ST_Area(ST_Transform(ST_SetSRID(ST_GeomFromWKB("
                "decode(:wkb, 'hex')), 4326), :srid)), leader_name = :leader, "
                "leader_phone = :phone, attributes = CAST(:attrs AS jsonb), "
                "revision = revision + 1 WHERE id = :id RETURNING id, revision"),
                params).one()
        else:
            params["rev"] = (prev.revision + 1) if prev is not None else 1
            rev = session.execute(text(
                "INSERT INTO grid_unit (code, name, level, parent_code, generation_low, geom, "
                "area_m2, leader_name, leader_phone, attributes, revision) VALUES (:code, "
                ":name, :level, :parent, :g, ST_SetSRID(ST_GeomFromWKB(decode(:wkb, 'hex')), "
                "4326), ST_Area(ST_Transform(ST_SetSRID(ST_GeomFromWKB(decode(:wkb, 'hex')), "
                "4326), :srid)), :leader, :phone, CAST(:attrs AS jsonb), :rev) "
                "RETURNING id, revision"), params).one()
        written[code] = Row(rev.id, code, r.name, r.level, r.parent_code, r.geom, gen_id,
                            rev.revision, r.leader_name, r.leader_phone, r.attributes)
    return written


@dataclass
class EditResult:
    """What an edit did (or would do, in a dry run)."""

    generation: int
    action: str
    ended: list[str]
    created: list[str]
    changed: list[str]
    parents: list[str]
    units: dict[str, dict[str, Any]]
    checked_units: int
    took_ms: float
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "action": self.action, "dry_run": self.dry_run,
                "ended": self.ended, "created": self.created, "changed": self.changed,
                "parents_updated": self.parents, "units": self.units,
                "validation": {"ok": True, "checked_units": self.checked_units,
                               "took_ms": round(self.took_ms, 2)}}


def edit_error(violations: Sequence[grids.Violation], action: str) -> GridInvariantError:
    """The 422 of a refused edit: every violation with where it is and its geometry."""
    head = "; ".join(str(v) for v in violations[:5])
    more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
    return GridInvariantError(
        f"the {action} breaks {len(violations)} invariant(s), nothing was changed: "
        f"{head}{more}",
        extra={"violations": [v.as_dict() for v in violations[:200]],
               "problems": {"type": "FeatureCollection",
                            "features": [v.as_feature() for v in violations[:200]]}})


def _run(session: Session, gen: Generation, plan: Plan, settings: Settings, *, actor: str,
         dry_run: bool, t0: float, **detail: Any) -> EditResult:
    """Parents follow, validate where the edit acts, write, audit."""
    _follow_parents(session, gen.id, plan, settings)
    found, checked = validate_plan(session, gen.id, plan, settings)
    if found:
        raise edit_error(found, plan.action)
    written = {} if dry_run else _apply(session, gen.id, plan, settings)
    new_codes = [c for c in plan.new if c not in plan.old]
    ended = sorted(c for c in plan.old if c not in plan.new)
    changed = sorted(c for c in plan.new if c in plan.old and c in plan.direct)
    parents = sorted(c for c in plan.new if c not in plan.direct)
    areas = _metric([r.geom for r in plan.new.values()], settings)
    out_units = {c: {"level": r.level, "parent": r.parent_code, "name": r.name,
                     "area_m2": round(float(a), 2),
                     "etag": written[c].etag if c in written else None}
                 for (c, r), a in zip(plan.new.items(), areas, strict=True)}
    took = (time.perf_counter() - t0) * 1000
    if not dry_run:
        record(session, gen.id, actor, plan.action, sorted(plan.codes()),
               **{"from": sorted(plan.old), "to": sorted(plan.new), "ended": ended,
                  "created": sorted(new_codes), "parents": parents, **detail})
    return EditResult(gen.id, plan.action, ended, sorted(new_codes), changed, parents,
                      out_units, checked, took, dry_run)


# ====================================================================== the edits


def _check_etag(row: Row, if_match: str | None, *, required: bool) -> None:
    if if_match is None:
        if required:
            from spatial.errors import PreconditionRequired
            raise PreconditionRequired(
                f"If-Match: send the ETag of unit {row.code} (now {row.etag}, from GET "
                "/generations/{id}/units/{code}) so that nobody's change is overwritten")
        return
    tags = {t.strip().removeprefix("W/") for t in if_match.split(",")}
    if "*" not in tags and row.etag not in tags:
        raise StaleUnit(f"unit {row.code} is at version {row.etag}, not {if_match[:80]}: "
                        "somebody changed it first; reload it and retry",
                        extra={"etag": row.etag})


def _leaf(session: Session, gen_id: int, row: Row, action: str) -> None:
    kids = session.scalar(text(f"SELECT count(*) FROM grid_unit u WHERE u.parent_code = :c "
                               f"AND {in_generation('u')}"), {"c": row.code, "g": gen_id})
    if kids:
        raise InvalidInput(f"{action}: unit {row.code} has {kids} units under it; {action} "
                           "applies to units without children (the finest level); "
                           "move its children first")


def _serial_width(session: Session, parent: str, level: int) -> int:
    lv = _level_info(session).get(level)
    if lv is not None and lv.code_length is not None and lv.code_length > len(parent):
        return lv.code_length - len(parent)
    return 3


def next_codes(session: Session, parent: str, level: int, n: int,
               taken: Iterable[str] = ()) -> list[str]:
    """The next n free codes under a parent: its code and serials above the highest ever
    used under it in any generation (a retired code is never given to another area)."""
    width = _serial_width(session, parent, level)
    used = set(session.scalars(text(  # by the parent index, in every generation
        "SELECT code FROM grid_unit WHERE parent_code = :p AND length(code) = :len"),
        {"p": parent, "len": len(parent) + width})) | set(taken)
    serials = sorted(int(c[len(parent):]) for c in used
                     if c.startswith(parent) and c[len(parent):].isdigit())
    start = (serials[-1] if serials else 0) + 1
    top = 10 ** width - 1
    free = [s for s in range(start, top + 1)][:n]
    if len(free) < n:  # the serials above are spent: the free ones below, lowest first
        have = set(serials)
        free += [s for s in range(1, start) if s not in have][: n - len(free)]
    if len(free) < n:
        raise InvalidInput(f"no free {width}-digit serials left under {parent}")
    return [f"{parent}{s:0{width}d}" for s in free]


def serial_order(parts: Sequence[BaseGeometry], settings: Settings) -> list[int]:
    """Indexes of parts in the serial rule's order: west to east, north to south (of two
    parts, the direction they are furthest apart in decides)."""
    pts = to_metric(shapely.point_on_surface(np.asarray(list(parts), dtype=object)),
                    settings.metric_srid)
    xy = shapely.get_coordinates(pts)

    def cmp(i: int, j: int) -> int:
        dx, dy = xy[j, 0] - xy[i, 0], xy[j, 1] - xy[i, 1]
        if abs(dx) >= abs(dy):
            return -1 if dx > 0 else (1 if dx < 0 else 0)
        return -1 if dy < 0 else 1  # i further north comes first

    return sorted(range(len(parts)), key=functools.cmp_to_key(cmp))


_SERIAL_NAME = re.compile(r"第\s*(\d+)\s*网格$")


def _derived_name(base: str, code: str, k: int) -> str:
    """A part's name: '…第N网格' takes the new serial, anything else a '-k' suffix."""
    if _SERIAL_NAME.search(base):
        return _SERIAL_NAME.sub(f"第{int(code[-3:])}网格", base)
    return f"{base}-{k}"


def _names(names: Sequence[str] | None, n: int, what: str) -> list[str] | None:
    if names is None:
        return None
    if len(names) != n:
        raise InvalidInput(f"names: {len(names)} given for {n} {what}")
    for i, nm in enumerate(names):
        if not isinstance(nm, str) or not nm.strip() or len(nm) > 200:
            raise InvalidInput(f"names[{i}]: a name of 1-200 characters")
    return [nm.strip() for nm in names]


def _areal(g: BaseGeometry, where: str) -> Polygon | MultiPolygon:
    if not isinstance(g, Polygon | MultiPolygon) or g.is_empty:
        raise InvalidGeometry(f"{where}: a Polygon or MultiPolygon is needed, got "
                              f"{getattr(g, 'geom_type', type(g).__name__)}")
    if not g.is_valid:
        raise InvalidGeometry(f"{where}: invalid geometry: {shapely.is_valid_reason(g)}")
    return g


def put_unit(session: Session, gen_id: int, code: str, settings: Settings, *, actor: str,
             if_match: str | None, geometry: BaseGeometry | None = None,
             properties: dict[str, Any] | None = None, dry_run: bool = False,
             match_required: bool = True) -> EditResult:
    """Replace a unit's geometry and/or attributes (name, leader_name, leader_phone,
    attributes). Its code, level and parent stay (a new parent is a move). The geometry
    must keep the coverage (no gap, overlap or part outside): to move an edge two units
    share, use redraw."""
    t0 = time.perf_counter()
    gen = require_draft(session, gen_id, lock=True)
    old = unit(session, gen_id, code)
    _check_etag(old, if_match, required=match_required)
    props = dict(properties or {})
    for k, now in (("code", old.code), ("level", old.level), ("parent_code", old.parent_code),
                   ("parent", old.parent_code)):
        if k in props and props.pop(k) not in (now, str(now)):
            raise InvalidInput(f"properties.{k}: a unit's {k} does not change by a replace "
                               "(use POST /generations/{id}/move to give it another parent)")
    allowed = {"name", "leader_name", "leader_phone", "attributes"}
    unknown = sorted(set(props) - allowed - {"level_key", "level_name", "area_m2",
                                              "generation_low", "generation_high", "etag"})
    if unknown:
        raise InvalidInput(f"properties: {', '.join(unknown)[:80]} cannot be set; a unit "
                           f"has {', '.join(sorted(allowed))}")
    name = props.get("name", old.name)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("properties.name: a name of 1-200 characters")
    attrs = props.get("attributes", old.attributes)
    if not isinstance(attrs, dict):
        raise InvalidInput("properties.attributes: a JSON object")
    for k in ("leader_name", "leader_phone"):
        v = props.get(k, getattr(old, k))
        if v is not None and (not isinstance(v, str) or len(v) > (100 if k == "leader_name"
                                                                   else 32)):
            raise InvalidInput(f"properties.{k}: text of at most "
                               f"{100 if k == 'leader_name' else 32} characters, or null")
    geom = old.geom if geometry is None else _areal(geometry, "geometry")
    new = Row(old.id, code, name.strip(), old.level, old.parent_code, geom,
              old.generation_low, old.revision, props.get("leader_name", old.leader_name),
              props.get("leader_phone", old.leader_phone), attrs)
    plan = Plan("put", old={code: old}, new={code: new}, direct={code})
    return _run(session, gen, plan, settings, actor=actor, dry_run=dry_run, t0=t0)


def split(session: Session, gen_id: int, code: str, settings: Settings, *, actor: str,
          line: BaseGeometry | None = None, parts: Sequence[BaseGeometry] | None = None,
          names: Sequence[str] | None = None, dry_run: bool = False) -> EditResult:
    """Split a unit by a cutting line (from edge to edge), or into given parts; the parts
    get the next free codes under its parent in the serial order (west to east, north to
    south), names given or derived from its own; its code ends."""
    t0 = time.perf_counter()
    gen = require_draft(session, gen_id, lock=True)
    old = unit(session, gen_id, code)
    _leaf(session, gen_id, old, "split")
    if (line is None) == (parts is None):
        raise InvalidInput("split: give either a cutting line or the parts as polygons")
    if line is not None:
        if line.geom_type not in ("LineString", "MultiLineString") or line.is_empty:
            raise InvalidGeometry(f"line: a LineString is needed, got {line.geom_type}")
        pieces = [g for g in shapely_split(old.geom, line).geoms if not g.is_empty]
        if len(pieces) < 2:
            raise InvalidGeometry(f"line: it does not cut unit {code} in two; the line must "
                                  "cross it from one edge to another")
    else:
        pieces = [_areal(g, f"parts[{i}]") for i, g in enumerate(parts or [])]
        if len(pieces) < 2:
            raise InvalidInput("parts: a split makes at least two parts")
    if len(pieces) > 99:
        raise InvalidInput(f"split: {len(pieces)} parts; at most 99")
    given = _names(names, len(pieces), "parts")
    order = serial_order(pieces, settings)
    if old.parent_code is None:
        raise InvalidInput(f"split: {code} is a top-level unit")
    codes = next_codes(session, old.parent_code, old.level, len(pieces))
    plan = Plan("split", old={code: old})
    for k, (i, c) in enumerate(zip(order, codes, strict=True)):
        nm = given[i] if given else _derived_name(old.name, c, k + 1)
        plan.new[c] = Row(None, c, nm, old.level, old.parent_code, _polygonal(pieces[i]),
                          None, 1, old.leader_name, old.leader_phone, dict(old.attributes))
        plan.direct.add(c)
    plan.direct.add(code)
    return _run(session, gen, plan, settings, actor=actor, dry_run=dry_run, t0=t0,
                parts=len(pieces))


def merge(session: Session, gen_id: int, codes: Sequence[str], settings: Settings, *,
          actor: str, keep: str | None = None, name: str | None = None,
          dry_run: bool = False) -> EditResult:
    """Merge sibling units that share edges into one: it keeps `keep`'s code (one of them)
    or takes the next free code under their parent."""
    t0 = time.perf_counter()
    gen = require_draft(session, gen_id, lock=True)
    codes = list(dict.fromkeys(codes))
    if len(codes) < 2:
        raise InvalidInput("codes: a merge takes at least two units")
    got = units(session, gen_id, codes)
    missing = [c for c in codes if c not in got]
    if missing:
        raise NotFound(f"codes: {', '.join(missing)[:80]} not in generation {gen_id}")
    rows = [got[c] for c in codes]
    if len({(r.level, r.parent_code) for r in rows}) != 1:
        raise InvalidInput("codes: a merge takes siblings (same level and parent); "
                           + ", ".join(f"{r.code} is under {r.parent_code}" for r in rows)[:160])
    for r in rows:
        _leaf(session, gen_id, r, "merge")
    if keep is not None and keep not in codes:
        raise InvalidInput(f"keep: {keep[:40]!r} is not one of the merged units")
    geom = _polygonal(_union([r.geom for r in rows]))
    if _pieces(geom) > max(_pieces(r.geom) for r in rows):
        raise InvalidInput(f"codes: {', '.join(codes)[:80]} do not share edges; merged they "
                           f"would be {_pieces(geom)} separate parts")
    first = rows[0]
    parent = first.parent_code
    if keep is not None:
        code, base = keep, got[keep]
    else:
        if parent is None:
            raise InvalidInput("merge: top-level units have no parent to number under")
        code, base = next_codes(session, parent, first.level, 1)[0], first
    nm = name.strip() if name and name.strip() else (
        base.name if keep else _derived_name(first.name, code, 1))
    plan = Plan("merge", old={r.code: r for r in rows}, direct=set(codes) | {code})
    plan.new[code] = Row(base.id if keep else None, code, nm[:200], first.level, parent, geom,
                         base.generation_low if keep else None, base.revision,
                         base.leader_name, base.leader_phone, dict(base.attributes))
    return _run(session, gen, plan, settings, actor=actor, dry_run=dry_run, t0=t0)


def redraw(session: Session, gen_id: int, a: str, b: str, settings: Settings, *,
           actor: str, line: BaseGeometry | None = None,
           geometry: BaseGeometry | None = None, dry_run: bool = False) -> EditResult:
    """Move the boundary two units share, once: their outline together stays exactly as
    it was, cut anew by `line` (from one side of it to the other) or by `geometry` (the
    first unit's new shape; the second takes the rest). Both follow, so no gap or overlap
    can appear; across parents, the parents follow too."""
    t0 = time.perf_counter()
    gen = require_draft(session, gen_id, lock=True)
    if a == b:
        raise InvalidInput("codes: a redraw takes two different units")
    got = units(session, gen_id, [a, b])
    for c in (a, b):
        if c not in got:
            raise NotFound(f"grid unit {c!r} is not in generation {gen_id}")
    ra, rb = got[a], got[b]
    if ra.level != rb.level:
        raise InvalidInput(f"codes: {a} and {b} are at different levels")
    for r in (ra, rb):
        _leaf(session, gen_id, r, "redraw")
    both = _union([ra.geom, rb.geom])
    if _pieces(both) > _pieces(ra.geom) + _pieces(rb.geom) - 1:
        raise InvalidInput(f"codes: {a} and {b} share no boundary")
    if (line is None) == (geometry is None):
        raise InvalidInput("redraw: give either the new boundary as a line or the first "
                           "unit's new geometry")
    if line is not None:
        if line.geom_type not in ("LineString", "MultiLineString") or line.is_empty:
            raise InvalidGeometry(f"line: a LineString is needed, got {line.geom_type}")
        parts = [g for g in shapely_split(both, line).geoms if not g.is_empty]
        if len(parts) < 2:
            raise InvalidGeometry(f"line: it does not cross the outline of {a} and {b} "
                                  "from one side to the other")
        mine_a: list[BaseGeometry] = []
        mine_b: list[BaseGeometry] = []
        for g in parts:
            ia = shapely.area(shapely.intersection(g, ra.geom))
            ib = shapely.area(shapely.intersection(g, rb.geom))
            (mine_a if ia >= ib else mine_b).append(g)
        if not mine_a or not mine_b:
            raise InvalidGeometry(f"line: it leaves nothing to {a if not mine_a else b}")
        ga, gb = _union(mine_a), _union(mine_b)
    else:
        ga = _areal(geometry, "geometry") if geometry is not None else ra.geom
        gb = shapely.difference(both, ga)
        if gb.is_empty:
            raise InvalidGeometry(f"geometry: it leaves nothing to {b}")
    plan = Plan("redraw", old={a: ra, b: rb}, direct={a, b})
    for r, g in ((ra, ga), (rb, gb)):
        plan.new[r.code] = Row(r.id, r.code, r.name, r.level, r.parent_code, _polygonal(g),
                               r.generation_low, r.revision, r.leader_name, r.leader_phone,
                               dict(r.attributes))
    return _run(session, gen, plan, settings, actor=actor, dry_run=dry_run, t0=t0)


def move(session: Session, gen_id: int, code: str, parent: str, settings: Settings, *,
         actor: str, name: str | None = None, dry_run: bool = False) -> EditResult:
    """Give a unit another parent (a grid changes community): it takes the next free code
    under the new parent, the old code ends, and both parents follow."""
    t0 = time.perf_counter()
    gen = require_draft(session, gen_id, lock=True)
    old = unit(session, gen_id, code)
    _leaf(session, gen_id, old, "move")
    if parent == old.parent_code:
        raise InvalidInput(f"parent: {code} is already under {parent}")
    target = units(session, gen_id, [parent]).get(parent)
    if target is None:
        raise NotFound(f"parent: {parent[:40]!r} is not a unit of generation {gen_id}")
    if target.level != old.level - 1:
        raise InvalidInput(f"parent: {parent} is at level {target.level}; a level "
                           f"{old.level} unit needs a parent at level {old.level - 1}")
    new_code = next_codes(session, parent, old.level, 1)[0]
    nm = name.strip() if name and name.strip() else _derived_name(old.name, new_code, 1)
    plan = Plan("move", old={code: old}, direct={code, new_code})
    plan.new[new_code] = Row(None, new_code, nm[:200], old.level, parent, old.geom, None,
                             1, old.leader_name, old.leader_phone, dict(old.attributes))
    return _run(session, gen, plan, settings, actor=actor, dry_run=dry_run, t0=t0,
                parent_from=old.parent_code, parent_to=parent)


def _leaves(session: Session, gen_id: int, codes: Sequence[str]) -> set[str]:
    """Those of codes that have units under them in the draft."""
    return set(session.scalars(text(
        f"SELECT DISTINCT u.parent_code FROM grid_unit u WHERE u.parent_code = ANY(:c) "
        f"AND {in_generation('u')}"), {"c": list(codes), "g": gen_id}))


def carve(session: Session, gen_id: int, level: int, geometry: BaseGeometry,
          settings: Settings, *, actor: str, name: str, parent: str | None = None,
          code: str | None = None, leader_name: str | None = None,
          leader_phone: str | None = None, attributes: dict[str, Any] | None = None,
          dry_run: bool = False) -> EditResult:
    """A new unit carved out of the units of its level it covers: they give up what it
    takes (one wholly covered ends), so the coverage stays seamless by construction. Its
    parent is the one named, else the parent of the unit it takes most from; its code the
    next free one under that parent (or the free code given). Only units without children
    give up area; what lies outside the draft's grid is refused."""
    t0 = time.perf_counter()
    gen = require_draft(session, gen_id, lock=True)
    tol = settings.topology_tolerance_m2
    g = _areal(geometry, "geometry")
    levels = _level_info(session)
    if level not in levels or level <= min(levels):
        raise InvalidInput(f"level: a new unit goes under a parent (levels "
                           f"{min(levels) + 1}-{max(levels)}), got {level}")
    x0, y0, x1, y1 = g.bounds
    near = _near(session, gen_id, level, (x0, y0, x1, y1), [])
    hit = [r for r in near if shapely.relate_pattern(r.geom, g, "2********")]
    if hit:
        areas = _metric([shapely.intersection(r.geom, g) for r in hit], settings)
        hit = [r for r, a in zip(hit, areas, strict=True) if a > tol]
    if not hit:
        raise InvalidGeometry(f"geometry: it covers no unit of level {level} of generation "
                              f"{gen_id}; a new unit is carved out of the units it covers")
    held = _union([r.geom for r in hit])
    outside = _metric([shapely.difference(g, held)], settings)[0]
    if outside > tol:
        raise InvalidGeometry(f"geometry: {outside:.2f} m² of it lie outside the grid of "
                              f"generation {gen_id} (a new unit is carved out of existing "
                              "units; the territory does not grow)")
    busy = _leaves(session, gen_id, [r.code for r in hit])
    if busy:
        raise InvalidInput(f"geometry: it takes area from {', '.join(sorted(busy))[:80]}, "
                           "which have units under them; carve at the finest level")
    g = _polygonal(shapely.intersection(g, held))  # exactly inside what it takes from
    taken = _metric([shapely.intersection(r.geom, g) for r in hit], settings)
    if parent is None:
        parent = hit[int(np.argmax(taken))].parent_code
    target = units(session, gen_id, [parent]).get(parent) if parent else None
    if target is None or target.level != level - 1:
        raise InvalidInput(f"parent_code: {str(parent)[:40]!r} is not a level {level - 1} "
                           f"unit of generation {gen_id}")
    assert parent is not None
    width = _serial_width(session, parent, level)
    if code is None:
        code = next_codes(session, parent, level, 1)[0]
    elif (not code.startswith(parent) or len(code) != len(parent) + width
          or not code[len(parent):].isdigit() or session.scalar(text(
              "SELECT 1 FROM grid_unit WHERE code = :c LIMIT 1"), {"c": code})):
        raise InvalidInput(f"code: {code[:40]!r} is not a free code under {parent} ({parent} "
                           f"and {width} digits, never used: a retired code is not given "
                           "again); leave it out to take the next one")
    plan = Plan("carve", direct={code})
    for r in hit:
        plan.old[r.code] = r
        plan.direct.add(r.code)
        rest = shapely.difference(r.geom, g)
        if _metric([rest], settings)[0] > tol:
            plan.new[r.code] = Row(r.id, r.code, r.name, r.level, r.parent_code,
                                   _polygonal(rest), r.generation_low, r.revision,
                                   r.leader_name, r.leader_phone, dict(r.attributes))
    plan.new[code] = Row(None, code, name, level, parent, g, None, 1, leader_name,
                         leader_phone, dict(attributes or {}))
    return _run(session, gen, plan, settings, actor=actor, dry_run=dry_run, t0=t0,
                taken_from=sorted(r.code for r in hit))


def absorb(session: Session, gen_id: int, code: str, settings: Settings, *, actor: str,
           if_match: str | None = None, dry_run: bool = False) -> EditResult:
    """Remove a unit from a draft: its sibling that shares the longest border takes its
    area (a merge keeping the sibling's code), so no gap opens. A unit with units under
    it, or one sharing no border with a sibling, is refused."""
    require_draft(session, gen_id, lock=True)
    old = unit(session, gen_id, code)
    _check_etag(old, if_match, required=False)
    _leaf(session, gen_id, old, "delete")
    x0, y0, x1, y1 = old.geom.bounds
    e = 1e-7
    sibs = [r for r in _near(session, gen_id, old.level, (x0 - e, y0 - e, x1 + e, y1 + e),
                             [code]) if r.parent_code == old.parent_code]
    lengths = np.zeros(1)
    if sibs:
        border = shapely.intersection(shapely.boundary(old.geom),
                                      shapely.boundary(np.asarray([r.geom for r in sibs],
                                                                  dtype=object)))
        lengths = shapely.length(to_metric(border, settings.metric_srid))
    best = int(np.argmax(lengths))
    if not sibs or lengths[best] <= 0:
        raise InvalidInput(f"unit {code} shares no border with another unit under "
                           f"{old.parent_code}: nothing can take its area (redraw or move "
                           "it instead)")
    keep = sibs[best].code
    return merge(session, gen_id, [code, keep], settings, actor=actor, keep=keep,
                 dry_run=dry_run)
