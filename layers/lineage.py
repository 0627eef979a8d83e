"""Grid lineage: which unit of a generation came from which units of the generation it
replaces, with the area it took from each (as shares of both), and what kind of change
made it (split, merge, redraw, reparent, attributes, new).

Only the changed rows are compared: the rows one generation has and the other has not,
plus the same-level rows of the replaced generation whose boxes meet them (one PostGIS
bbox join on the GiST index). The overlaps are computed in memory with shapely 2 (an
STRtree over the new rows, vectorised intersections) in the metric CRS
(settings.metric_srid), so a split on a 100,000-grid city compares a dozen rows.

`record` writes the links of an activated generation to grid_lineage (idempotent);
`walk` follows them both ways through every activated generation; `lineage_codes` is the
set of codes a grid's KPIs and case history may be asked for across boundary changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.models import Generation
from layers.resolver import metric_transformer
from layers.settings import Settings
from layers.versioning import in_generation
from spatial.errors import InvalidInput, NotFound

# must equal migration 0014's KINDS (grid_lineage_kind check constraint)
KINDS = ("split", "merge", "redraw", "reparent", "attributes", "new")
ENDED = "ended"  # a unit of the replaced generation whose code the new one no longer has

# the planners' audit actions (layers.drafts) and the lineage kind each names; a `put`
# may change attributes or geometry, so its units are classified from geometry
ACTION_KINDS = {"split": "split", "merge": "merge", "redraw": "redraw", "move": "reparent"}
MERGE_SHARE = 0.5  # a unit taking at least this share of two or more predecessors: a merge
MAX_DEPTH = 100  # steps a walk follows in each direction


@dataclass(frozen=True)
class Link:
    """A unit row of the new generation and one predecessor (a row of the replaced one) at
    the same level: the overlap's area in m² and its share of each."""

    unit_id: int
    code: str
    predecessor_id: int
    predecessor_code: str
    level: int
    kind: str
    area_m2: float
    share_of_predecessor: float
    share_of_unit: float


@dataclass(frozen=True)
class UnitRow:
    """A grid row as the comparison sees it: geometry in lon/lat and in metres."""

    id: int
    code: str
    name: str
    level: int
    parent_code: str | None
    geom: BaseGeometry = field(compare=False, repr=False)
    metric: BaseGeometry = field(compare=False, repr=False)
    area_m2: float


def _grouped(links: list[Link], key: Callable[[Link], int], tie: Callable[[Link], str]
             ) -> dict[int, list[Link]]:
    """Links grouped by key, each group largest overlap first (ties by code)."""
    out: dict[int, list[Link]] = defaultdict(list)
    for link in links:
        out[key(link)].append(link)
    for v in out.values():
        v.sort(key=lambda x: (-x.area_m2, tie(x)))
    return out


@dataclass
class Diff:
    """What a generation changes against another: its rows the other has not (`new`), the
    other's rows it has not (`old`: ended or replaced), the rows both share that touch
    the new ones at their level (`near`), the overlaps (`links`) and each new row's kind."""

    generation: int
    against: int
    new: list[UnitRow]
    old: list[UnitRow]
    near: list[UnitRow]
    links: list[Link]
    kinds: dict[int, str]

    def links_of(self) -> dict[int, list[Link]]:
        """Links by the new row's id, largest overlap first."""
        return _grouped(self.links, lambda x: x.unit_id, lambda x: x.predecessor_code)

    def successors_of(self) -> dict[int, list[Link]]:
        """Links by the predecessor row's id, largest overlap first."""
        return _grouped(self.links, lambda x: x.predecessor_id, lambda x: x.code)

    def ended(self) -> list[UnitRow]:
        """Rows of the replaced generation whose code the new generation does not have."""
        codes = {r.code for r in self.new} | {r.code for r in self.near}
        return [r for r in self.old if r.code not in codes]


# ---------------------------------------------------------------- which generations


def replaced_generation(session: Session, gen_id: int) -> int | None:
    """The generation gen_id replaces: for a draft, the active one; for an activated
    generation, the one activated last before it. None when there is none."""
    gen = session.get(Generation, gen_id)
    if gen is None:
        raise NotFound(f"generation {gen_id} does not exist")
    if gen.activated_at is None:
        found = session.scalar(text("SELECT id FROM generation WHERE active AND id <> :g"),
                               {"g": gen_id})
    else:
        found = session.scalar(text(
            "SELECT id FROM generation WHERE activated_at IS NOT NULL AND id <> :g "
            "AND (activated_at, id) < (:at, :g) ORDER BY activated_at DESC, id DESC LIMIT 1"),
            {"g": gen_id, "at": gen.activated_at})
    return int(found) if found is not None else None


