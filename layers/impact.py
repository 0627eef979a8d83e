"""The impact preview of a draft generation against the active one: per changed unit the
old and new area and where the area went (layers.lineage), the open cases whose grid or
street would change with the answer each would get, the assets whose grid changes, the
patrol assignments and grid roles that end or would be inherited (and the new finest units
left with no patrol), the departments' zone alignment (多格合一) before and after, counts
per street, and the changed outlines as GeoJSON.

Only what changed is read: the lineage diff's rows, then cases and assets by a GiST bbox
join on the changed finest rows (and by their stored codes); points are resolved in memory
against the draft's rows there with the resolver's rule (ST_Covers, lowest code wins)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import lineage
from layers.case_actions import _REASSIGNABLE as REASSIGNABLE  # re_resolve's own rule
from layers.lineage import ENDED, Diff, Link, UnitRow
from layers.lookup import alignment, zone_departments
from layers.models import Generation
from layers.ownership import Snapshot, resolve_owner
from layers.resolver import resolve_sql
from layers.settings import Settings
from layers.versioning import in_generation, live, valid_at
from layers.workflow import OPEN
from spatial.errors import Conflict, InvalidInput, NotFound

WHOLE_SHARE = 0.99  # a grid this much inside one zone is whole (layers.lookup.alignment)


def require_draft(session: Session, gen_id: int) -> Generation:
    """The draft gen_id: 404 if there is no such generation, 409 if it was activated."""
    gen = session.get(Generation, gen_id)
    if gen is None:
        raise NotFound(f"generation {gen_id} does not exist")
    _check_draft(gen_id, gen.label, gen.active, gen.activated_at)
    return gen


def _check_draft(gen_id: int, label: str | None, active: bool, activated_at: Any) -> None:
    if activated_at is not None:
        state = "the active generation" if active else "a past generation"
        raise Conflict(f"generation {gen_id} ({label!r}) is {state}, not a draft: an "
                       "impact preview compares a draft with the active generation")


def _draft_and_active(session: Session, gen_id: int) -> int:
    """Checks gen_id is a draft (404, 409) and answers the active generation, in one
    statement."""
    rows = session.execute(text(
        "SELECT id, label, active, activated_at FROM generation WHERE id = :g OR active"),
        {"g": gen_id}).all()
    mine = next((r for r in rows if r.id == gen_id), None)
    if mine is None:
        raise NotFound(f"generation {gen_id} does not exist")
    _check_draft(gen_id, mine.label, mine.active, mine.activated_at)
    found = next((r.id for r in rows if r.active), None)
    if found is None:
        raise Conflict(f"no generation is active: draft {gen_id} has nothing to be compared "
                       "with (activate it instead)")
    return int(found)


# ---------------------------------------------------------------- grid chains


def _chains(session: Session, gen_id: int, codes: Iterable[str]
            ) -> dict[str, list[dict[str, Any]]]:
    """Each code's unit and ancestors in a generation, coarse to fine (the index's chain
    form: code, name, level, level_key)."""
    return _chains_in(session, {gen_id: codes}).get(gen_id, {})


def _chains_in(session: Session, wanted: dict[int, Iterable[str]]
               ) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """_chains for several generations at once (one statement): {gen: {code: chain}}."""
    pairs = sorted({(g, c) for g, codes in wanted.items() for c in codes})
    if not pairs:
        return {}
    rows = session.execute(text(f"""
        WITH RECURSIVE w AS (
            SELECT * FROM unnest(CAST(:gens AS int[]), CAST(:codes AS text[])) AS w(g, code)),
        chain AS (
            SELECT w.g, u.code AS leaf, u.code, u.name, u.level, u.parent_code, 0 AS depth
              FROM w JOIN grid_unit u ON u.code = w.code AND {in_generation('u', 'w.g')}
            UNION ALL
            SELECT c.g, c.leaf, u.code, u.name, u.level, u.parent_code, c.depth + 1
              FROM grid_unit u JOIN chain c ON u.code = c.parent_code
             WHERE {in_generation('u', 'c.g')} AND c.depth < 16)
        SELECT c.g, c.leaf, c.code, c.name, c.level, lv.key AS level_key
          FROM chain c JOIN grid_level lv ON lv.rank = c.level
         ORDER BY c.g, c.leaf, c.level"""),
        {"gens": [g for g, _ in pairs], "codes": [c for _, c in pairs]})
    out: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[int(r.g)][r.leaf].append({"code": r.code, "name": r.name, "level": int(r.level),
                                      "level_key": r.level_key})
    return {g: dict(v) for g, v in out.items()}


def _street(chain: Sequence[dict[str, Any]] | None) -> str | None:
    return next((u["code"] for u in chain or () if u["level"] == 2), None)


# ---------------------------------------------------------------- resolving points


class DraftResolver:
    """Points in the changed area resolved against the draft's finest units there (its new
    rows and the unchanged rows touching them): ST_Covers, lowest code wins, as
    layers.resolver does; points none of them covers go to PostGIS (resolve_sql)."""

    def __init__(self, session: Session, gen_id: int, finest: int,
                 rows: Sequence[UnitRow]) -> None:
        self.session, self.gen_id, self.finest = session, gen_id, finest
        rows = sorted((r for r in rows if r.level == finest), key=lambda r: r.code)
        self.codes = [r.code for r in rows]
        self.tree = shapely.STRtree([r.geom for r in rows]) if rows else None

    def resolve(self, lon: np.ndarray, lat: np.ndarray) -> list[str | None]:
        """The draft's finest grid code at each point (None outside every grid)."""
        n = len(lon)
        best = np.full(n, -1, dtype=np.int64)
        if self.tree is not None and n:
            pts = shapely.points(lon, lat)
            pi, ui = self.tree.query(pts, predicate="covered_by")
            if len(pi):
                order = np.lexsort((ui, pi))  # per point, the lowest code (rows by code)
                pi, ui = pi[order], ui[order]
                first = np.ones(len(pi), dtype=bool)
                first[1:] = pi[1:] != pi[:-1]
                best[pi[first]] = ui[first]
        out: list[str | None] = [self.codes[int(b)] if b >= 0 else None for b in best]
        rest = np.flatnonzero(best < 0)
        if rest.size:
            found = resolve_sql(self.session, self.gen_id, lon[rest], lat[rest], self.finest)
            for i, code in zip(rest, found, strict=True):
                out[int(i)] = code
        return out


