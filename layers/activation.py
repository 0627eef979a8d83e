"""Activating a draft generation: validated, compared with the generation it replaces
(layers.lineage), the patrol assignments and grid roles of ended units ended and those of
new finest units inherited (from the predecessor with the largest share, or as the planner
says), the grid made active (every worker is told), the lineage recorded, the assets'
grid located again, and the open cases whose grid or street changed either kept (their
stored answer stands) or re-homed through the case action `re_resolve` (one event each,
the old answer kept in it). One savepoint holds it all: a refusal or a dry run leaves
nothing behind.

Which open cases and assets may change is read from the changed finest rows only (those
the draft has and the replaced generation has not, and the other way round): a GiST join
on their geometry plus the cases and assets stored on their codes. Whether a case's grid
changes is PostGIS's answer (ST_Covers, lowest code wins: layers.resolver.resolve_sql);
a re-homed case's new answer is the server's, composed exactly as the re_resolve action
of POST /cases/{ref}/actions composes it (layers.resolution.ReportResolver over an index
and an ownership snapshot read in this very transaction, so they see the new grid).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from layers import case_actions, case_queries, drafts, grids, lineage
from layers.cases import Actor
from layers.models import Case, GridRole, LayerEvent, PatrolAssignment
from layers.ownership_store import OwnershipRegistry
from layers.resolution import ReportResolver
from layers.resolver import IndexRegistry, resolve_sql
from layers.responsibility import LAYERS, LAYERS_CHANNEL, locate_assets
from layers.settings import Settings
from layers.versioning import in_generation, live
from layers.workflow import ADMIN, OPEN, SIDE_ACTIONS, Forbidden
from spatial.errors import Conflict, InvalidInput

OPEN_CASES = ("keep", "rehome")
OpenCases = Literal["keep", "rehome"]


@dataclass(frozen=True)
class Inheritance:
    """What a new unit takes over: the code it inherits from (None: nothing), and why
    (largest share, the planner's choice, or no predecessor)."""

    code: str
    level: int
    source: str | None
    reason: Literal["largest_share", "planner", "planner_none", "no_predecessor"]


# ---------------------------------------------------------------- the patrol plan


def _check_patrol(patrol: Mapping[str, Mapping[str, Any]] | None, new_finest: set[str],
                  old_codes: set[str]) -> dict[str, str | None]:
    """The planner's patrol choices, checked: new finest code -> the old code it takes its
    patrol and roles from, or None ({"none": true}). 422 naming what is wrong."""
    out: dict[str, str | None] = {}
    for code, choice in (patrol or {}).items():
        if code not in new_finest:
            known = ", ".join(sorted(new_finest)[:20]) or "none"
            raise InvalidInput(f"patrol.{code}: not a new finest unit of this draft (its new "
                               f"finest units: {known})")
        src = choice.get("from")
        none = choice.get("none")
        if (src is None) == (none is None) or (none is not None and none is not True):
            raise InvalidInput(f"patrol.{code}: give {{\"from\": \"<old code>\"}} or "
                               "{\"none\": true}")
        if src is not None:
            if not isinstance(src, str) or src not in old_codes:
                raise InvalidInput(f"patrol.{code}.from: {src!r} is not a unit of the "
                                   "generation being replaced")
            out[code] = src
        else:
            out[code] = None
    return out


def _inheritance(d: lineage.Diff, finest: int, old_codes: set[str],
                 chosen: Mapping[str, str | None]) -> list[Inheritance]:
    """For each unit of the draft whose code the replaced generation does not have: the
    code it inherits assignments and roles from."""
    links = d.links_of()
    out: list[Inheritance] = []
    for r in sorted(d.new, key=lambda r: (r.level, r.code)):
        if r.code in old_codes:
            continue
        if r.code in chosen:
            src = chosen[r.code]
            out.append(Inheritance(r.code, r.level, src,
                                   "planner" if src is not None else "planner_none"))
            continue
        mine = links.get(r.id, [])
        if mine:
            out.append(Inheritance(r.code, r.level, mine[0].predecessor_code,
                                   "largest_share"))
        else:
            out.append(Inheritance(r.code, r.level, None, "no_predecessor"))
    return out


def _current_rows(session: Session, model: type[PatrolAssignment] | type[GridRole],
                  codes: Iterable[str]) -> dict[str, list[Any]]:
    """Current rows of a grid-keyed layer by grid code."""
    wanted = sorted(set(codes))
    out: dict[str, list[Any]] = defaultdict(list)
    if not wanted:
        return out
    for row in session.scalars(select(model).where(model.grid_code.in_(wanted),
                                                   model.valid_to.is_(None))
                               .order_by(model.grid_code, model.id)):
        out[row.grid_code].append(row)  # type: ignore[attr-defined]
    return out


def _fields(layer: str, row: Any) -> dict[str, Any]:
    return {k: getattr(row, k) for k in LAYERS[layer].schema.model_fields}


def _key(layer: str, values: Mapping[str, Any]) -> str:
    return "/".join(str(values[k]) for k in LAYERS[layer].key)


def _end_rows(session: Session, layer: str, rows: Sequence[Any], at: datetime, actor: str,
              gen_id: int) -> None:
    """End current layer rows at `at` (their history stays), one layer_event each."""
    for row in rows:
        row.valid_to = at
        session.add(LayerEvent(layer=layer, code=_key(layer, _fields(layer, row)),
                               action="retire", actor=actor,
                               detail={"generation": gen_id,
                                       "reason": f"grid {row.grid_code} ended"}))


def _inherit_rows(session: Session, layer: str, inherit: Sequence[Inheritance],
                  rows: Mapping[str, Sequence[Any]], at: datetime, actor: str,
                  gen_id: int) -> list[dict[str, Any]]:
    """Copy the source unit's current rows to each new unit, valid from `at`, one
    layer_event each; returns what each unit took."""
    model = LAYERS[layer].model
    taken: list[dict[str, Any]] = []
    for inh in inherit:
        if inh.source is None:
            continue
        made = []
        for src in rows.get(inh.source, ()):
            values = {**_fields(layer, src), "grid_code": inh.code}
            session.add(model(**values, valid_from=at))
            session.add(LayerEvent(layer=layer, code=_key(layer, values), action="inherit",
                                   actor=actor,
                                   detail={"generation": gen_id, "from": inh.source,
                                           "reason": inh.reason}))
            made.append(values)
        if made:
            item: dict[str, Any] = {"code": inh.code, "from": inh.source, "reason": inh.reason}
            if layer == "assignments":
                item["teams"] = sorted({v["team_code"] for v in made})
                item["shifts"] = [f"{v['team_code']}/{v['shift']}" for v in made]
            else:
                item["roles"] = [{"role": v["role"], "name": v["name"],
                                  "department_code": v["department_code"]} for v in made]
            taken.append(item)
    return taken


# ---------------------------------------------------------------- cases and assets


def _changed_rows(d: lineage.Diff, finest: int) -> tuple[list[int], list[str]]:
    """Ids and codes of the finest rows that changed: the draft's own and the replaced
    generation's that the draft no longer has."""
    rows = [r for r in d.new + d.old if r.level == finest]
    return [r.id for r in rows], sorted({r.code for r in rows})


def _streets(session: Session, gen_id: int, codes: Iterable[str]) -> dict[str, str | None]:
    """Each finest code's street (its level-2 ancestor) in a generation."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = session.execute(text(f"""
        WITH RECURSIVE chain AS (
            SELECT u.code AS leaf, u.code, u.level, u.parent_code, 0 AS depth
              FROM grid_unit u WHERE u.code = ANY(:codes) AND {in_generation('u')}
            UNION ALL
            SELECT c.leaf, u.code, u.level, u.parent_code, c.depth + 1
              FROM grid_unit u JOIN chain c ON u.code = c.parent_code
             WHERE {in_generation('u')} AND c.depth < 16)
        SELECT leaf, code FROM chain WHERE level = 2"""), {"codes": wanted, "g": gen_id})
    out: dict[str, str | None] = dict.fromkeys(wanted)
    out.update({r.leaf: r.code for r in rows})
    return out


@dataclass(frozen=True)
class Moving:
    """An open case whose grid or street the new generation changes."""

    id: int
    ref: str
    old_grid: str | None
    old_street: str | None
    new_grid: str | None
    new_street: str | None


def moving_cases(session: Session, gen_id: int, finest: int, ids: Sequence[int],
                 codes: Sequence[str]) -> list[Moving]:
    """Open cases in the changed finest rows (or stored on their codes) whose grid or
    street generation gen_id changes, by reference (PostGIS: ST_Covers, lowest code)."""
    if not ids:
        return []
    rows = session.execute(text("""
        SELECT c.id, c.ref, c.grid_code, c.street_code, ST_X(c.geom) AS lon,
               ST_Y(c.geom) AS lat
          FROM "case" c
         WHERE c.id IN (  -- two index scans (case_grid, the geometry's), not an OR
               SELECT c1.id FROM "case" c1
                WHERE c1.grid_code = ANY(:codes) AND c1.status = ANY(:open)
               UNION
               SELECT c2.id FROM grid_unit u
                 JOIN "case" c2 ON c2.geom && u.geom AND ST_Covers(u.geom, c2.geom)
                WHERE u.id = ANY(:ids) AND c2.status = ANY(:open))
         ORDER BY c.ref"""), {"open": list(OPEN), "codes": list(codes), "ids": list(ids)}).all()
    if not rows:
        return []
    found = resolve_sql(session, gen_id, np.array([r.lon for r in rows], dtype=np.float64),
                        np.array([r.lat for r in rows], dtype=np.float64), finest)
    streets = _streets(session, gen_id, [g for g in found if g])
    out = []
    for r, g in zip(rows, found, strict=True):
        s = streets.get(g) if g else None
        if (g, s) != (r.grid_code, r.street_code):
            out.append(Moving(int(r.id), r.ref, r.grid_code, r.street_code, g, s))
    return out


def _relocate_assets(session: Session, ids: Sequence[int], codes: Sequence[str],
                     actor: str, gen_id: int) -> list[dict[str, Any]]:
    """Locate again (layers.responsibility.locate_assets, against the now active grid) the
    current assets in the changed finest rows or stored on their codes; the ones whose
    grid changed, with one layer_event naming them."""
    if not ids:
        return []
    before: dict[int, str | None] = {int(r[0]): r[1] for r in session.execute(text(f"""
        SELECT a.id, a.grid_code FROM asset a
         WHERE a.id IN (  -- two index scans, not an OR
               SELECT a1.id FROM asset a1 WHERE a1.grid_code = ANY(:codes) AND {live('a1')}
               UNION
               SELECT a2.id FROM grid_unit u JOIN asset a2 ON a2.geom && u.geom
                WHERE u.id = ANY(:ids) AND {live('a2')}
                  AND ST_Intersects(u.geom, a2.geom))"""),
        {"codes": list(codes), "ids": list(ids)})}
    if not before:
        return []
    locate_assets(session, list(before))
    rows = session.execute(text("SELECT id, code, kind, grid_code FROM asset "
                                "WHERE id = ANY(:ids) ORDER BY code"),
                           {"ids": list(before)}).all()
    moved = [{"code": r.code, "kind": r.kind, "old_grid": before[r.id],
              "new_grid": r.grid_code} for r in rows if r.grid_code != before[r.id]]
    if moved:
        session.add(LayerEvent(layer="assets", code="*", action="relocate", actor=actor,
                               detail={"generation": gen_id, "moved": moved}))
    return moved


def _bound(session: Session) -> Callable[[], AbstractContextManager[Session]]:
    """A session factory for the registries that hands out this transaction's session
    (so the index and snapshot read the new grid before it is committed)."""
    return lambda: nullcontext(session)


def _rehome(session: Session, settings: Settings, actor: Actor, moving: Sequence[Moving]
            ) -> tuple[list[str], list[dict[str, Any]]]:
    """re_resolve each moving case as POST /cases/{ref}/actions does (its point as stored,
    the server's answer from the active index and the ownership snapshot); returns the
    references re-homed and the cases left as they were (with the reason)."""
    if not moving:
        return [], []
    factory = cast(Any, _bound(session))
    reports = ReportResolver(IndexRegistry(factory, settings),
                             OwnershipRegistry(factory, settings), settings)
    cases = {c.id: c for c in session.scalars(
        select(Case).where(Case.id.in_([m.id for m in moving])).with_for_update()
        .execution_options(populate_existing=True))}
    done: list[str] = []
    left: list[dict[str, Any]] = []
    for m in moving:
        case = cases[m.id]
        if case.status not in OPEN:  # changed by somebody since the selection
            left.append({"ref": m.ref, "reason": f"the case is {case.status} now"})
            continue
        lon, lat = case_queries.point(session, case)
        try:
            resolution = reports.resolve(lon, lat, case.category_code)
        except InvalidInput as e:  # e.g. a category retired since the report
            left.append({"ref": m.ref, "reason": e.detail})
            continue
        case_actions.act(session, case, "re_resolve", actor, version=case.version,
                         note=f"grid generation {resolution.get('generation')} activated",
                         resolution=resolution)
        done.append(m.ref)
    return done, left


# ---------------------------------------------------------------- activation


def activate(session: Session, gen_id: int, settings: Settings, *, actor: Actor | str,
             open_cases: str = "keep",
             patrol: Mapping[str, Mapping[str, Any]] | None = None,
             confirm_unpatrolled: Iterable[str] | bool = (),
             dry_run: bool = False) -> dict[str, Any]:
    """Activate draft gen_id: validate it (422 grid_invariant_violated with the
    violations), end the patrol assignments and grid roles of units that end and let each
    new unit inherit those of its predecessor with the largest share (or of the old unit
    `patrol` names; {"none": true}: nothing), refuse (409) when a new finest unit would
    have no patrol and is not confirmed, make it the active generation (NOTIFY: every
    worker switches), record the lineage, locate the assets again, and keep or re-home
    (open_cases) the open cases whose grid or street changes. dry_run: the same answer,
    nothing kept. 404 unknown generation, 409 already activated. The caller commits.
    actor: the caller (its name is on every event; re-homing needs a role that may
    re_resolve), or a name alone for the command line's operator (an admin)."""
    # a bare name is the command line's operator, who holds the database: an admin
    who = actor if isinstance(actor, Actor) else Actor(actor, ADMIN)
    if open_cases not in OPEN_CASES:
        raise InvalidInput(f"open_cases: {open_cases!r} is not one of {', '.join(OPEN_CASES)}")
    if open_cases == "rehome" and who.role not in SIDE_ACTIONS["re_resolve"]:
        raise Forbidden(f"open_cases rehome: the cases are re-resolved in {who.name}'s name, "
                        f"and a {who.role} may not re_resolve a case (layers.workflow); "
                        "activate with open_cases keep, or as a centre or admin")
    gen = drafts.require_draft(session, gen_id, lock=True)
    sp = session.begin_nested()
    try:
        out = _activate(session, gen, settings, who, open_cases, patrol, confirm_unpatrolled,
                        dry_run)
    except BaseException:
        sp.rollback()
        raise
    if dry_run:
        sp.rollback()
        session.expire_all()
    else:
        sp.commit()
    return out


def _activate(session: Session, gen: Any, settings: Settings, who: Actor, open_cases: str,
              patrol: Mapping[str, Mapping[str, Any]] | None,
              confirm_unpatrolled: Iterable[str] | bool, dry_run: bool) -> dict[str, Any]:
    gen_id = int(gen.id)
    violations = grids.validate_generation(session, gen_id, settings)
    if violations:
        raise grids.invariant_error(violations)
    previous = grids.active_generation(session)
    prev_id = int(previous.id) if previous is not None else None
    finest = int(session.scalar(text(f"SELECT max(u.level) FROM grid_unit u "
                                     f"WHERE {in_generation('u')}"), {"g": gen_id}) or 0)
    d = (lineage.diff(session, gen_id, settings, against=prev_id) if prev_id is not None
         else None)
    old_codes: set[str] = set()
    if prev_id is not None:
        old_codes = set(session.scalars(text(
            f"SELECT u.code FROM grid_unit u WHERE {in_generation('u')}"), {"g": prev_id}))
    new_finest = ({r.code for r in d.new if r.level == finest} - old_codes if d is not None
                  else set())
    chosen = _check_patrol(patrol, new_finest, old_codes)
    inherit = _inheritance(d, finest, old_codes, chosen) if d is not None else []
    ended = sorted({r.code for r in d.ended()}) if d is not None else []

    sources = {i.source for i in inherit if i.source is not None}
    assignments = _current_rows(session, PatrolAssignment, sources | set(ended))
    roles = _current_rows(session, GridRole, sources | set(ended))
    confirmed_all = confirm_unpatrolled is True
    confirmed = (set() if isinstance(confirm_unpatrolled, bool)
                 else set(confirm_unpatrolled))
    unknown = sorted(confirmed - new_finest)
    if unknown:
        raise InvalidInput(f"confirm_unpatrolled: {', '.join(unknown[:20])} is not a new "
                           "finest unit of this draft")
    unpatrolled = sorted(i.code for i in inherit if i.level == finest
                         and not assignments.get(i.source or ""))
    refused = [c for c in unpatrolled if not confirmed_all and c not in confirmed
               and chosen.get(c, "") is not None]  # {"none": true} is the planner's word
    if refused:
        src = {i.code: i.source for i in inherit}
        why = "; ".join(f"{c} (from {src[c] or 'no predecessor'})" for c in refused[:20])
        raise Conflict(
            f"{len(refused)} new grid(s) would have no patrol team: {why}. Name a grid to "
            "take the patrol from (patrol: {code: {\"from\": old code}}), or confirm "
            "(confirm_unpatrolled: [codes] or true)",
            extra={"unpatrolled": refused})

    grids.activate_generation(session, gen, settings, validated=True)
    at: datetime = gen.activated_at
    ended_assign = [r for c in ended for r in assignments.get(c, ())]
    ended_roles = [r for c in ended for r in roles.get(c, ())]
    inherited_assign = _inherit_rows(session, "assignments",
                                     [i for i in inherit if i.level == finest], assignments,
                                     at, who.name, gen_id)
    inherited_roles = _inherit_rows(session, "roles", inherit, roles, at, who.name, gen_id)
    _end_rows(session, "assignments", ended_assign, at, who.name, gen_id)
    _end_rows(session, "roles", ended_roles, at, who.name, gen_id)
    session.flush()
    lineage_rows = (lineage.record(session, gen_id, settings, against=prev_id)
                    if prev_id is not None else 0)
    ids, codes = _changed_rows(d, finest) if d is not None else ([], [])
    assets = _relocate_assets(session, ids, codes, who.name, gen_id)
    session.execute(text("SELECT pg_notify(:ch, '')"), {"ch": LAYERS_CHANNEL})  # snapshots
    moving = moving_cases(session, gen_id, finest, ids, codes)
    rehomed: list[str] = []
    left: list[dict[str, Any]] = []
    if open_cases == "rehome":
        rehomed, left = _rehome(session, settings, who, moving)
    kept = len(moving) - len(rehomed)
    out = {
        "generation": gen_id, "activated_at": at, "previous": prev_id,
        "dry_run": dry_run, "validation": {"ok": True},
        "lineage_rows": lineage_rows, "open_cases": open_cases,
        "cases_rehomed": rehomed, "cases_kept": kept,
        "cases_not_rehomed": left,
        "assets_moved": len(assets),
        "assignments": {"inherited": inherited_assign, "ended": len(ended_assign),
                        "unpatrolled_confirmed": unpatrolled},
        "roles": {"inherited": inherited_roles, "ended": len(ended_roles)},
    }
    drafts.record(session, gen_id, who.name, "activate", sorted(new_finest | set(ended)),
                  previous=prev_id, open_cases=open_cases, dry_run=dry_run,
                  lineage_rows=lineage_rows, cases_rehomed=rehomed,
                  cases_kept=[m.ref for m in moving if m.ref not in set(rehomed)],
                  cases_not_rehomed=left, assets_moved=assets,
                  assignments=out["assignments"], roles=out["roles"],
                  ended=ended, unpatrolled_confirmed=unpatrolled)
    return out
