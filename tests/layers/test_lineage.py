"""Grid lineage on the demo city (real PostGIS): a draft made with grids.load_generation in
which one grid is split by a line, two siblings merged, the edge between two grids moved
and a grid moved to another community; the links' areas and shares agree with PostGIS's
ST_Area(ST_Intersection) in the metric CRS, the kinds are named, record is idempotent and
walk follows the change both ways once the draft is activated (never before)."""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import shapely
from shapely import LineString
from shapely.geometry.base import BaseGeometry
from shapely.ops import split as shapely_split
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import drafts, grids, lineage
from layers.grids import UnitInput
from layers.models import Generation
from layers.settings import Settings
from layers.versioning import in_generation
from spatial.coverage import areal
from spatial.errors import InvalidInput, NotFound

EDGE_SHIFT_DEG = 0.0003  # about 30 m: how far the moved edge goes into its neighbour


@dataclass
class DemoDraft:
    """A draft of the demo city and what was done in it."""

    draft: Generation
    active: int
    split: str  # the grid split in two
    halves: tuple[str, str]  # its parts, west then east
    merged: tuple[str, str]  # the first keeps its code, the second ends
    edge: tuple[str, str]  # the first takes a strip of the second
    moved: str  # the grid moved to another community
    moved_to: str  # its new code
    communities: tuple[str, str]  # the moved grid's old and new community
    units: list[UnitInput]


def _shared(a: BaseGeometry, b: BaseGeometry) -> float:
    """Length (degrees) of the boundary two polygons share."""
    return float(shapely.intersection(a.boundary, b.boundary).length)


def _next_serials(children: list[str], parent: str, n: int) -> list[str]:
    top = max(int(c[len(parent):]) for c in children)
    return [f"{parent}{top + k:03d}" for k in range(1, n + 1)]


def active_city(session: Session) -> tuple[Generation, list[UnitInput], dict[str, UnitInput],
                                           dict[str, list[str]]]:
    """The active generation, its units, them by code, and each parent's finest children."""
    active = grids.active_generation(session)
    assert active is not None
    units = grids.generation_units(session, active.id)
    finest = max(u.level for u in units)
    kids: dict[str, list[str]] = defaultdict(list)
    for u in units:
        if u.level == finest and u.parent_code:
            kids[u.parent_code].append(u.code)
    return active, units, {u.code: u for u in units}, kids


def demo_draft(session: Session, settings: Settings, *,
               prefer: dict[str, int] | None = None) -> DemoDraft:
    """A draft of the active demo city with four edits in four different communities (of
    at least 4 grids each), in code order or the most `prefer`red communities and grids
    first."""
    active, units, by_code, kids = active_city(session)
    rank = prefer or {}
    big = sorted((c for c, k in kids.items() if len(k) >= 4), key=lambda c: (-rank.get(c, 0), c))
    geom = {c: u.geometry for c, u in by_code.items()}

    def ranked(community: str) -> list[str]:
        return sorted(kids[community], key=lambda c: (-rank.get(c, 0), c))

    def adjacent_pair(community: str) -> tuple[str, str]:
        k = ranked(community)
        for i, a in enumerate(k):
            for b in k[i + 1:]:
                if _shared(geom[a], geom[b]) > 0.001:  # ~100 m of common edge
                    return a, b
        raise AssertionError(f"no adjacent grids in {community}")

    ca, cb, cc = big[0], big[1], big[2]
    used = {ca, cb, cc}
    # a grid on the edge of its community, next to a sibling community of the same street
    moved = moved_from = moved_into = None
    for cd in big[3:]:
        for g in ranked(cd):
            for ce in big:
                if ce in used or ce == cd or by_code[ce].parent_code != by_code[cd].parent_code:
                    continue
                if _shared(geom[g], geom[ce]) > 0.001:
                    moved, moved_from, moved_into = g, cd, ce
                    break
            if moved:
                break
        if moved:
            break
    assert moved and moved_from and moved_into, "no grid to move between communities"

    new_geoms: dict[str, BaseGeometry] = {}
    added: list[UnitInput] = []
    removed: set[str] = set()
    # 1. split the first grid of community a by a north-south line through its centre
    g1 = ranked(ca)[0]
    shape = geom[g1]
    cx = shape.centroid.x
    _, y0, _, y1 = shape.bounds
    pieces = shapely_split(shape, LineString([(cx, y0 - 0.01), (cx, y1 + 0.01)])).geoms
    west = areal(shapely.union_all([p for p in pieces if p.centroid.x < cx]))
    east = areal(shapely.union_all([p for p in pieces if p.centroid.x >= cx]))
    h1, h2 = _next_serials(kids[ca], ca, 2)
    base = by_code[g1]
    added += [replace(base, code=h1, name=base.name + "西", geometry=west),
              replace(base, code=h2, name=base.name + "东", geometry=east)]
    removed.add(g1)
    # 2. merge two adjacent grids of community b (the first keeps its code)
    m1, m2 = adjacent_pair(cb)
    new_geoms[m1] = areal(shapely.union_all([geom[m1], geom[m2]]))
    removed.add(m2)
    # 3. move the edge between two grids of community c into the second one
    e1, e2 = adjacent_pair(cc)
    strip = shapely.intersection(geom[e2], shapely.buffer(geom[e1], EDGE_SHIFT_DEG))
    new_geoms[e1] = areal(shapely.union_all([geom[e1], strip]))
    new_geoms[e2] = areal(shapely.difference(geom[e2], strip))
    # 4. move a grid to the neighbouring community: new code, both communities follow
    (moved_to,) = _next_serials(kids[moved_into], moved_into, 1)
    mv = by_code[moved]
    added.append(replace(mv, code=moved_to, parent_code=moved_into,
                         name=mv.name + "(迁)"))
    removed.add(moved)
    new_geoms[moved_from] = areal(shapely.union_all(
        [geom[c] for c in kids[moved_from] if c != moved]))
    new_geoms[moved_into] = areal(shapely.union_all(
        [geom[c] for c in kids[moved_into]] + [geom[moved]]))
    out = [replace(u, geometry=new_geoms[u.code]) if u.code in new_geoms else u
           for u in units if u.code not in removed] + added
    draft = grids.load_generation(session, out, settings, label="lineage test draft",
                                  activate=False)
    return DemoDraft(draft, active.id, g1, (h1, h2), (m1, m2), (e1, e2), moved, moved_to,
                     (moved_from, moved_into), out)