def _in_area(lon: np.ndarray, lat: np.ndarray, area: BaseGeometry | None) -> np.ndarray:
    """Which points the changed area covers (its boundary included)."""
    if area is None or not len(lon):
        return np.zeros(len(lon), dtype=bool)
    shapely.prepare(area)
    return np.asarray(shapely.covers(area, shapely.points(lon, lat)), dtype=bool)


def _kept(rows: list[Any], area: BaseGeometry | None, watched: list[str]
          ) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The rows (with lon, lat, grid_code) in the changed area or on a watched grid, and
    their coordinates."""
    lon = np.array([r.lon for r in rows], dtype=np.float64)
    lat = np.array([r.lat for r in rows], dtype=np.float64)
    codes = set(watched)
    keep = _in_area(lon, lat, area) | np.array([r.grid_code in codes for r in rows],
                                               dtype=bool)
    return [r for r, k in zip(rows, keep, strict=True) if k], lon[keep], lat[keep]


# ---------------------------------------------------------------- the preview


def impact(session: Session, gen_id: int, settings: Settings, *,
           snapshot: Snapshot | None = None, at: datetime | None = None) -> dict[str, Any]:
    """What activating draft gen_id would change, against the active generation (the JSON
    of GET /generations/{id}/impact). snapshot: the ownership layers to resolve owners
    with (default: read now; the API passes its live one); at: the time of the layers
    (patrol, roles, zones; default now). 404 unknown generation, 409 not a draft."""
    t0 = time.perf_counter()
    against = _draft_and_active(session, gen_id)
    when = at or datetime.now(UTC)
    d = lineage.diff(session, gen_id, settings, against=against)
    levels = session.execute(text(  # the levels, and the finest the draft has (one trip)
        "SELECT rank, key, (SELECT max(u.level) FROM grid_unit u WHERE "
        f"{in_generation('u')}) AS finest FROM grid_level"), {"g": gen_id}).all()
    level_keys: dict[int, str] = {int(r.rank): r.key for r in levels}
    finest = int((levels[0].finest if levels else None) or 0)
    units = _units(d, level_keys)
    new_codes = {r.code for r in d.new}
    old_codes = {r.code for r in d.old}
    ended = sorted(old_codes - new_codes)
    created = sorted(new_codes - old_codes)
    fine_old = [r for r in d.old if r.level == finest]
    fine_new = [r for r in d.new if r.level == finest]
    changed_area = (shapely.union_all([r.geom for r in fine_old + fine_new])
                    if fine_old or fine_new else None)
    resolver = DraftResolver(session, gen_id, finest, fine_new + d.near)
    watched = sorted({r.code for r in fine_old} | {r.code for r in fine_new})
    ids = [r.id for r in fine_old + fine_new]

    # the grid a new finest unit takes its patrol, roles and specialists from
    inherit = _inheritance(d, finest)
    snap = snapshot
    if snap is None:
        from layers.ownership_store import load_snapshot
        snap = load_snapshot(session, settings)
    cases = _cases(session, settings, gen_id, against, resolver, changed_area, ids, watched,
                   inherit, snap)
    assets = _assets(session, gen_id, resolver, changed_area, ids, watched)
    patrol = _patrol(session, d, finest, ended, inherit, when)
    roles = _roles(session, ended, d, inherit, when)
    align = _alignment(session, settings, d, finest, when)
    streets = _streets(session, gen_id, against, d, cases, assets)
    summary = {
        "units_changed": sum(1 for u in units if u["change"] not in ("new", ENDED)
                             and u["code"] in old_codes),
        "units_new": len(created), "units_ended": len(ended),
        "open_cases_moved": len(cases), "assets_moved": len(assets),
        "unpatrolled": len(patrol["unpatrolled"]),
    }
    return {
        "generation": gen_id, "against": against,
        "took_ms": round((time.perf_counter() - t0) * 1000, 2),
        "summary": summary, "units": units, "cases": cases, "assets": assets,
        "patrol": patrol, "roles": roles, "alignment": align, "streets": streets,
        "changes": _changes(d),
    }


def _units(d: Diff, level_keys: dict[int, str]) -> list[dict[str, Any]]:
    """Per changed, new or ended code: its change, old and new area, and where the area
    came from (shares of the new unit's area) and went (shares of the old unit's)."""
    links_of, succ_of = d.links_of(), d.successors_of()
    old_by_code = {r.code: r for r in d.old}
    new_by_code = {r.code: r for r in d.new}
    out = []
    for code in sorted(set(old_by_code) | set(new_by_code),
                       key=lambda c: ((new_by_code.get(c) or old_by_code[c]).level, c)):
        new, old = new_by_code.get(code), old_by_code.get(code)
        row = new or old
        assert row is not None
        out.append({
            "code": code, "name": row.name, "level": row.level,
            "level_key": level_keys.get(row.level, str(row.level)),
            "change": d.kinds[new.id] if new is not None else ENDED,
            "old_area_m2": round(old.area_m2, 2) if old is not None else None,
            "new_area_m2": round(new.area_m2, 2) if new is not None else None,
            "from": [{"code": x.predecessor_code, "area_m2": round(x.area_m2, 2),
                      "share": round(x.share_of_unit, 6)}
                     for x in (links_of.get(new.id, []) if new is not None else [])],
            "to": [{"code": x.code, "area_m2": round(x.area_m2, 2),
                    "share": round(x.share_of_predecessor, 6)}
                   for x in (succ_of.get(old.id, []) if old is not None else [])],
        })
    return out


def _inheritance(d: Diff, finest: int) -> dict[str, str | None]:
    """Each new finest code (not in the active generation) and the code of its predecessor
    with the largest share of its area (None: a unit with no predecessor)."""
    old_codes = {r.code for r in d.old} | {r.code for r in d.near}
    links_of = d.links_of()
    out: dict[str, str | None] = {}
    for r in d.new:
        if r.level != finest or r.code in old_codes:
            continue
        links: list[Link] = links_of.get(r.id, [])
        out[r.code] = links[0].predecessor_code if links else None
    return out


def _cases(session: Session, settings: Settings, gen_id: int, against: int,
           resolver: DraftResolver, area: BaseGeometry | None, ids: list[int],
           watched: list[str], inherit: dict[str, str | None],
           snap: Snapshot) -> list[dict[str, Any]]:
    """Open cases in the changed area (or stored on a changed grid) whose grid or street
    the draft would change, with the answer a re-resolution would store."""
    if not ids:
        return []
    rows = session.execute(text("""
        SELECT c.ref, c.status, c.category_code, c.grid_code, c.street_code,
               c.owner_department, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat
          FROM "case" c
         WHERE c.id = ANY(ARRAY(  -- an array: the rows are then read by their key
                   SELECT c2.id FROM grid_unit u JOIN "case" c2 ON c2.geom && u.geom
                    WHERE u.id = ANY(:ids) AND c2.status = ANY(:open)
                   UNION
                   SELECT c3.id FROM "case" c3
                    WHERE c3.grid_code = ANY(:codes) AND c3.status = ANY(:open)))
         ORDER BY c.ref"""), {"ids": ids, "codes": watched, "open": list(OPEN)}).all()
    if not rows:
        return []
    rows, lon, lat = _kept(list(rows), area, watched)
    grids_new = resolver.resolve(lon, lat)
    chains = _chains(session, gen_id, [g for g in grids_new if g])
    out = []
    for r, x, y, g in zip(rows, lon, lat, grids_new, strict=True):
        chain = chains.get(g or "", [])
        street = _street(chain)
        if g == r.grid_code and street == r.street_code:
            continue
        owner = r.owner_department
        if r.status in REASSIGNABLE:
            owner = _owner(snap, settings, float(x), float(y), r.category_code, chain,
                           inherit)
        out.append({"ref": r.ref, "status": r.status, "category": r.category_code,
                    "lon": float(x), "lat": float(y),
                    "old": {"grid": r.grid_code, "street": r.street_code,
                            "owner": r.owner_department},
                    "new": {"grid": g, "street": street, "owner": owner}})
    return out


def _owner(snap: Snapshot, settings: Settings, lon: float, lat: float, category: str,
           chain: list[dict[str, Any]], inherit: dict[str, str | None]) -> str | None:
    """The owner department the rules would find with the draft's chain; a new grid asks
    for the specialists of the grid it inherits its roles from."""
    if chain and chain[-1]["code"] in inherit:
        src = inherit[chain[-1]["code"]]
        chain = [*chain[:-1], {**chain[-1], "code": src}] if src else chain
    try:
        found = resolve_owner(snap, lon, lat, category, chain, settings)
    except InvalidInput:  # a category retired since the report: no rule answers for it
        return None
    return (found.get("owner") or {}).get("code")


def _assets(session: Session, gen_id: int, resolver: DraftResolver,
            area: BaseGeometry | None, ids: list[int], watched: list[str]
            ) -> list[dict[str, Any]]:
    """Current assets whose grid (the finest grid at a point on them, as
    layers.responsibility locates them) the draft would change."""
    if not ids:
        return []
    rows = session.execute(text(f"""
        SELECT a.code, a.kind, a.grid_code, ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat
          FROM asset a, LATERAL (SELECT ST_PointOnSurface(a.geom) AS pt) p
         WHERE a.id = ANY(ARRAY(  -- an array: the rows are then read by their key
                   SELECT a2.id FROM grid_unit u JOIN asset a2 ON a2.geom && u.geom
                    WHERE u.id = ANY(:ids) AND {live('a2')}
                   UNION
                   SELECT a3.id FROM asset a3
                    WHERE a3.grid_code = ANY(:codes) AND {live('a3')}))
         ORDER BY a.code"""), {"ids": ids, "codes": watched}).all()
    if not rows:
        return []
    rows, lon, lat = _kept(list(rows), area, watched)
    found = resolver.resolve(lon, lat)
    return [{"code": r.code, "kind": r.kind, "lon": float(r.lon), "lat": float(r.lat),
             "old_grid": r.grid_code, "new_grid": g}
            for r, g in zip(rows, found, strict=True) if g != r.grid_code]


def _patrol(session: Session, d: Diff, finest: int, ended: list[str],
            inherit: dict[str, str | None], when: datetime) -> dict[str, Any]:
    """Assignments on ended grids; what each new finest grid would inherit from its
    predecessor with the largest share; new finest grids left with no patrol."""
    codes = sorted(set(ended) | {c for c in inherit.values() if c})
    rows = session.execute(text(f"""
        SELECT p.grid_code, p.team_code, p.shift FROM patrol_assignment p
         WHERE p.grid_code = ANY(:codes) AND {valid_at('p')}
         ORDER BY p.grid_code, p.team_code, p.shift"""), {"codes": codes, "at": when}).all()
    teams: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.team_code not in teams[r.grid_code]:
            teams[r.grid_code].append(r.team_code)
    ending = [{"grid_code": r.grid_code, "team_code": r.team_code, "shift": r.shift}
              for r in rows if r.grid_code in set(ended)]
    inherited = [{"code": code, "from": src, "teams": teams.get(src or "", [])}
                 for code, src in sorted(inherit.items())]
    return {"ending": ending, "inherited": inherited,
            "unpatrolled": [i["code"] for i in inherited if not i["teams"]]}


def _roles(session: Session, ended: list[str], d: Diff, inherit: dict[str, str | None],
           when: datetime) -> dict[str, Any]:
    """Grid roles (1 + X + Y) on ended units, and what each new unit would inherit from its
    predecessor with the largest share (at every level; finest from `inherit`)."""
    old_codes = {r.code for r in d.old} | {r.code for r in d.near}
    links_of = d.links_of()
    src: dict[str, str] = {}
    for r in d.new:
        if r.code in old_codes:
            continue
        main = inherit.get(r.code) if r.code in inherit else (
            links_of[r.id][0].predecessor_code if links_of.get(r.id) else None)
        if main:
            src[r.code] = main
    codes = sorted(set(ended) | set(src.values()))
    rows = session.execute(text(f"""
        SELECT r.grid_code, r.role, r.name, r.department_code FROM grid_role r
         WHERE r.grid_code = ANY(:codes) AND {valid_at('r')}
         ORDER BY r.grid_code, r.role, r.name"""), {"codes": codes, "at": when}).all()
    by_grid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in rows:
        by_grid[x.grid_code].append({"role": x.role, "name": x.name,
                                     "department_code": x.department_code})
    ending = [{"grid_code": g, **x} for g in ended for x in by_grid.get(g, [])]
    inherited = [{"code": c, "from": s, "roles": by_grid[s]} for c, s in sorted(src.items())
                 if by_grid.get(s)]
    return {"ending": ending, "inherited": inherited}


@dataclass(frozen=True)
class _Aligned:
    """A department's alignment with one generation, as the preview needs it: whether each
    finest grid lies wholly in one zone, the number of finest grids, the score."""

    whole: dict[str, bool]
    total: int
    score: float


# alignment of a generation with a department's zones: an activated generation's rows and
# a zone row never change (edits add rows), so the answer is kept per (department,
# generation, the zone rows valid, threshold); a few dozen entries at most
_ALIGNED: OrderedDict[tuple[Any, ...], _Aligned] = OrderedDict()
_ALIGNED_MAX = 32
_ALIGNED_LOCK = threading.Lock()


def _aligned(session: Session, settings: Settings, dept: str, gen_id: int, when: datetime,
             zone_ids: tuple[int, ...], whole_share: float) -> _Aligned:
    """layers.lookup.alignment of an activated generation, kept (see _ALIGNED)."""
    key = (session.get_bind().engine.url.render_as_string(), dept, gen_id, zone_ids,
           whole_share)
    with _ALIGNED_LOCK:
        got = _ALIGNED.get(key)
        if got is not None:
            _ALIGNED.move_to_end(key)
            return got
    a = alignment(session, dept, settings, gen_id, when, whole_share=whole_share)
    got = _Aligned({g["grid"]: bool(g["whole"]) for g in a["by_grid"]}, int(a["grids"]),
                   float(a["score"]))
    with _ALIGNED_LOCK:
        _ALIGNED[key] = got
        while len(_ALIGNED) > _ALIGNED_MAX:
            _ALIGNED.popitem(last=False)
    return got


def prepare(session: Session, settings: Settings, *, at: datetime | None = None) -> int:
    """Compute the active generation's alignment with every department's zones ahead of
    the first preview (it is most of a cold preview's time: ~0.5-1 s on the demo city);
    e.g. from a background thread after an activation. Returns the departments done."""
    when = at or datetime.now(UTC)
    active = session.scalar(text("SELECT id FROM generation WHERE active"))
    if active is None:
        return 0
    depts = zone_departments(session, when)
    for dept in depts:
        zones = session.scalars(text(
            f"SELECT z.id FROM department_zone z WHERE z.department_code = :dept "
            f"AND {valid_at('z')} ORDER BY z.id"), {"dept": dept, "at": when}).all()
        _aligned(session, settings, dept, int(active), when, tuple(int(z) for z in zones),
                 WHOLE_SHARE)
    return len(depts)


def _whole(session: Session, settings: Settings, dept: str, ids: list[int], when: datetime,
           whole_share: float) -> dict[str, bool]:
    """For some grid rows, whether each lies wholly in one of the department's zones: the
    rule of layers.lookup.alignment (largest share of its area, to 4 decimals)."""
    if not ids:
        return {}
    rows = session.execute(text(f"""
        SELECT u.code, u.area_m2,
               ST_Area(ST_Transform(ST_Intersection(u.geom, z.geom), :srid)) AS shared_m2
          FROM grid_unit u
          JOIN department_zone z ON z.geom && u.geom AND ST_Intersects(z.geom, u.geom)
         WHERE u.id = ANY(:ids) AND z.department_code = :dept AND {valid_at('z')}"""),
        {"ids": ids, "dept": dept, "at": when, "srid": settings.metric_srid}).all()
    best: dict[str, float] = {}
    for r in rows:
        if r.shared_m2 > 0:
            best[r.code] = max(best.get(r.code, 0.0), round(r.shared_m2 / r.area_m2, 4))
    return {code: share >= whole_share for code, share in best.items()}


def _alignment(session: Session, settings: Settings, d: Diff, finest: int,
               when: datetime, whole_share: float = WHOLE_SHARE) -> list[dict[str, Any]]:
    """Each department's 多格合一 score before (layers.lookup.alignment of the active
    generation) and after: the same figures with the changed finest grids taken out and
    the draft's new ones, judged by the same rule, put in."""
    old = [r for r in d.old if r.level == finest]
    new = [r for r in d.new if r.level == finest]
    out = []
    for dept in zone_departments(session, when):
        zones = session.execute(text(
            f"SELECT z.id, z.layer FROM department_zone z WHERE z.department_code = :dept "
            f"AND {valid_at('z')} ORDER BY z.id"), {"dept": dept, "at": when}).all()
        before = _aligned(session, settings, dept, d.against, when,
                          tuple(int(z.id) for z in zones), whole_share)
        whole = dict(before.whole)
        for r in old:
            whole.pop(r.code, None)
        whole.update(_whole(session, settings, dept, [r.id for r in new], when, whole_share))
        total = before.total - len(old) + len(new)
        after = round(sum(whole.values()) / total, 4) if total else 0.0
        out.append({"department": dept,
                    "layer": ", ".join(sorted({z.layer for z in zones})),
                    "before": before.score, "after": after})
    return out