def _against(session: Session, gen_id: int, against: int | None) -> int:
    if against is None:
        found = replaced_generation(session, gen_id)
        if found is None:
            raise InvalidInput(f"generation {gen_id} replaces no generation: there is "
                               "nothing to compare it with")
        return found
    if session.get(Generation, against) is None:
        raise NotFound(f"generation {against} does not exist")
    if against == gen_id:
        raise InvalidInput(f"against: generation {gen_id} compared with itself")
    return against


# ---------------------------------------------------------------- the comparison

_COLUMNS = "u.id, u.code, u.name, u.level, u.parent_code, ST_AsBinary(u.geom) AS wkb"


def _unit_rows(got: Sequence[Any], settings: Settings) -> list[UnitRow]:
    if not got:
        return []
    geoms = shapely.from_wkb([bytes(r.wkb) for r in got])
    metric = to_metric(geoms, settings)
    areas = shapely.area(metric)
    return [UnitRow(int(r.id), r.code, r.name, int(r.level), r.parent_code, g, m, float(a))
            for r, g, m, a in zip(got, geoms, metric, areas, strict=True)]


def to_metric(geoms: Sequence[BaseGeometry] | np.ndarray, settings: Settings) -> np.ndarray:
    """lon/lat geometries in the deployment's metric CRS, vertex by vertex (as PostGIS's
    ST_Transform does: areas agree with grid_unit.area_m2)."""
    tr = metric_transformer(settings.metric_srid)
    arr = np.asarray(geoms, dtype=object)
    if not len(arr):
        return arr
    return shapely.transform(arr, lambda xy: np.column_stack(tr(xy[:, 0], xy[:, 1])))


def load_rows(session: Session, gen_id: int, against: int, settings: Settings
              ) -> tuple[list[UnitRow], list[UnitRow], list[UnitRow]]:
    """(new, old, near): rows of gen_id not in `against`, rows of `against` not in gen_id,
    and rows of both at a new row's level whose box meets it; one round trip (three
    index scans)."""
    new_rows = f"{in_generation('u')} AND NOT ({in_generation('u', ':a')})"
    got = session.execute(text(f"""
        SELECT 0 AS side, {_COLUMNS} FROM grid_unit u WHERE {new_rows}
        UNION ALL
        SELECT 1, {_COLUMNS} FROM grid_unit u
         WHERE {in_generation('u', ':a')} AND NOT ({in_generation('u')})
        UNION ALL
        SELECT 2, {_COLUMNS} FROM grid_unit u
         WHERE u.id IN (SELECT o.id FROM grid_unit n
                          JOIN grid_unit o ON o.level = n.level AND o.geom && n.geom
                         WHERE {in_generation('n')} AND NOT ({in_generation('n', ':a')})
                           AND {in_generation('o', ':a')} AND {in_generation('o')})
         ORDER BY side, level, code"""), {"g": gen_id, "a": against}).all()
    rows = _unit_rows(got, settings)
    sides: tuple[list[UnitRow], list[UnitRow], list[UnitRow]] = ([], [], [])
    for r, row in zip(got, rows, strict=True):
        sides[int(r.side)].append(row)
    return sides


def _events_kinds(session: Session, gen_id: int) -> dict[str, str]:
    """Codes the audit log says an edit made, and the kind that edit names (the first edit
    that named the code as its own result; parents that followed are not named)."""
    out: dict[str, str] = {}
    rows = session.execute(text(
        "SELECT action, detail FROM generation_event WHERE generation_id = :g "
        "AND action = ANY(:kinds) ORDER BY id"), {"g": gen_id, "kinds": list(ACTION_KINDS)})
    for action, detail in rows:
        kind = ACTION_KINDS.get(action)
        if kind is None or not isinstance(detail, dict):
            continue
        parents = set(detail.get("parents") or ())
        for code in detail.get("to") or ():
            if isinstance(code, str) and code not in parents:
                out.setdefault(code, kind)
    return out


def _same_geometry(a: BaseGeometry, b: BaseGeometry) -> bool:
    return bool(shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), tolerance=0))


