"""A planner's whole path through the API on the demo city with a year of cases (real
PostGIS): POST /generations makes a draft; merge, redraw and move edit it (each answered
with its validation); the impact preview lists exactly the open cases whose grid changes
(PostGIS's ST_Covers answer in the draft); POST /generations/{id}/activate with rehome then
re-resolves exactly those cases, each to that answer, and leaves every other case as it
was; /resolve answers the new grids on both
sides of the redrawn edge; /grids/{code}/lineage names each change. (The split's path is
tests/api/test_activation.py.)"""

from __future__ import annotations

from typing import Any

import shapely
from fastapi.testclient import TestClient
from shapely.geometry import mapping
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth import create_token
from layers.settings import Settings
from layers.workflow import OPEN
from tests.api.test_activation import _new_grid, _snapshot, bind_registries
from tests.layers.test_lineage import active_city

STRIP_DEG = 0.0003  # about 30 m: how far the redrawn edge goes into the second grid


def _h(session: Session, role: str) -> dict[str, str]:
    _, secret = create_token(session, f"planner-path-{role}", role)
    return {"authorization": f"Bearer {secret}"}


def _shared_m(a: Any, b: Any) -> float:
    """Length of the common boundary, in degrees."""
    return float(shapely.length(shapely.intersection(a.boundary, b.boundary)))


def _choose(session: Session) -> dict[str, Any]:
    """Three edits in three communities, where the cases are: two adjacent grids to merge,
    two adjacent grids whose edge moves, one grid on its community's edge to move into the
    neighbouring community of its street."""
    active, _, by_code, kids = active_city(session)
    cases = dict(session.execute(text(
        'SELECT grid_code, count(*) FROM "case" WHERE grid_code IS NOT NULL GROUP BY 1')).all())
    weight = {c: sum(cases.get(k, 0) for k in ks) for c, ks in kids.items()}
    busy = sorted((c for c, ks in kids.items() if len(ks) >= 4), key=lambda c: (-weight[c], c))
    geom = {c: u.geometry for c, u in by_code.items()}

    def pair(community: str) -> tuple[str, str]:
        ks = sorted(kids[community], key=lambda k: (-cases.get(k, 0), k))
        for i, a in enumerate(ks):
            for b in ks[i + 1:]:
                if _shared_m(geom[a], geom[b]) > 0.001 and cases.get(b, 0):
                    return a, b
        raise AssertionError(f"no adjacent grids in {community}")

    merge, redraw = pair(busy[0]), pair(busy[1])
    used = {busy[0], busy[1]}
    for cd in busy[2:]:
        for g in sorted(kids[cd], key=lambda k: (-cases.get(k, 0), k)):
            for ce in kids:
                if (ce not in used and ce != cd and len(kids[cd]) > 1
                        and by_code[ce].parent_code == by_code[cd].parent_code
                        and _shared_m(geom[g], geom[ce]) > 0.001):
                    return {"active": active.id, "merge": merge, "redraw": redraw,
                            "move": (g, ce), "geom": geom}
    raise AssertionError("no grid to move between communities")


