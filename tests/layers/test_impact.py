"""The impact preview on the demo city with case history (real PostGIS): the draft of
tests/layers/test_lineage.py (a split, a merge, a moved edge, a grid moved to another
community); the open cases and assets it lists are exactly those PostGIS's ST_Covers
against the draft's rows moves, the new half of a split grid with no patrol is flagged,
the alignment after equals layers.lookup.alignment of the draft, and so on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import grids, impact
from layers.lookup import alignment
from layers.ownership import Snapshot
from layers.ownership_store import load_snapshot
from layers.settings import Settings
from layers.versioning import in_generation
from layers.workflow import OPEN
from spatial.errors import Conflict, NotFound
from tests.layers.test_lineage import DemoDraft, demo_draft


@pytest.fixture()
def history(history_session: Session, settings: Settings) -> Session:
    """The demo city with a year of cases."""
    return history_session


def busy_draft(session: Session, settings: Settings) -> DemoDraft:
    """The demo draft made in the communities with the most cases, every case in the
    grids it changes made open again (a year leaves few open), and the split grid's
    patrol assignments ended (so that its halves inherit none)."""
    busy = dict(session.execute(text(
        'SELECT g, count(*) FROM "case", LATERAL (VALUES (grid_code), (left(grid_code, 12))) '
        "x(g) WHERE grid_code IS NOT NULL GROUP BY 1")).all())
    d = demo_draft(session, settings, prefer={str(k): int(v) for k, v in busy.items()})
    changed = [d.split, *d.merged, *d.edge, d.moved]
    session.execute(text(
        """UPDATE "case" SET status = (ARRAY['accepted', 'dispatched', 'in_progress',
                                              'bounced', 'collected'])[1 + id % 5]
            WHERE grid_code = ANY(:codes) AND status <> ALL(:open)"""),
        {"codes": changed, "open": list(OPEN)})
    session.execute(text("UPDATE patrol_assignment SET valid_to = now() "
                         "WHERE grid_code = :c AND valid_to IS NULL"), {"c": d.split})
    return d


@pytest.fixture()
def snapshot(history: Session, settings: Settings) -> Snapshot:
    return load_snapshot(history, settings)


def _moved_cases(session: Session, d: DemoDraft) -> dict[str, tuple[Any, ...]]:
    """The truth: open cases whose finest grid (ST_Covers in the draft, lowest code) or
    street differs from the stored one, by PostGIS over every open case."""
    rows = session.execute(text(f"""
        SELECT c.ref, c.grid_code, c.street_code, g.code AS grid, st.parent_code AS street
          FROM "case" c
          LEFT JOIN LATERAL (
              SELECT u.code, u.parent_code FROM grid_unit u
               WHERE u.level = 4 AND {in_generation('u')} AND ST_Covers(u.geom, c.geom)
               ORDER BY u.code LIMIT 1) g ON true
          LEFT JOIN grid_unit st ON st.code = g.parent_code AND {in_generation('st')}
         WHERE c.status = ANY(:open)
           AND (g.code IS DISTINCT FROM c.grid_code
                OR st.parent_code IS DISTINCT FROM c.street_code)"""),
        {"g": d.draft.id, "open": list(OPEN)}).all()
    return {r.ref: (r.grid_code, r.street_code, r.grid, r.street) for r in rows}


def _moved_assets(session: Session, d: DemoDraft) -> dict[str, tuple[Any, ...]]:
    """The truth for current assets (a point on them, as their grid is located), within
    about 200 m of the grids the edits touched (all of the city's 150,000 would take a
    minute)."""
    edited = [d.split, *d.merged, *d.edge, d.moved]
    rows = session.execute(text(f"""
        WITH near AS (SELECT DISTINCT a.id FROM grid_unit u
                        JOIN asset a ON a.geom && ST_Expand(u.geom, 0.002)
                       WHERE u.code = ANY(:edited) AND {in_generation('u', ':a')})
        SELECT a.code, a.grid_code, g.code AS grid
          FROM asset a
          LEFT JOIN LATERAL (
              SELECT u.code FROM grid_unit u
               WHERE u.level = 4 AND {in_generation('u')}
                 AND ST_Covers(u.geom, ST_PointOnSurface(a.geom))
               ORDER BY u.code LIMIT 1) g ON true
         WHERE a.valid_to IS NULL AND a.id IN (SELECT id FROM near)
           AND g.code IS DISTINCT FROM a.grid_code"""),
        {"g": d.draft.id, "a": d.active, "edited": edited}).all()
    return {r.code: (r.grid_code, r.grid) for r in rows}


def test_impact_lists_exactly_what_moves(history: Session, settings: Settings,
                                         snapshot: Snapshot) -> None:
    s = history
    d = busy_draft(s, settings)
    out = impact.impact(s, d.draft.id, settings, snapshot=snapshot)
    assert out["generation"] == d.draft.id and out["against"] == d.active

    # cases: exactly the open ones PostGIS moves, each with its new grid and street
    truth = _moved_cases(s, d)
    assert len(truth) >= 10, "too few open cases in the edited grids to test"
    got = {c["ref"]: c for c in out["cases"]}
    assert set(got) == set(truth)
    for ref, (old_grid, old_street, grid, street) in truth.items():
        c = got[ref]
        assert c["old"]["grid"] == old_grid and c["old"]["street"] == old_street
        assert c["new"]["grid"] == grid and c["new"]["street"] == street
        assert c["status"] in OPEN
    moved_to = {c["new"]["grid"] for c in out["cases"]}
    assert moved_to <= {*d.halves, d.merged[0], *d.edge, d.moved_to}
    assert out["summary"]["open_cases_moved"] == len(truth)

    # assets: exactly those whose grid changes
    atruth = _moved_assets(s, d)
    assert atruth
    assets = {a["code"]: (a["old_grid"], a["new_grid"]) for a in out["assets"]}
    assert assets == atruth

    # patrol: the split grid had none left, so both halves are flagged; the moved grid's
    # teams go with it
    patrol = out["patrol"]
    assert set(patrol["unpatrolled"]) == set(d.halves)
    inherited = {i["code"]: i for i in patrol["inherited"]}
    assert set(inherited) == {*d.halves, d.moved_to}
    assert inherited[d.moved_to]["from"] == d.moved and inherited[d.moved_to]["teams"]
    teams = {r[0] for r in s.execute(text(
        "SELECT team_code FROM patrol_assignment WHERE grid_code = :c AND valid_to IS NULL"),
        {"c": d.moved})}
    assert set(inherited[d.moved_to]["teams"]) == teams
    ending = {(e["grid_code"], e["team_code"]) for e in patrol["ending"]}
    assert {g for g, _ in ending} == {d.merged[1], d.moved}  # the split grid had none
    assert out["summary"]["unpatrolled"] == 2
    # roles: the ended grids' roles end, the new ones inherit their predecessor's
    assert {r["grid_code"] for r in out["roles"]["ending"]} <= {d.split, d.merged[1], d.moved}
    assert {i["from"] for i in out["roles"]["inherited"]} <= {d.split, d.moved}

    # units: every change named, areas and shares of the lineage
    units = {u["code"]: u for u in out["units"]}
    assert units[d.split]["change"] == "ended" and units[d.split]["new_area_m2"] is None
    assert [t["code"] for t in units[d.split]["to"]] == sorted(
        d.halves, key=lambda c: -next(x["area_m2"] for x in units[d.split]["to"]
                                      if x["code"] == c))
    assert sum(t["share"] for t in units[d.split]["to"]) == pytest.approx(1, abs=1e-5)
    for h in d.halves:
        assert units[h]["change"] == "split" and units[h]["old_area_m2"] is None
    assert units[d.merged[0]]["change"] == "merge"
    assert units[d.merged[1]]["change"] == "ended"
    assert units[d.edge[0]]["change"] == units[d.edge[1]]["change"] == "redraw"
    assert units[d.edge[0]]["new_area_m2"] > units[d.edge[0]]["old_area_m2"]
    assert units[d.moved_to]["change"] == "reparent"
    assert out["summary"] | {"open_cases_moved": 0, "assets_moved": 0} == {
        "units_changed": 5, "units_new": 3, "units_ended": 3, "open_cases_moved": 0,
        "assets_moved": 0, "unpatrolled": 2}

    # alignment: before is the active generation's score, after the draft's
    now = datetime.now(UTC)
    assert out["alignment"]
    for a in out["alignment"]:
        assert a["before"] == alignment(s, a["department"], settings, d.active, now)["score"]
        assert a["after"] == alignment(s, a["department"], settings, d.draft.id, now)["score"]
        assert a["layer"]

    # streets: the edits' street(s), with the cases and assets counted there
    streets = {st["code"]: st for st in out["streets"]}
    assert streets
    assert sum(st["cases_moved"] for st in streets.values()) >= len(truth)
    assert all(st["name"] for st in streets.values())
    assert sum(st["units_changed"] for st in streets.values()) >= len(units)

    # the outlines: old side for every row it replaces, new side for every new row
    feats = out["changes"]["features"]
    sides = {(f["properties"]["code"], f["properties"]["side"]) for f in feats}
    assert (d.split, "old") in sides and (d.halves[0], "new") in sides
    assert (d.split, "new") not in sides
    assert all(f["geometry"] is not None for f in feats)
    assert out["took_ms"] > 0


def test_impact_of_a_generation_that_is_no_draft(history_session: Session,
                                                 settings: Settings) -> None:
    active = grids.active_generation(history_session)
    assert active is not None
    with pytest.raises(Conflict, match="not a draft"):
        impact.impact(history_session, active.id, settings)
    with pytest.raises(NotFound):
        impact.impact(history_session, 2_000_000_000, settings)


def test_an_attributes_only_draft_moves_nothing(history: Session, settings: Settings,
                                                snapshot: Snapshot) -> None:
    """A renamed grid: one unit changed, no case, asset or patrol moves."""
    s = history
    active = grids.active_generation(s)
    assert active is not None

    units = grids.generation_units(s, active.id)
    target = next(u for u in units if u.level == 4)
    units = [u if u.code != target.code else type(u)(**{**u.__dict__, "name": "新名字"})
             for u in units]
    draft = grids.load_generation(s, units, settings, label="rename", activate=False)
    impact._ALIGNED.clear()
    assert impact.prepare(s, settings) == len(impact.zone_departments(s, datetime.now(UTC)))
    assert impact._ALIGNED  # the active generation's alignment, ready for the preview
    out = impact.impact(s, draft.id, settings, snapshot=snapshot)
    assert [(u["code"], u["change"]) for u in out["units"]] == [(target.code, "attributes")]
    assert out["cases"] == [] and out["assets"] == []
    assert out["patrol"] == {"ending": [], "inherited": [], "unpatrolled": []}
    assert all(a["before"] == a["after"] for a in out["alignment"])