# ---------------------------------------------------------------- the truth, in PostGIS


def postgis_links(session: Session, draft: int, active: int, settings: Settings
                  ) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(new code, predecessor code) -> (area, share of predecessor, share of unit), from
    ST_Area(ST_Intersection) in the metric CRS: every same-level overlap above the
    tolerance between a row only the draft has and a row of the active generation."""
    rows = session.execute(text(f"""
        SELECT n.code AS code, p.code AS pred, x.a,
               x.a / ST_Area(ST_Transform(p.geom, :srid)) AS sp,
               x.a / ST_Area(ST_Transform(n.geom, :srid)) AS su
          FROM grid_unit n
          JOIN grid_unit p ON p.level = n.level AND p.geom && n.geom
               AND {in_generation('p', ':a')}
          CROSS JOIN LATERAL (SELECT ST_Area(ST_Transform(ST_Intersection(n.geom, p.geom),
                                                          :srid)) AS a) x
         WHERE {in_generation('n', ':d')} AND NOT ({in_generation('n', ':a')})
           AND x.a > :tol"""),
        {"d": draft, "a": active, "srid": settings.metric_srid,
         "tol": settings.topology_tolerance_m2}).all()
    return {(r.code, r.pred): (float(r.a), float(r.sp), float(r.su)) for r in rows}


@pytest.fixture()
def demo(full_session: Session, settings: Settings) -> DemoDraft:
    return demo_draft(full_session, settings)


def test_kinds_match_the_migration() -> None:
    path = Path(__file__).resolve().parents[2] / "alembic/versions/0014_planning.py"
    spec = importlib.util.spec_from_file_location("m0014", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert tuple(mod.KINDS) == lineage.KINDS


def test_links_agree_with_postgis(full_session: Session, settings: Settings,
                                  demo: DemoDraft) -> None:
    links = lineage.compute(full_session, demo.draft.id, settings)
    truth = postgis_links(full_session, demo.draft.id, demo.active, settings)
    got = {(x.code, x.predecessor_code): x for x in links}
    assert set(got) == set(truth)
    for key, (a, sp, su) in truth.items():
        x = got[key]
        assert x.area_m2 == pytest.approx(a, rel=1e-6, abs=1e-3), key
        assert x.share_of_predecessor == pytest.approx(sp, rel=1e-6, abs=1e-9), key
        assert x.share_of_unit == pytest.approx(su, rel=1e-6, abs=1e-9), key


def _kind(links: list[lineage.Link], code: str) -> str:
    kinds = {x.kind for x in links if x.code == code}
    assert len(kinds) == 1, (code, kinds)
    return kinds.pop()


def test_each_edit_is_named(full_session: Session, settings: Settings,
                            demo: DemoDraft) -> None:
    d = lineage.diff(full_session, demo.draft.id, settings)
    links = d.links
    west, east = demo.halves
    by = defaultdict(list)
    for x in links:
        by[x.code].append(x)
    # split: each half comes wholly from the split grid, which went to both
    for half in (west, east):
        assert _kind(links, half) == "split"
        assert [x.predecessor_code for x in by[half]] == [demo.split]
        assert by[half][0].share_of_unit == pytest.approx(1.0, abs=1e-5)
    shares = sum(x.share_of_predecessor for x in by[west] + by[east])
    assert shares == pytest.approx(1.0, abs=1e-5)  # the cut's vertices, in metres
    # merge: the kept code took all of both
    keep, gone = demo.merged
    assert _kind(links, keep) == "merge"
    assert {x.predecessor_code: round(x.share_of_predecessor, 6) for x in by[keep]} == {
        keep: 1.0, gone: 1.0}
    # the edge: the first grid took a strip of the second, which kept the rest
    a, b = demo.edge
    assert _kind(links, a) == "redraw" and _kind(links, b) == "redraw"
    strip = next(x for x in by[a] if x.predecessor_code == b)
    assert 0 < strip.share_of_predecessor < 0.5
    rest = next(x for x in by[b] if x.predecessor_code == b)
    assert rest.share_of_predecessor + strip.share_of_predecessor == pytest.approx(1, abs=1e-6)
    # re-parent: same geometry, other code; the communities around it were redrawn
    assert _kind(links, demo.moved_to) == "reparent"
    assert [(x.predecessor_code, round(x.share_of_unit, 6)) for x in by[demo.moved_to]] == [
        (demo.moved, 1.0)]
    for c in demo.communities:
        assert _kind(links, c) == "redraw"
    assert {r.code for r in d.ended()} == {demo.split, gone, demo.moved}
    # nothing else changed
    assert {x.code for x in links} == {west, east, keep, a, b, demo.moved_to,
                                       *demo.communities}


def test_the_audit_log_names_the_kind(full_session: Session, settings: Settings,
                                      demo: DemoDraft) -> None:
    """An edit event naming a code in detail["to"] gives its kind (parents that followed
    are not named by it); a put is classified from geometry."""
    a, b = demo.edge
    drafts.record(full_session, demo.draft.id, "planner-x", "move", [a], **{
        "from": [a], "to": [a, demo.communities[0]], "parents": [demo.communities[0]]})
    drafts.record(full_session, demo.draft.id, "planner-x", "put", [b],
                  **{"from": [b], "to": [b], "parents": []})
    links = lineage.compute(full_session, demo.draft.id, settings)
    assert _kind(links, a) == "reparent"
    assert _kind(links, b) == "redraw"
    assert _kind(links, demo.communities[0]) == "redraw"


def test_attributes_only_and_new(full_session: Session, settings: Settings,
                                 demo: DemoDraft) -> None:
    """A new name on the same geometry is an attributes change; against an older
    generation nothing of it exists (compared with itself is refused)."""
    grids.discard_generation(full_session, demo.draft.id)
    target = next(u for u in demo.units if u.level == 4 and u.code not in (
        (*demo.halves, demo.moved_to)))
    units = grids.generation_units(full_session, demo.active)
    units = [replace(u, name=u.name + "(改名)") if u.code == target.code else u
             for u in units]
    draft = grids.load_generation(full_session, units, settings, label="rename",
                                  activate=False)
    links = lineage.compute(full_session, draft.id, settings)
    assert [(x.code, x.predecessor_code, x.kind) for x in links] == [
        (target.code, target.code, "attributes")]
    assert links[0].share_of_unit == pytest.approx(1.0)
    with pytest.raises(InvalidInput):
        lineage.compute(full_session, draft.id, settings, against=draft.id)
    with pytest.raises(NotFound):
        lineage.compute(full_session, draft.id, settings, against=999_999)


def _lineage_rows(session: Session, gen_id: int) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in session.execute(text(
        "SELECT u.code, p.code, l.kind, round(l.area_m2::numeric, 3), "
        "round(l.share_of_predecessor::numeric, 6), round(l.share_of_unit::numeric, 6) "
        "FROM grid_lineage l JOIN grid_unit u ON u.id = l.unit_id "
        "JOIN grid_unit p ON p.id = l.predecessor_id WHERE l.generation_id = :g "
        "ORDER BY 1, 2"), {"g": gen_id})]


def test_record_is_idempotent_and_walk_shows_only_activated(
        full_session: Session, settings: Settings, demo: DemoDraft) -> None:
    s, gen = full_session, demo.draft
    west, east = demo.halves
    n = lineage.record(s, gen.id, settings)
    first = _lineage_rows(s, gen.id)
    assert n == len(first) == len(lineage.compute(s, gen.id, settings))
    assert lineage.record(s, gen.id, settings) == n
    assert _lineage_rows(s, gen.id) == first
    # a draft's links never show in a walk, nor its new codes
    w = lineage.walk(s, demo.split)
    assert w["successors"] == [] and w["codes"] == [demo.split]
    with pytest.raises(NotFound):
        lineage.walk(s, west)
    assert lineage.walk(s, west, include_drafts=True)["predecessors"][0]["from"]["code"] == (
        demo.split)
    # activated: both ways, with the generations and shares
    grids.activate_generation(s, gen, settings)
    assert lineage.replaced_generation(s, gen.id) == demo.active
    assert lineage.record(s, gen.id, settings) == n  # called again by the activation
    w = lineage.walk(s, demo.split)
    succ = {st["to"]["code"]: st for st in w["successors"]}
    assert set(succ) == {west, east}
    for st in succ.values():
        assert st["generation"] == gen.id and st["kind"] == "split" and st["depth"] == 1
        assert st["from"] == {"code": demo.split, "level": 4, "generation_low": demo.active,
                              "generation_high": demo.active}
        assert st["to"]["generation_low"] == gen.id and st["to"]["generation_high"] is None
    assert sum(st["share_of_predecessor"] for st in succ.values()) == pytest.approx(1, abs=1e-5)
    back = lineage.walk(s, east)
    assert [(st["from"]["code"], st["kind"]) for st in back["predecessors"]] == [
        (demo.split, "split")]
    assert lineage.lineage_codes(s, demo.split) == sorted([demo.split, west, east])
    keep, gone = demo.merged
    assert lineage.lineage_codes(s, gone) == sorted([gone, keep])
    assert set(lineage.lineage_codes(s, keep)) == {keep, gone}
    assert lineage.lineage_codes(s, "999999999999999") == ["999999999999999"]
    moved = lineage.walk(s, demo.moved_to)
    assert [(st["from"]["code"], st["kind"]) for st in moved["predecessors"]] == [
        (demo.moved, "reparent")]
    assert moved["versions"][0]["parent_code"] == demo.communities[1]


def test_a_second_generation_walks_two_steps(full_session: Session, settings: Settings,
                                             demo: DemoDraft) -> None:
    """Split, activate, then split a half again: the walk from the first grid reaches
    the quarter at depth 2, and back from the quarter the first grid."""
    s = full_session
    west, _ = demo.halves
    grids.activate_generation(s, demo.draft, settings)
    lineage.record(s, demo.draft.id, settings)
    units = grids.generation_units(s, demo.draft.id)
    by = {u.code: u for u in units}
    shape = by[west].geometry
    cy = shape.centroid.y
    x0, _, x1, _ = shape.bounds
    pieces = shapely_split(shape, LineString([(x0 - 0.01, cy), (x1 + 0.01, cy)])).geoms
    north = areal(shapely.union_all([p for p in pieces if p.centroid.y >= cy]))
    south = areal(shapely.union_all([p for p in pieces if p.centroid.y < cy]))
    parent = by[west].parent_code
    assert parent
    siblings = [u.code for u in units if u.parent_code == parent]
    q1, q2 = _next_serials(siblings, parent, 2)
    units = [u for u in units if u.code != west] + [
        replace(by[west], code=q1, geometry=north), replace(by[west], code=q2, geometry=south)]
    gen2 = grids.load_generation(s, units, settings, label="second split")
    assert lineage.record(s, gen2.id, settings) == 2
    w = lineage.walk(s, demo.split)
    assert {(st["to"]["code"], st["depth"], st["generation"]) for st in w["successors"]} >= {
        (west, 1, demo.draft.id), (q1, 2, gen2.id), (q2, 2, gen2.id)}
    back = lineage.walk(s, q2)
    assert [(st["from"]["code"], st["depth"]) for st in back["predecessors"]] == [
        (west, 1), (demo.split, 2)]
    assert back["codes"] == sorted([q2, west, demo.split])