def test_merge_redraw_move_then_activate_with_rehome(
        history_client: TestClient, history_session: Session, settings: Settings) -> None:
    s, c = history_session, history_client
    bind_registries(c, s, settings)
    planner, centre = _h(s, "planner"), _h(s, "centre")
    pick = _choose(s)
    geom = pick["geom"]
    (m1, m2), (e1, e2), (mv, into) = pick["merge"], pick["redraw"], pick["move"]
    changed = [m1, m2, e1, e2, mv]
    # a year leaves few cases open: every other case of the changed grids open again
    s.execute(text(
        """UPDATE "case" SET status = (ARRAY['accepted', 'dispatched', 'in_progress'])[1 + id % 3]
            WHERE grid_code = ANY(:codes) AND id % 2 = 0"""), {"codes": changed})

    r = c.post("/generations", json={"label": "planner path"}, headers=planner)
    assert r.status_code == 201, r.text
    draft = r.json()["id"]
    edits: dict[str, dict[str, Any]] = {}
    r = c.post(f"/generations/{draft}/merge", json={"codes": [m1, m2], "keep": m1},
               headers=planner)
    assert r.status_code == 200, r.text
    edits["merge"] = r.json()
    strip = shapely.intersection(geom[e2], shapely.buffer(geom[e1], STRIP_DEG))
    grown = shapely.union_all([geom[e1], strip])
    r = c.post(f"/generations/{draft}/redraw",
               json={"codes": [e1, e2], "geometry": mapping(grown)}, headers=planner)
    assert r.status_code == 200, r.text
    edits["redraw"] = r.json()
    r = c.post(f"/generations/{draft}/move", json={"code": mv, "parent": into},
               headers=planner)
    assert r.status_code == 200, r.text
    edits["move"] = r.json()
    moved_to = edits["move"]["created"][0]
    assert moved_to.startswith(into) and edits["move"]["ended"] == [mv]
    assert edits["merge"]["ended"] == [m2] and m1 in edits["merge"]["changed"]
    assert set(edits["redraw"]["changed"]) == {e1, e2}
    assert all(e["validation"]["ok"] for e in edits.values())
    assert c.get(f"/generations/{draft}/validation", headers=planner).json()["counts"] \
        .get("errors", 0) == 0

    # the truth, before the activation: each open case's grid in the draft by ST_Covers
    open_refs = sorted(s.scalars(text(
        'SELECT ref FROM "case" WHERE grid_code = ANY(:codes) AND status = ANY(:open)'),
        {"codes": changed, "open": list(OPEN)}))
    truth = _new_grid(s, draft, open_refs)
    moving = sorted(ref for ref in open_refs if truth[ref] != _snapshot(s)[ref][2])
    assert moving, "some open case must change grid"
    assert {truth[ref] for ref in moving} >= {m1, moved_to}
    before = _snapshot(s)
    # the impact preview lists exactly those cases, each with the answer it will get
    imp = c.get(f"/generations/{draft}/impact", headers=planner)
    assert imp.status_code == 200, imp.text
    assert sorted(x["ref"] for x in imp.json()["cases"]) == moving
    assert all(x["new"]["grid"] == truth[x["ref"]] for x in imp.json()["cases"])

    r = c.post(f"/generations/{draft}/activate",
               json={"open_cases": "rehome", "confirm_unpatrolled": True}, headers=planner)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["generation"] == draft and body["previous"] == pick["active"]
    after = _snapshot(s)
    for ref in open_refs:
        assert after[ref][2] == truth[ref], ref  # the ST_Covers answer of the new grid
    assert set(moving) <= set(body["cases_rehomed"]) <= set(open_refs)
    for ref in set(before) - set(body["cases_rehomed"]):
        assert after[ref] == before[ref], ref  # every other case as it was
    for ref in body["cases_rehomed"]:
        assert after[ref][5] == before[ref][5] + 1 and after[ref][6] == draft  # one change

    # the workers' view: both sides of the redrawn edge, and the moved grid
    bind_registries(c, s, settings)
    inside = shapely.point_on_surface(shapely.difference(strip, shapely.buffer(
        shapely.intersection(strip.boundary, geom[e2].boundary), 1e-6)))
    a = c.get("/resolve", params={"lon": inside.x, "lat": inside.y}).json()
    assert a["grid"]["code"] == e1 and a["generation"]["id"] == draft
    p = shapely.point_on_surface(geom[mv])
    a = c.get("/resolve", params={"lon": p.x, "lat": p.y}).json()
    assert a["grid"]["code"] == moved_to
    assert [u["code"] for u in a["chain"]][-2] == into

    def successors(code: str) -> dict[str, str]:
        got = c.get(f"/grids/{code}/lineage", headers=centre)
        assert got.status_code == 200, got.text
        return {x["to"]["code"]: x["kind"] for x in got.json()["successors"]
                if x["depth"] == 1}

    assert successors(m2) == {m1: "merge"}
    assert successors(mv) == {moved_to: "reparent"}
    assert successors(e2).get(e2) == "redraw"
