"""The planner's page of a draft in headless Chromium (/map/generation/{id} with a planner's
token): the active grid's outlines over the draft's (and side by side, the two maps' views
kept together), the changed units highlighted, the impact drawn and tabled (per changed
unit old and new area, where the area went, cases moved, a new unit without patrol
flagged), the open cases that would move drawn as points, a click on a row zooms to the
unit; without an impact the page says so. The draft is real (made on a copy of the demo
city with case history); the impact is the contract's JSON built here from PostGIS (so that
each drawing is checked against a known answer), and once the real impact endpoint's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import grids
from layers.auth import create_token
from layers.cluster import free_port
from layers.db import make_engine
from layers.resolver import resolve_sql
from layers.settings import Settings
from layers.workflow import OPEN
from tests.api.test_draft_invisible import P_EDGE, Draft, make_draft, plan_draft
from tests.map_ui.conftest import Watched

SERVED: dict[str, Any] = {}  # what the test's impact route answers (None: 404)


def _area(session: Session, gen: int, code: str) -> float:
    return float(session.scalar(text(
        "SELECT ST_Area(u.geom::geography) FROM grid_unit u WHERE u.code = :c AND "
        "u.generation_low <= :g AND (u.generation_high IS NULL OR u.generation_high >= :g)"),
        {"c": code, "g": gen}))


def _outline(session: Session, gen: int, code: str, side: str, change: str) -> dict[str, Any]:
    r = session.execute(text(
        "SELECT u.name, u.level, ST_AsGeoJSON(u.geom, 6) AS g FROM grid_unit u WHERE "
        "u.code = :c AND u.generation_low <= :g AND (u.generation_high IS NULL OR "
        "u.generation_high >= :g)"), {"c": code, "g": gen}).one()
    return {"type": "Feature", "geometry": orjson.loads(r.g), "properties": {
        "code": code, "name": r.name, "level": r.level, "side": side, "change": change}}


def contract_impact(session: Session, d: Draft) -> dict[str, Any]:
    """The draft's impact as GET /generations/{id}/impact answers it (the contract's JSON),
    built from PostGIS: the split grid ended into its two parts, the redrawn pair, the open
    cases whose finest grid differs between the active generation and the draft."""
    a, g = d.active, d.id
    old = {c: _area(session, a, c) for c in (d.split, *d.redrawn)}
    new = {c: _area(session, g, c) for c in (*d.parts, *d.redrawn)}
    whole = old[d.split]
    moved = old[d.redrawn[1]] - new[d.redrawn[1]]
    units = [
        {"code": d.split, "name": "", "level": 4, "level_key": "grid", "change": "ended",
         "old_area_m2": whole, "new_area_m2": None, "from": [],
         "to": [{"code": p, "area_m2": new[p], "share": new[p] / whole} for p in d.parts]},
        *({"code": p, "name": "", "level": 4, "level_key": "grid", "change": "split",
           "old_area_m2": None, "new_area_m2": new[p],
           "from": [{"code": d.split, "area_m2": new[p], "share": new[p] / whole}], "to": []}
          for p in d.parts),
        {"code": d.redrawn[0], "name": "", "level": 4, "level_key": "grid",
         "change": "redraw", "old_area_m2": old[d.redrawn[0]],
         "new_area_m2": new[d.redrawn[0]],
         "from": [{"code": d.redrawn[1], "area_m2": moved,
                   "share": moved / old[d.redrawn[1]]}], "to": []},
        {"code": d.redrawn[1], "name": "", "level": 4, "level_key": "grid",
         "change": "redraw", "old_area_m2": old[d.redrawn[1]],
         "new_area_m2": new[d.redrawn[1]], "from": [],
         "to": [{"code": d.redrawn[0], "area_m2": moved,
                 "share": moved / old[d.redrawn[1]]}]},
    ]
    open_sql = ", ".join(f"'{s}'" for s in OPEN)
    rows = session.execute(text(
        f'SELECT c.ref, c.status, c.category_code, c.grid_code, c.street_code, '
        f'c.owner_department, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat FROM "case" c '
        f"WHERE c.status IN ({open_sql}) AND c.grid_code = ANY(:codes) ORDER BY c.ref"),
        {"codes": [d.split, *d.redrawn]}).all()
    after = resolve_sql(session, g, np.array([r.lon for r in rows]),
                        np.array([r.lat for r in rows])) if rows else []
    cases = [{"ref": r.ref, "status": r.status, "category": r.category_code,
              "lon": r.lon, "lat": r.lat,
              "old": {"grid": r.grid_code, "street": r.street_code,
                      "owner": r.owner_department},
              "new": {"grid": n, "street": r.street_code, "owner": r.owner_department}}
             for r, n in zip(rows, after, strict=True) if n != r.grid_code]
    changes = [_outline(session, a, c, "old", ch) for c, ch in
               ((d.split, "ended"), (d.redrawn[0], "redraw"), (d.redrawn[1], "redraw"))]
    changes += [_outline(session, g, c, "new", ch) for c, ch in
                ((d.parts[0], "split"), (d.parts[1], "split"), (d.redrawn[0], "redraw"),
                 (d.redrawn[1], "redraw"))]
    return {"generation": g, "against": a, "took_ms": 12.5,
            "summary": {"units_changed": 2, "units_new": 2, "units_ended": 1,
                        "open_cases_moved": len(cases), "assets_moved": 0, "unpatrolled": 1},
            "units": units, "cases": cases, "assets": [],
            "patrol": {"ending": [], "inherited": [{"code": d.parts[0], "from": d.split,
                                                    "teams": []}],
                       "unpatrolled": [d.parts[1]]},
            "roles": {"ending": [], "inherited": []}, "alignment": [], "streets": [],
            "changes": {"type": "FeatureCollection", "features": changes}}


def _busiest(session: Session) -> tuple[float, float]:
    """A point in the finest grid with the most open cases (away from the redrawn edge)."""
    open_sql = ", ".join(f"'{s}'" for s in OPEN)
    edge = session.scalar(text(
        "SELECT u.code FROM grid_unit u JOIN generation g ON g.active AND "
        "u.generation_low <= g.id AND (u.generation_high IS NULL OR u.generation_high >= "
        "g.id) WHERE u.level = 4 AND ST_Covers(u.geom, ST_SetSRID(ST_MakePoint(:x, :y), "
        "4326))"), {"x": P_EDGE[0], "y": P_EDGE[1]})
    code = session.scalar(text(
        f'SELECT c.grid_code FROM "case" c WHERE c.status IN ({open_sql}) AND '
        f"c.grid_code <> :edge GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"), {"edge": edge})
    lon, lat = session.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(u.geom) AS p FROM grid_unit u "
        "JOIN generation g ON g.active AND u.generation_low <= g.id AND "
        "(u.generation_high IS NULL OR u.generation_high >= g.id) WHERE u.code = :c) x"),
        {"c": code}).one()
    return float(lon), float(lat)


@pytest.fixture(scope="module")
def planner_site(map_db: str, settings: Settings) -> Iterator[dict[str, Any]]:
    """The app on a copy of the demo city with a committed draft (discarded at the end), in
    a thread; its URL, the draft, its impact and a planner's token."""
    import uvicorn

    from api.app import create_app
    from api.routers import maps

    engine = make_engine(map_db)
    with Session(engine) as s, s.begin():
        d = make_draft(s, settings, plan_draft(s, settings, split_at=_busiest(s)))
        _, secret = create_token(s, "planner-page", "planner")
    with Session(engine) as s:
        impact = contract_impact(s, d)
        finest_active = grids.counts_per_level(s, d.active)["grid"]
    app: FastAPI = create_app(settings.model_copy(update={"database_url": map_db}),
                              engine=engine, listen=False)
    app.dependency_overrides[maps.impact_url_template] = lambda: "/test/impact/{id}"

    @app.get("/test/impact/{generation}", include_in_schema=False)
    def served(generation: int) -> Any:
        if SERVED.get("impact") is None:
            return JSONResponse({"code": "not_found", "detail": "Not Found"}, status_code=404)
        return SERVED["impact"]

    port = free_port(0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive(), "the test server did not start"
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "draft": d, "impact": impact,
               "token": secret, "finest_active": finest_active, "app": app}
    finally:
        server.should_exit = True
        t.join(10)
        with Session(engine) as s, s.begin():
            grids.discard_generation(s, d.id)
        engine.dispose()


