"""POST /generations/{id}/activate on the demo city with its layers and a synthetic history
(real PostGIS): a draft made with grids.load_generation(activate=False) in which one grid
is split in two (new codes). With rehome exactly the open cases in the split grid are
re-resolved (checked against PostGIS ST_Covers), one re_resolve event each with the old
answer kept, closed cases untouched; keep leaves them all; /resolve answers the new codes
on both sides of the new edge; the halves inherit the patrol (or are refused 409 when
there is none, then accepted with a confirmation or a patrol choice); assets follow; a
dry run changes nothing. And a real server with two workers: both switch to the activated
generation within the issue's 1 s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely import LineString
from shapely.ops import split as shapely_split
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.routers.resolve import ResolveFastPath
from layers import grids
from layers.auth import create_token
from layers.db import make_engine, upgrade
from layers.models import Generation
from layers.ownership_store import OwnershipRegistry
from layers.resolver import IndexRegistry
from layers.settings import Settings
from layers.versioning import in_generation
from layers.workflow import OPEN, PLANNER, SIDE_ACTIONS
from spatial.coverage import areal
from tests.support.servers import serving, watch_switch
from tests.support.tinycity import X0, Y0, D, line_moved_north, tiny_city


@dataclass
class Split:
    """A draft of the demo city in which one grid is split by a north-south line."""

    draft: int
    active: int
    grid: str  # the grid split
    halves: tuple[str, str]  # west, east (new codes)
    cut_x: float  # the line's longitude
    y_mid: float  # a latitude where the line crosses the grid


def _open_points(session: Session, code: str) -> list[tuple[float, float]]:
    return [(r.x, r.y) for r in session.execute(text(
        'SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM "case" '
        "WHERE grid_code = :c AND status = ANY(:open)"), {"c": code, "open": list(OPEN)})]


def make_split(session: Session, settings: Settings) -> Split:
    """Split the grid with the most open cases by a north-south line between its middle
    open cases (so that both halves have some); the halves take the next free serials."""
    active = grids.active_generation(session)
    assert active is not None
    units = grids.generation_units(session, active.id)
    by_code = {u.code: u for u in units}
    finest = max(u.level for u in units)
    busiest = session.execute(text(
        'SELECT grid_code FROM "case" WHERE status = ANY(:open) AND grid_code IS NOT NULL '
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 20"), {"open": list(OPEN)}).scalars()
    for code in busiest:
        u = by_code[code]
        shape = u.geometry
        _, y0, _, y1 = shape.bounds
        xs = sorted({round(x, 7) for x, _ in _open_points(session, code)})
        if len(xs) < 2:
            continue
        k = len(xs) // 2  # the line between the middle open cases: some on either side
        cx = (xs[k - 1] + xs[k]) / 2
        pieces = shapely_split(shape, LineString([(cx, y0 - 0.01), (cx, y1 + 0.01)])).geoms
        west = areal(shapely.union_all([p for p in pieces if p.centroid.x < cx]))
        east = areal(shapely.union_all([p for p in pieces if p.centroid.x >= cx]))
        siblings = [c.code for c in units if c.parent_code == u.parent_code
                    and c.level == finest]
        top = max(int(c[-3:]) for c in siblings)
        assert u.parent_code is not None
        h1, h2 = (f"{u.parent_code}{top + k:03d}" for k in (1, 2))
        out = [x for x in units if x.code != code] + [
            replace(u, code=h1, name=u.name + "西", geometry=west),
            replace(u, code=h2, name=u.name + "东", geometry=east)]
        draft = grids.load_generation(session, out, settings, label="split for activation",
                                      activate=False)
        inside = shapely.intersection(shape, LineString([(cx, y0), (cx, y1)]))
        return Split(draft.id, active.id, code, (h1, h2), cx, inside.centroid.y)
    raise AssertionError("no grid with two open cases")


@pytest.fixture()
def city(history_session: Session, settings: Settings) -> Split:
    """The split draft, on the demo city with a year of cases."""
    return make_split(history_session, settings)


def bind_registries(client: TestClient, session: Session, settings: Settings) -> None:
    """The app's registries read the test's transaction (the draft and what the
    activation does are in sight), as a worker does after the NOTIFY."""
    app: Any = client.app
    services = app.state.services
    shared: Any = lambda: nullcontext(session)  # noqa: E731 (a session factory)
    services.sessions = shared
    services.indexes = IndexRegistry(shared, settings)
    services.indexes.refresh()
    services.owners = OwnershipRegistry(shared, settings)
    services.owners.refresh()
    app.fast_path = ResolveFastPath(services.indexes)


@pytest.fixture()
def api(history_client: TestClient, history_session: Session, settings: Settings, city: Split
        ) -> Iterator[TestClient]:
    bind_registries(history_client, history_session, settings)
    yield history_client


def _token(session: Session, role: str) -> dict[str, str]:
    _, secret = create_token(session, f"activation-{role}", role)
    return {"authorization": f"Bearer {secret}"}


def _activate(c: TestClient, session: Session, gen: int, role: str = PLANNER,
              **body: Any) -> httpx.Response:
    return c.post(f"/generations/{gen}/activate", json=body, headers=_token(session, role))


# ---------------------------------------------------------------- the truth, in PostGIS


def _in_grid(session: Session, gen: int, code: str, open_only: bool) -> dict[str, str]:
    """Open (or else finished) cases whose point unit `code` of generation gen covers:
    ref -> stored grid."""
    return dict(session.execute(text(f"""
        SELECT c.ref, c.grid_code FROM "case" c JOIN grid_unit u ON u.code = :code
               AND {in_generation('u')} AND ST_Covers(u.geom, c.geom)
         WHERE (c.status = ANY(:open)) = :want"""),
        {"g": gen, "code": code, "open": list(OPEN), "want": open_only}).all())


def _new_grid(session: Session, gen: int, refs: list[str]) -> dict[str, str | None]:
    """PostGIS's grid for each case's point in generation gen (ST_Covers, lowest code)."""
    return dict(session.execute(text(f"""
        SELECT c.ref, (SELECT u.code FROM grid_unit u
                        WHERE {in_generation('u')} AND u.level = 4
                          AND ST_Covers(u.geom, c.geom) ORDER BY u.code LIMIT 1)
          FROM "case" c WHERE c.ref = ANY(:refs)"""), {"g": gen, "refs": refs}).all())


def _snapshot(session: Session) -> dict[str, tuple[Any, ...]]:
    """Every case's stored answer and version."""
    return {r.ref: tuple(r) for r in session.execute(text(
        'SELECT ref, status, grid_code, street_code, owner_department, version, '
        'generation_id FROM "case"'))}


