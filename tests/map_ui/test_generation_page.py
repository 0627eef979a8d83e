"""The generation page in headless Chromium: the demo city's grid loaded page by page from
/grids (links.next followed), a generation's problems drawn and listed, a click on an entry
zooms to it, a valid generation says so, an unknown one is a 404. The app runs in this
process (uvicorn in a thread) so that the page's problems URL can point at a small static
FeatureCollection route of the test's own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from layers.cluster import free_port
from layers.settings import Settings
from tests.map_ui.conftest import Watched

P1 = (121.2277, 31.0322)  # inside the demo city
P2 = (121.2322, 31.0299)
P3 = (121.19, 31.05)
P4 = (121.30, 30.98)


def _square(lon: float, lat: float, d: float) -> list[list[float]]:
    return [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d],
            [lon - d, lat - d]]


def _problems(generation: int) -> dict[str, Any]:
    def f(geometry: dict[str, Any], kind: str, codes: list[str], detail: str,
          area: float | None) -> dict[str, Any]:
        return {"type": "Feature", "geometry": geometry, "properties": {
            "kind": kind, "codes": codes, "detail": detail, "area_m2": area}}

    lon, lat = P2
    feats = [
        f({"type": "Polygon", "coordinates": [_square(*P1, 0.0004)]}, "sibling_overlap",
          ["310117001001001", "310117001001002"], "the two grids overlap by 2,048 m²",
          2048.3),
        f({"type": "MultiPolygon", "coordinates": [
            [[[lon, lat], [lon + 0.0002, lat], [lon, lat + 0.0001], [lon, lat]]],
            [[[lon + 0.001, lat], [lon + 0.0012, lat], [lon + 0.001, lat + 0.0001],
              [lon + 0.001, lat]]]]},
          "gap_in_parent", ["310117001001"], "a gap inside <b>居村</b> 001 not covered",
          3.2),
        f({"type": "Point", "coordinates": list(P3)}, "duplicate_code",
          ["310117002003004"], "two units have this code", None),
        f({"type": "Polygon", "coordinates": [[[P4[0], P4[1]], [P4[0] + 0.001, P4[1] + 0.001],
                                               [P4[0] + 0.001, P4[1]], [P4[0], P4[1] + 0.001],
                                               [P4[0], P4[1]]]]},
          "invalid_geometry", ["310117003001001"], "Self-intersection[121.3005 30.9805]",
          None),
    ]
    return {"type": "FeatureCollection", "generation": generation,
            "counts": {"sibling_overlap": 1, "gap_in_parent": 1, "duplicate_code": 1,
                       "invalid_geometry": 1}, "features": feats}


SERVED: dict[str, Any] = {}  # what the test's problems route answers


@pytest.fixture(scope="module")
def gen_server(settings: Settings, engine: Engine, demo_loaded: int) -> Iterator[str]:
    """The app (on the session database with the demo city) in a thread; its base URL."""
    import uvicorn

    from api.app import create_app
    from api.routers import maps

    app: FastAPI = create_app(settings, engine=engine, listen=False)
    app.dependency_overrides[maps.problems_url_template] = lambda: "/test/problems/{id}"

    @app.get("/test/problems/{generation}", include_in_schema=False)
    def problems(generation: int) -> dict[str, Any]:
        return SERVED["fc"]

    port = free_port(0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive(), "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def _open(w: Watched, url: str) -> Any:
    p = w.page
    p.goto(url)
    p.wait_for_function("window.gridopsGeneration && gridopsGeneration.state && "
                        "gridopsGeneration.state.ready", timeout=30_000)
    return p.evaluate("gridopsGeneration.state")


def _bounds(p: Any) -> list[float]:
    return list(p.evaluate("(() => { const b = gridopsMap.getBounds(); return "
                           "[b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()"))


def test_problems_are_drawn_listed_and_zoomed_to(browser: Any, gen_server: str,
                                                 demo_loaded: int) -> None:
    SERVED["fc"] = _problems(demo_loaded)
    w = Watched(browser, gen_server)
    try:
        p = w.page
        state = _open(w, f"{gen_server}/map/generation/{demo_loaded}")
        assert state["error"] is None
        # every level, the finest one over two pages of 1000
        assert state["units"] == {"district": 1, "street": 20, "community": 386, "grid": 1322}
        assert state["problems"] == 4
        items = p.locator("#problems li.problem")
        assert items.count() == 4
        texts = items.all_inner_texts()
        assert "siblings overlap" in texts[0] and "310117001001002" in texts[0]
        assert "2,048 m²" in texts[0]
        assert "<b>居村</b>" in texts[1]  # data is shown as text, never as HTML
        assert "duplicate code" in texts[2] and "invalid geometry" in texts[3]
        assert "4: " in p.inner_text("#problem-summary")
        assert p.locator(".gen-valid").count() == 0
        assert p.evaluate("gridopsLayers['Problems'].getLayers().length") == 8  # + markers
        assert p.evaluate("gridopsMap.hasLayer(gridopsLayers['网格 (grid)'])")
        city = _bounds(p)
        assert city[0] < P3[0] < P4[0] < city[2] and city[1] < P4[1] < P3[1] < city[3]
        w.shot("generation-problems")

        items.nth(0).click()  # the overlap: zoomed in on it
        p.wait_for_function("document.querySelector('#problems li.selected') !== null")
        zoomed = _bounds(p)
        assert zoomed != city and p.evaluate("gridopsMap.getZoom()") >= 15
        assert zoomed[0] < P1[0] < zoomed[2] and zoomed[1] < P1[1] < zoomed[3]
        assert (zoomed[2] - zoomed[0]) < (city[2] - city[0]) / 20
        w.shot("generation-problem-zoomed")

        items.nth(2).click()  # the point: centred on it, close in
        p.wait_for_function("gridopsGeneration.state.selected === 2")
        point = _bounds(p)
        assert point != zoomed and p.evaluate("gridopsMap.getZoom()") == 18
        assert point[0] < P3[0] < point[2] and point[1] < P3[1] < point[3]
        assert "selected" in (items.nth(2).get_attribute("class") or "")
        assert "selected" not in (items.nth(0).get_attribute("class") or "")
        w.clean()
    finally:
        w.close()


def test_a_valid_generation_says_so(browser: Any, gen_server: str, demo_loaded: int) -> None:
    SERVED["fc"] = {"type": "FeatureCollection", "generation": demo_loaded, "counts": {},
                    "features": []}
    w = Watched(browser, gen_server)
    try:
        state = _open(w, f"{gen_server}/map/generation/{demo_loaded}")
        assert state["problems"] == 0 and state["error"] is None
        assert w.page.inner_text(".gen-valid") == "no problems: this generation is valid"
        assert w.page.locator("#problems li").count() == 0
        w.clean()
    finally:
        w.close()


def test_unknown_and_bad_generations(gen_server: str) -> None:
    r = httpx.get(f"{gen_server}/map/generation/999999")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert r.json()["code"] == "not_found" and "999999" in r.json()["detail"]
    for bad in ("0", "x", str(2**40)):
        assert httpx.get(f"{gen_server}/map/generation/{bad}").status_code == 422


def test_the_page_fetches_the_generations_problems(settings: Settings, engine: Engine,
                                                   demo_loaded: int) -> None:
    """Without the test's override the page reads GET /generations/{id}/problems."""
    from api.app import create_app

    c = TestClient(create_app(settings, engine=engine, listen=False))
    r = c.get(f"/map/generation/{demo_loaded}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'"problems_url": "/generations/{demo_loaded}/problems"' in r.text
    assert "/map/static/generation.js" in r.text