def _open(w: Watched, url: str) -> dict[str, Any]:
    p = w.page
    p.goto(url)
    p.wait_for_function("window.gridopsGeneration && gridopsGeneration.state && "
                        "(gridopsGeneration.state.ready || gridopsGeneration.state.error)",
                        timeout=60_000)
    state: dict[str, Any] = p.evaluate("gridopsGeneration.state")
    return state


def _bounds(p: Any, name: str = "gridopsMap") -> list[float]:
    return list(p.evaluate(f"(() => {{ const b = {name}.getBounds(); return "
                           "[b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()"))


def _inside(pt: tuple[float, float], b: list[float]) -> bool:
    return b[0] < pt[0] < b[2] and b[1] < pt[1] < b[3]


def test_the_planners_page(browser: Any, planner_site: dict[str, Any]) -> None:
    site, d = planner_site, planner_site["draft"]
    SERVED["impact"] = site["impact"]
    cases = site["impact"]["cases"]
    assert cases, "the demo history has open cases in the changed grids"
    w = Watched(browser, site["url"])
    try:
        p = w.page
        state = _open(w, f'{site["url"]}/map/generation/{d.id}#token={site["token"]}')
        assert state["error"] is None and state["ready"], state
        assert state["impactError"] is None
        # both outlines: the active finest level and the draft's (one split in two)
        old_name = f"Active generation {d.active} (old)"
        old_layer = f"gridopsLayers[{orjson.dumps(old_name).decode()}]"
        assert state["old"] == site["finest_active"]
        assert p.evaluate(f"{old_layer}.getLayers().length") == site["finest_active"]
        assert state["units"]["grid"] == site["finest_active"] + 1
        assert p.evaluate("gridopsMap.hasLayer(gridopsLayers['网格 (grid)'])")
        # changed units highlighted: the draft's own finest rows (two parts, the pair)
        highlighted = p.evaluate(
            "gridopsLayers['网格 (grid)'].getLayers().filter(l => "
            "l.options.fillOpacity > 0.3).map(l => l.feature.properties.code).sort()")
        assert highlighted == sorted([*d.parts, *d.redrawn])
        # the impact: drawn, tabled, flagged; the cases as points
        assert state["impact"] == {"units": 5, "cases": len(cases), "changes": 7,
                                   "unpatrolled": 1}
        assert p.evaluate("gridopsLayers['Changed units'].getLayers().length") == 7
        assert state["cases"] == len(cases)
        assert p.evaluate("gridopsLayers['Open cases that would move'].getLayers()"
                          ".length") == len(cases)
        rows = p.locator("#impact-units tbody tr.unit")
        assert rows.count() == 5
        first = rows.nth(0).inner_text()
        assert d.split in first and "ended" in first and d.parts[0] in first and "%" in first
        flagged = p.locator("#impact-units tr.unpatrolled")
        assert flagged.count() == 1 and d.parts[1] in flagged.inner_text()
        assert "no patrol" in flagged.inner_text()
        assert d.parts[1] in p.inner_text(".unpatrolled-list")
        moved_here = sum(1 for c in cases if d.split in (c["old"]["grid"], c["new"]["grid"]))
        assert rows.nth(0).locator("td").nth(5).inner_text() == str(moved_here)
        assert p.locator("#impact-cases tr.case-row").count() == len(cases)
        assert "ms" in p.inner_text("#impact-took")
        city = _bounds(p)
        w.shot("planner-overlay")

        # a click on a row zooms to the unit
        part = next(f for f in site["impact"]["changes"]["features"]
                    if f["properties"]["code"] == d.parts[1])
        ring = part["geometry"]["coordinates"][0]
        if isinstance(ring[0][0], list):  # a MultiPolygon
            ring = ring[0]
        centre = (sum(x for x, _ in ring) / len(ring), sum(y for _, y in ring) / len(ring))
        rows.nth(2).click()
        p.wait_for_function(f"gridopsGeneration.state.selectedUnit === '{d.parts[1]}'")
        zoomed = _bounds(p)
        assert p.evaluate("gridopsMap.getZoom()") >= 15
        assert _inside(centre, zoomed) and (zoomed[2] - zoomed[0]) < (city[2] - city[0]) / 10
        assert "selected" in (rows.nth(2).get_attribute("class") or "")
        w.shot("planner-unit-zoomed")

        # side by side: the old outlines on a second map that follows the first
        p.click("#mode-side")
        try:
            p.wait_for_function("gridopsGeneration.state.mode === 'side' && "
                                "window.gridopsOldLayers", timeout=10_000)
        except Exception as e:
            raise AssertionError(f"side by side failed: {w.errors}") from e
        assert p.evaluate("document.body.classList.contains('side-by-side')")
        assert not p.evaluate(f"gridopsMap.hasLayer({old_layer})")
        left = p.evaluate("document.getElementById('gridops-old-map').getBoundingClientRect()"
                          ".width")
        assert left > 300
        main = p.evaluate("gridopsMap.getContainer().getBoundingClientRect().left")
        assert abs(main - left) < 8  # the new map beside the old one, not over it
        p.evaluate("void gridopsMap.panBy([120, 60], {animate: false})")
        p.wait_for_timeout(100)
        a = p.evaluate("[gridopsMap.getCenter().lat, gridopsMap.getCenter().lng, "
                       "gridopsMap.getZoom()]")
        b = p.evaluate("[gridopsOldMap.getCenter().lat, gridopsOldMap.getCenter().lng, "
                       "gridopsOldMap.getZoom()]")
        assert a[2] == b[2] and abs(a[0] - b[0]) < 1e-9 and abs(a[1] - b[1]) < 1e-9
        assert p.evaluate("gridopsOldLayers.old.getLayers().length") == \
            site["finest_active"], w.errors
        assert p.evaluate("gridopsOldLayers.changes.getLayers().map(l => "
                          "l.feature.properties.code).sort()") == \
            sorted([d.split, *d.redrawn]), w.errors
        w.shot("planner-side-by-side")
        p.click("#mode-overlay")
        p.wait_for_function("gridopsGeneration.state.mode === 'overlay'")
        assert p.evaluate(f"gridopsMap.hasLayer({old_layer})")
        w.clean()
    finally:
        w.close()