def _streets(session: Session, gen_id: int, against: int, d: Diff,
             cases: list[dict[str, Any]], assets: list[dict[str, Any]]
             ) -> list[dict[str, Any]]:
    """Per street (level 2) touched: changed units in it (before or after), open cases and
    assets moving into or out of it."""
    new_codes = {r.code for r in d.new}
    old_codes = {r.code for r in d.old}
    asset_grids_old = {a["old_grid"] for a in assets if a["old_grid"]}
    asset_grids_new = {a["new_grid"] for a in assets if a["new_grid"]}
    both = _chains_in(session, {gen_id: new_codes | asset_grids_new,
                                against: old_codes | asset_grids_old})
    chains_new, chains_old = both.get(gen_id, {}), both.get(against, {})
    names: dict[str, str] = {}
    units: dict[str, set[str]] = defaultdict(set)
    for chains, codes in ((chains_new, new_codes), (chains_old, old_codes)):
        for code in codes:
            chain = chains.get(code, [])
            for u in chain:
                if u["level"] == 2:
                    names.setdefault(u["code"], u["name"])
                    units[u["code"]].add(code)
    n_cases: dict[str, int] = defaultdict(int)
    for c in cases:
        for s in {c["old"]["street"], c["new"]["street"]} - {None}:
            n_cases[s] += 1
    n_assets: dict[str, int] = defaultdict(int)
    for a in assets:
        streets = {_street(chains_old.get(a["old_grid"] or "")),
                   _street(chains_new.get(a["new_grid"] or ""))} - {None}
        for s in streets:
            assert s is not None
            n_assets[s] += 1
    missing = (set(n_cases) | set(n_assets)) - set(names)
    if missing:
        names.update(dict(session.execute(text(
            "SELECT u.code, u.name FROM grid_unit u WHERE u.code = ANY(:c) "
            f"AND ({in_generation('u')} OR {in_generation('u', ':a')})"),
            {"c": sorted(missing), "g": gen_id, "a": against}).all()))
    return [{"code": s, "name": names.get(s), "units_changed": len(units.get(s, ())),
             "cases_moved": n_cases.get(s, 0), "assets_moved": n_assets.get(s, 0)}
            for s in sorted(set(units) | set(n_cases) | set(n_assets))]


def _feature_geometry(g: BaseGeometry) -> orjson.Fragment:
    rounded = shapely.transform(g, lambda xy: np.round(xy, 7))
    return orjson.Fragment(shapely.to_geojson(rounded))


def _changes(d: Diff) -> dict[str, Any]:
    """The outlines of every changed, new and ended unit: old rows (side old) and new rows
    (side new), as a GeoJSON FeatureCollection."""
    kind_of = {r.code: d.kinds[r.id] for r in d.new}
    feats = [(r, "old", kind_of.get(r.code, ENDED)) for r in d.old]
    feats += [(r, "new", d.kinds[r.id]) for r in d.new]
    feats.sort(key=lambda f: (f[0].level, f[0].code, f[1] != "old"))
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f"{side}:{r.code}",
         "properties": {"code": r.code, "name": r.name, "level": r.level, "side": side,
                        "change": change},
         "geometry": _feature_geometry(r.geom)} for r, side, change in feats]}