def _classify(unit: UnitRow, links: list[Link], by_id: dict[int, UnitRow],
              successors: dict[int, int], named: str | None) -> str:
    """A new row's kind: no predecessor -> new; the audit log's word when it has one; else
    from geometry (see the module's rules)."""
    if not links:
        return "new"
    if named is not None:
        return named
    if sum(link.share_of_predecessor >= MERGE_SHARE for link in links) >= 2:
        return "merge"
    same = next((link for link in links if link.predecessor_code == unit.code), None)
    if same is not None:
        return ("attributes" if _same_geometry(unit.geom, by_id[same.predecessor_id].geom)
                else "redraw")
    main = links[0]
    pred = by_id[main.predecessor_id]
    if len(links) == 1 and _same_geometry(unit.geom, pred.geom):
        return "reparent"
    if successors.get(main.predecessor_id, 0) >= 2:
        return "split"
    return "reparent" if pred.parent_code != unit.parent_code else "redraw"


def diff(session: Session, gen_id: int, settings: Settings, *, against: int | None = None
         ) -> Diff:
    """Compare generation gen_id with `against` (default: the generation it replaces)."""
    against = _against(session, gen_id, against)
    new, old, near = load_rows(session, gen_id, against, settings)
    cands = old + near
    links: list[Link] = []
    kinds: dict[int, str] = {}
    if new and cands:
        # overlaps are cut in lon/lat, where the rows were drawn (a vertex on an edge there
        # is off the edge's chord in metres), then measured in the metric CRS
        tree = shapely.STRtree([r.geom for r in new])
        ci, ni = tree.query([r.geom for r in cands], predicate="intersects")
        same_level = np.fromiter((cands[i].level == new[j].level for i, j in zip(ci, ni,
                                                                                  strict=True)),
                                 dtype=bool, count=len(ci))
        ci, ni = ci[same_level], ni[same_level]
        if len(ci):
            areas = shapely.area(to_metric(shapely.intersection(
                np.asarray([cands[i].geom for i in ci], dtype=object),
                np.asarray([new[j].geom for j in ni], dtype=object)), settings))
            tol = settings.topology_tolerance_m2
            for i, j, a in zip(ci, ni, areas, strict=True):
                if not a > tol:
                    continue
                p, u = cands[i], new[j]
                links.append(Link(u.id, u.code, p.id, p.code, u.level, "", float(a),
                                  float(a / p.area_m2) if p.area_m2 else 0.0,
                                  float(a / u.area_m2) if u.area_m2 else 0.0))
    by_unit: dict[int, list[Link]] = defaultdict(list)
    successors: dict[int, int] = defaultdict(int)
    for link in links:
        by_unit[link.unit_id].append(link)
        successors[link.predecessor_id] += 1
    for v in by_unit.values():
        v.sort(key=lambda x: (-x.area_m2, x.predecessor_code))
    named = _events_kinds(session, gen_id)
    by_id = {r.id: r for r in cands}
    for u in new:
        kinds[u.id] = _classify(u, by_unit.get(u.id, []), by_id, successors,
                                named.get(u.code))
    links = [Link(**{**link.__dict__, "kind": kinds[link.unit_id]}) for link in links]
    links.sort(key=lambda x: (x.level, x.code, -x.area_m2, x.predecessor_code))
    return Diff(gen_id, against, new, old, near, links, kinds)


def compute(session: Session, gen_id: int, settings: Settings, *,
            against: int | None = None) -> list[Link]:
    """Every new row of gen_id with each predecessor among the same-level units of
    `against` (default: the generation it replaces) that it overlaps by more than
    settings.topology_tolerance_m2. Rows with no predecessor (kind new) have no link; the
    ended units are the predecessors of the links that gen_id no longer has (Diff.ended)."""
    return diff(session, gen_id, settings, against=against).links


def record(session: Session, gen_id: int, settings: Settings, *,
           against: int | None = None) -> int:
    """Write the lineage of generation gen_id against the generation it replaces (called by
    the activation); replaces what an earlier call wrote for it. Returns the rows written
    (0 for a first generation, which replaces nothing)."""
    if against is None:
        against = replaced_generation(session, gen_id)
        if against is None:
            return 0
    links = compute(session, gen_id, settings, against=against)
    session.execute(text("DELETE FROM grid_lineage WHERE generation_id = :g"), {"g": gen_id})
    if links:
        session.execute(text("""
            INSERT INTO grid_lineage (generation_id, unit_id, predecessor_id, kind, area_m2,
                                      share_of_predecessor, share_of_unit)
            SELECT :g, * FROM unnest(CAST(:u AS bigint[]), CAST(:p AS bigint[]),
                                     CAST(:k AS text[]), CAST(:a AS float8[]),
                                     CAST(:sp AS float8[]), CAST(:su AS float8[]))"""),
            {"g": gen_id, "u": [x.unit_id for x in links],
             "p": [x.predecessor_id for x in links], "k": [x.kind for x in links],
             "a": [x.area_m2 for x in links], "sp": [x.share_of_predecessor for x in links],
             "su": [x.share_of_unit for x in links]})
    return len(links)