def test_the_page_draws_what_the_impact_endpoint_answers(browser: Any,
                                                        planner_site: dict[str, Any]) -> None:
    """The page on the real GET /generations/{id}/impact (not the test's route): the
    endpoint names the units and the moving cases the contract's JSON built from PostGIS
    names (its patrol part is the endpoint's own: the contract's flags one half for the
    page's sake), and the page draws and tables all of it."""
    from api.routers import maps

    site, d = planner_site, planner_site["draft"]
    app: FastAPI = site["app"]
    auth = {"authorization": f'Bearer {site["token"]}'}
    real = httpx.get(f'{site["url"]}/generations/{d.id}/impact', headers=auth,
                     timeout=60).json()
    want = site["impact"]
    assert {u["code"] for u in real["units"]} == {u["code"] for u in want["units"]}
    assert {c["ref"]: c["new"]["grid"] for c in real["cases"]} == \
        {c["ref"]: c["new"]["grid"] for c in want["cases"]}
    override = app.dependency_overrides.pop(maps.impact_url_template)
    w = Watched(browser, site["url"])
    try:
        p = w.page
        state = _open(w, f'{site["url"]}/map/generation/{d.id}#token={site["token"]}')
        assert state["error"] is None and state["ready"], state
        assert state["impactError"] is None, state["impactError"]
        assert state["impact"] == {"units": len(real["units"]), "cases": len(real["cases"]),
                                   "changes": len(real["changes"]["features"]),
                                   "unpatrolled": len(real["patrol"]["unpatrolled"])}
        assert p.locator("#impact-units tbody tr.unit").count() == len(real["units"])
        assert p.locator("#impact-cases tr.case-row").count() == len(real["cases"])
        assert p.evaluate("gridopsLayers['Changed units'].getLayers().length") == \
            len(real["changes"]["features"])
        w.shot("planner-real-impact")
        w.clean()
    finally:
        app.dependency_overrides[maps.impact_url_template] = override
        w.close()