def _events(session: Session, action: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ref, data, role, actor in session.execute(text(
            'SELECT c.ref, e.data, e.role, e.actor FROM case_event e '
            'JOIN "case" c ON c.id = e.case_id WHERE e.action = :a ORDER BY e.id'),
            {"a": action}):
        out.setdefault(ref, []).append({"data": data, "role": role, "actor": actor})
    return out


def _assets_in(session: Session, gen: int, code: str) -> dict[str, str | None]:
    """Current assets standing in unit `code` of gen (a point on them): code -> stored grid."""
    return dict(session.execute(text(f"""
        SELECT a.code, a.grid_code FROM asset a JOIN grid_unit u ON u.code = :code
               AND {in_generation('u')} AND ST_Covers(u.geom, ST_PointOnSurface(a.geom))
         WHERE a.valid_to IS NULL"""), {"g": gen, "code": code}).all())


def _teams(session: Session, code: str) -> set[tuple[str, str]]:
    return set(session.execute(text(
        "SELECT team_code, shift FROM patrol_assignment WHERE grid_code = :c "
        "AND valid_to IS NULL"), {"c": code}).all())


# ---------------------------------------------------------------- rehome


def test_rehome_moves_exactly_the_open_cases_of_the_split_grid(
        api: TestClient, history_session: Session, city: Split, settings: Settings) -> None:
    s = history_session
    old = city.grid
    h1, h2 = city.halves
    open_before = _in_grid(s, city.active, old, open_only=True)
    closed_before = _in_grid(s, city.active, old, open_only=False)
    assert len(open_before) >= 2 and closed_before
    stored_on_old = set(s.scalars(text('SELECT ref FROM "case" WHERE grid_code = :c '
                                       "AND status = ANY(:open)"),
                                  {"c": old, "open": list(OPEN)}))
    expected = sorted(set(open_before) | stored_on_old)
    truth = _new_grid(s, city.draft, expected)
    assert set(truth.values()) == {h1, h2}  # open cases on both sides of the new edge
    before = _snapshot(s)
    teams = _teams(s, old)
    assert teams, "the demo gives every grid a patrol team"
    assets = _assets_in(s, city.active, old)

    t0 = time.perf_counter()
    r = _activate(api, s, city.draft, role="admin", open_cases="rehome")
    took = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    body = r.json()
    print(f"activation with rehome: {took:.2f} s, {len(body['cases_rehomed'])} cases")
    assert body["generation"] == city.draft and body["previous"] == city.active
    assert body["validation"] == {"ok": True} and body["dry_run"] is False
    assert body["lineage_rows"] >= 2
    assert body["cases_rehomed"] == expected
    assert body["cases_kept"] == 0 and body["cases_not_rehomed"] == []

    after = _snapshot(s)
    events = _events(s, "re_resolve")
    assert sorted(events) == expected  # no other case was touched
    for ref in expected:
        (ev,) = events[ref]  # one event each
        assert ev["actor"] == "activation-admin"
        d = ev["data"]
        assert d["before"]["grid"] == before[ref][2] == old
        assert d["previous_resolution"]["chain"][-1]["code"] == old  # the old answer kept
        assert d["after"]["grid"] == truth[ref] == after[ref][2]
        assert d["after"]["generation"] == city.draft == after[ref][6]
        assert after[ref][5] == before[ref][5] + 1
    for ref in set(before) - set(expected):
        assert after[ref] == before[ref], ref  # closed cases and every other case as they were
    assert set(closed_before) <= set(before) - set(expected)

    # assets follow the new geometry; the old grid's patrol goes to both halves
    assert body["assets_moved"] == len(assets)
    for code, grid in _assets_in(s, city.draft, h1).items():
        assert grid == h1, code
    for code, grid in _assets_in(s, city.draft, h2).items():
        assert grid == h2, code
    assert _teams(s, h1) == _teams(s, h2) == teams and _teams(s, old) == set()
    assert body["assignments"]["ended"] == len(teams)
    assert {i["code"] for i in body["assignments"]["inherited"]} == {h1, h2}
    assert all(i["from"] == old and i["reason"] == "largest_share"
               for i in body["assignments"]["inherited"])
    gen = s.get(Generation, city.draft)
    assert gen is not None and gen.active
    audit = s.execute(text("SELECT actor, detail FROM generation_event "
                           "WHERE generation_id = :g AND action = 'activate'"),
                      {"g": city.draft}).one()
    assert audit.detail["cases_rehomed"] == expected
    assert audit.detail["previous"] == city.active

    # /resolve answers the new codes on both sides of the new edge (the workers' view)
    bind_registries(api, s, settings)
    for dx, code in ((-2e-5, h1), (2e-5, h2)):
        a = api.get("/resolve", params={"lon": city.cut_x + dx, "lat": city.y_mid}).json()
        assert a["grid"]["code"] == code and a["generation"]["id"] == city.draft
    # the history by lineage: the split grid's finds the re-homed cases in both halves, a
    # half's those in that half (and what stayed on the split grid: nothing open)
    centre = _token(s, "centre")

    def listed(code: str) -> set[str]:
        got = api.get("/cases", params={"grid": code, "lineage": "true", "status": "open",
                                        "limit": 1000}, headers=centre).json()
        return {c["ref"] for c in got["items"]}

    assert listed(old) == set(expected)
    assert listed(h1) == {ref for ref in expected if truth[ref] == h1}


@pytest.mark.skipif(PLANNER not in SIDE_ACTIONS["re_resolve"],
                    reason="layers.workflow lets only the centre and admins re_resolve")
def test_a_planner_rehomes(api: TestClient, history_session: Session, city: Split) -> None:
    r = _activate(api, history_session, city.draft, open_cases="rehome")
    assert r.status_code == 200, r.text
    assert r.json()["cases_rehomed"]


def test_keep_leaves_every_case_as_it_was(api: TestClient, history_session: Session,
                                          city: Split) -> None:
    s = history_session
    before = _snapshot(s)
    moving = set(_in_grid(s, city.active, city.grid, open_only=True)) | set(s.scalars(text(
        'SELECT ref FROM "case" WHERE grid_code = :c AND status = ANY(:open)'),
        {"c": city.grid, "open": list(OPEN)}))
    r = _activate(api, s, city.draft)  # open_cases keep by default, a planner
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cases_rehomed"] == [] and body["cases_kept"] == len(moving)
    assert _snapshot(s) == before
    assert _events(s, "re_resolve") == {}
    assert s.scalar(text("SELECT count(*) FROM grid_unit u WHERE u.code = :c AND "
                         f"{in_generation('u')}"), {"c": city.halves[0], "g": city.draft})


# ---------------------------------------------------------------- patrol


def test_an_unpatrolled_half_is_refused_then_confirmed(api: TestClient, history_session: Session,
                                                       city: Split) -> None:
    s = history_session
    h1, h2 = city.halves
    s.execute(text("UPDATE patrol_assignment SET valid_to = clock_timestamp() "
                   "WHERE grid_code = :c AND valid_to IS NULL"), {"c": city.grid})
    r = _activate(api, s, city.draft)
    assert r.status_code == 409, r.text
    err = r.json()
    assert err["unpatrolled"] == [h1, h2] and h1 in err["detail"] and h2 in err["detail"]
    assert not s.get(Generation, city.draft).active  # type: ignore[union-attr]
    # one half takes a neighbour's patrol, the other stays unpatrolled on purpose
    neighbour = next(n["code"] for n in grids.neighbours(s, city.active, city.grid,
                                                         Settings()) if _teams(s, n["code"]))
    r = _activate(api, s, city.draft, patrol={h1: {"from": neighbour}})
    assert r.status_code == 409 and r.json()["unpatrolled"] == [h2]
    r = _activate(api, s, city.draft, patrol={h1: {"from": neighbour}},
                  confirm_unpatrolled=[h2])
    assert r.status_code == 200, r.text
    body = r.json()
    assert _teams(s, h1) == _teams(s, neighbour) and _teams(s, h2) == set()
    assert body["assignments"]["inherited"][0]["from"] == neighbour
    assert body["assignments"]["inherited"][0]["reason"] == "planner"
    assert body["assignments"]["unpatrolled_confirmed"] == [h2]


def test_patrol_choices_are_checked(api: TestClient, history_session: Session,
                                    city: Split) -> None:
    s = history_session
    h1, _ = city.halves
    cases: list[tuple[dict[str, Any], int]] = [
        ({"patrol": {city.grid: {"none": True}}}, 422),  # not a new unit
        ({"patrol": {h1: {"from": "999"}}}, 422),  # no such old unit
        ({"patrol": {h1: {}}}, 422),
        ({"patrol": {h1: {"from": city.grid, "none": True}}}, 422),
        ({"confirm_unpatrolled": ["123"]}, 422),
        ({"open_cases": "move"}, 422), ({"extra": 1}, 422)]
    for body, status in cases:
        r = _activate(api, s, city.draft, **body)
        assert r.status_code == status, (body, r.text)
    assert _activate(api, s, city.draft, role="centre").status_code == 403
    assert api.post(f"/generations/{city.draft}/activate").status_code == 401
    assert _activate(api, s, 999_999).status_code == 404
    assert _activate(api, s, city.active).status_code == 409  # history, not a draft
    # {"none": true} is the planner's own word: no confirmation needed
    r = _activate(api, s, city.draft, patrol={h1: {"none": True}})
    assert r.status_code == 200, r.text
    assert _teams(s, h1) == set() and _teams(s, city.halves[1])


# ---------------------------------------------------------------- dry run, invalid draft


def test_a_dry_run_changes_nothing(api: TestClient, history_session: Session,
                                   city: Split) -> None:
    s = history_session
    tables = ("patrol_assignment", "grid_role", "layer_event", "case_event", "grid_lineage",
              "generation_event")

    def state() -> tuple[Any, ...]:
        counts = tuple(s.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables)
        assets = tuple(s.execute(text("SELECT code, grid_code FROM asset ORDER BY id")).all())
        gens = tuple(s.execute(text("SELECT id, active, activated_at FROM generation "
                                    "ORDER BY id")).all())
        ends = s.scalar(text("SELECT count(*) FROM patrol_assignment WHERE valid_to IS NULL"))
        return counts, assets, gens, ends, tuple(sorted(_snapshot(s).items()))

    before = state()
    r = _activate(api, s, city.draft, role="admin", open_cases="rehome", dry_run=True)
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["dry_run"] is True and dry["cases_rehomed"] and dry["assets_moved"]
    assert state() == before
    real = _activate(api, s, city.draft, role="admin", open_cases="rehome").json()
    for k in ("cases_rehomed", "cases_kept", "assets_moved", "lineage_rows", "previous"):
        assert real[k] == dry[k], k


def test_an_invalid_draft_is_refused_with_its_violations(api: TestClient,
                                                          history_session: Session,
                                                          city: Split) -> None:
    s = history_session
    s.execute(text("UPDATE grid_unit SET geom = ST_Multi(ST_Buffer(geom, 0.0005)) "
                   "WHERE code = :c AND generation_low = :g"),
              {"c": city.halves[0], "g": city.draft})
    r = _activate(api, s, city.draft)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "grid_invariant_violated"
    kinds = {v["kind"] for v in err["violations"]}
    assert "sibling_overlap" in kinds or "overlap" in kinds, kinds
    assert any(city.halves[0] in v["codes"] for v in err["violations"])
    assert not s.get(Generation, city.draft).active  # type: ignore[union-attr]


# ---------------------------------------------------------------- a real server


P = (X0 + D / 2, Y0 + D / 2 + 0.001)  # community 1, 100 m north of its grids' line


def test_every_worker_switches_after_activation(scratch_db: str, settings: Settings) -> None:
    """Two workers: POST /generations/{id}/activate, then every /resolve answers from the
    new generation within the issue's 1 s (the same watch as tests/api/test_live_switch.py):
    a worker answers from the new index as soon as its lookup is built, and builds its
    nearest-grid structure and settles its heap after the swap."""
    upgrade(scratch_db)
    eng = make_engine(scratch_db)
    with Session(eng) as s, s.begin():
        grids.load_generation(s, tiny_city(), settings, label="v1")
        moved = line_moved_north()
        draft = grids.load_generation(s, moved, settings, label="v2", activate=False).id
        _, secret = create_token(s, "live-planner", PLANNER)
    try:
        with serving(scratch_db, GRIDOPS_WORKERS="2") as url, \
                httpx.Client(base_url=url, timeout=5) as c:
            for _ in range(10):
                a = c.get("/resolve", params={"lon": P[0], "lat": P[1]}).json()
                assert a["grid"]["code"] == "319999001001001"
            r = c.post(f"/generations/{draft}/activate", json={},
                       headers={"authorization": f"Bearer {secret}"})
            t0 = time.monotonic()
            assert r.status_code == 200, r.text
            streak, switched, elapsed = watch_switch(  # a new connection: either worker
                lambda: httpx.get(url + "/resolve", params={"lon": P[0], "lat": P[1]}).json(),
                draft, "319999001001002", "319999001001001", t0=t0)
            print(f"first answer from the new generation after {switched} s; "
                  f"the last from the old one after {elapsed:.2f} s")
            assert streak >= 20, "both workers must answer with the new generation"
            assert elapsed < 1.0
    finally:
        eng.dispose()