# ---------------------------------------------------------------- walking it


_STEP_SQL = """
    SELECT l.generation_id, l.kind, l.area_m2, l.share_of_predecessor, l.share_of_unit,
           l.unit_id, u.code AS unit_code, u.level AS unit_level,
           u.generation_low AS unit_low, u.generation_high AS unit_high,
           l.predecessor_id, p.code AS pred_code, p.level AS pred_level,
           p.generation_low AS pred_low, p.generation_high AS pred_high
      FROM grid_lineage l
      JOIN grid_unit u ON u.id = l.unit_id
      JOIN grid_unit p ON p.id = l.predecessor_id
      JOIN generation g ON g.id = l.generation_id
     WHERE l.{side} = ANY(:ids) {published}
     ORDER BY l.generation_id, u.code, p.code"""


def _published_high(high: int | None, last_activated: int | None) -> int | None:
    """A row's end as published: an end no activated generation has made yet (a pending
    draft's) is not shown."""
    if high is None or last_activated is None or high >= last_activated:
        return None
    return high


def walk(session: Session, code: str, *, include_drafts: bool = False) -> dict[str, Any]:
    """The lineage of a code both ways through every activated generation: the versions of
    the code, its predecessors (back to the first generation) and its successors (to the
    newest), each step with the generation that made it, both rows' codes and generation
    ranges, the kind, the area taken and its shares. A draft's links never show unless
    include_drafts. 404 if the code was never in an activated generation."""
    published = "" if include_drafts else "AND g.activated_at IS NOT NULL"
    last = session.scalar(text("SELECT max(id) FROM generation WHERE activated_at IS NOT NULL"))
    last_activated = None if include_drafts else (int(last) if last is not None else None)
    versions = session.execute(text(f"""
        SELECT u.id, u.name, u.level, u.parent_code, u.generation_low, u.generation_high,
               u.area_m2
          FROM grid_unit u JOIN generation g ON g.id = u.generation_low
         WHERE u.code = :code {published}
         ORDER BY u.generation_low"""), {"code": code}).all()
    if not versions:
        raise NotFound(f"grid unit {code!r} does not exist in any activated generation")
    ids = [int(v.id) for v in versions]

    def follow(side: str, other: str) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        seen = set(ids)
        frontier = list(ids)
        depth = 0
        while frontier and depth < MAX_DEPTH:
            depth += 1
            rows = session.execute(text(_STEP_SQL.format(side=side, published=published)),
                                   {"ids": frontier}).all()
            frontier = []
            for r in rows:
                steps.append(_step(r, depth, last_activated))
                nxt = int(getattr(r, other))
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        return steps

    back = follow("unit_id", "predecessor_id")
    forward = follow("predecessor_id", "unit_id")
    codes = {code} | {s["from"]["code"] for s in back + forward} | {
        s["to"]["code"] for s in back + forward}
    return {
        "code": code,
        "versions": [{"name": v.name, "level": v.level, "parent_code": v.parent_code,
                      "generation_low": v.generation_low,
                      "generation_high": _published_high(v.generation_high, last_activated),
                      "area_m2": round(float(v.area_m2), 2) if v.area_m2 is not None
                      else None} for v in versions],
        "predecessors": back,
        "successors": forward,
        "codes": sorted(codes),
    }


def _step(r: Any, depth: int, last_activated: int | None) -> dict[str, Any]:
    return {
        "generation": int(r.generation_id), "depth": depth, "kind": r.kind,
        "from": {"code": r.pred_code, "level": int(r.pred_level),
                 "generation_low": int(r.pred_low),
                 "generation_high": _published_high(r.pred_high, last_activated)},
        "to": {"code": r.unit_code, "level": int(r.unit_level),
               "generation_low": int(r.unit_low),
               "generation_high": _published_high(r.unit_high, last_activated)},
        "area_m2": round(float(r.area_m2), 2),
        "share_of_predecessor": round(float(r.share_of_predecessor), 6),
        "share_of_unit": round(float(r.share_of_unit), 6),
    }


def lineage_codes(session: Session, code: str) -> list[str]:
    """Every code related to `code` through the lineage of activated generations, both
    ways, itself included (sorted); just [code] when it has no recorded lineage or never
    was a unit (the caller decides whether an unknown code is an error)."""
    try:
        return list(walk(session, code)["codes"])
    except NotFound:
        return [code]