def test_without_an_impact_the_page_says_so(browser: Any, planner_site: dict[str, Any]
                                            ) -> None:
    site, d = planner_site, planner_site["draft"]
    SERVED["impact"] = None
    w = Watched(browser, site["url"])
    try:
        p = w.page
        state = _open(w, f'{site["url"]}/map/generation/{d.id}#token={site["token"]}')
        assert state["error"] is None and state["ready"], state
        assert "404" in state["impactError"]
        assert "the impact is unavailable" in p.inner_text("#impact-body")
        assert state["old"] == site["finest_active"]  # the rest is shown
        assert state["units"]["grid"] == site["finest_active"] + 1
        w.shot("planner-no-impact")
        # the browser reports the 404 itself; nothing else went wrong
        assert all("404" in e for e in w.errors), w.errors
        assert w.outside == [] and w.failed == []
    finally:
        w.close()


def test_the_public_page_of_a_draft_holds_nothing_of_it(browser: Any,
                                                        planner_site: dict[str, Any]) -> None:
    site, d = planner_site, planner_site["draft"]
    r = httpx.get(f'{site["url"]}/map/generation/{d.id}')
    assert r.status_code == 200
    assert "draft (test)" not in r.text and "not published" in r.text
    SERVED["impact"] = site["impact"]
    w = Watched(browser, site["url"])
    try:
        state = _open(w, f'{site["url"]}/map/generation/{d.id}')
        assert "401" in str(state["error"]) and "token" in str(state["error"])
        assert "token" in w.page.inner_text("#problems-body")
        w.clean()  # nothing was asked of the API without the token
    finally:
        w.close()
