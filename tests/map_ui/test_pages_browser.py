"""Every map page in headless Chromium: no console error, nothing fetched from outside
gridops, the named layers present and filled; the lookup click round trip; the wall's
refresh keeps the view; tiles from a configured server, and nothing breaks without them.
Screenshots land in test-artifacts/map/."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import text

from layers.db import make_engine
from tests.map_ui.conftest import Watched

WALL_LAYERS = {"区 (district)", "街镇 (street)", "居村 (community)", "网格 (grid)",
               "Zones: cgzf_zones", "Zones: market_zones", "Zones: police_beats",
               "Hotspots (Gi*)", "Chronic spots (顽症)", "Open cases"}


def _layer_names(page: Any) -> set[str]:
    return set(page.eval_on_selector_all(
        ".leaflet-control-layers-overlays label span",
        "els => els.map(e => e.textContent.trim())"))


def _open(page: Any, url: str) -> None:
    """Load a map page and wait until its map exists."""
    page.goto(url, wait_until="networkidle")
    page.wait_for_function("window.gridopsMap !== undefined")


def _count(page: Any, layer: str) -> int:
    """Leaflet layers drawn inside a named overlay (nested groups flattened); for a vector
    tile layer, the distinct features in the tiles it has loaded."""
    return int(page.evaluate("""name => {
        const vg = window.gridopsLayers[name];
        if (vg._vectorTiles) {
            const ids = new Set();
            Object.values(vg._vectorTiles).forEach(
                r => Object.keys(r._features || {}).forEach(k => ids.add(k)));
            return ids.size;
        }
        let n = 0;
        const walk = l => { if (l.getLayers) { l.getLayers().forEach(walk); } else { n++; } };
        walk(window.gridopsLayers[name]);
        return n; }""", layer))


@pytest.fixture(scope="module")
def spot_with_asset(map_db: str) -> dict[str, Any]:
    """A manhole cover of the demo city: its spot, code and owner."""
    eng = make_engine(map_db)
    with eng.connect() as c:
        r = c.execute(text(
            """SELECT a.code, ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat, d.name AS owner
                 FROM asset a JOIN department d ON d.code = a.owner_department
                WHERE a.kind LIKE 'manhole%' AND a.valid_to IS NULL
                ORDER BY a.code LIMIT 1""")).mappings().one()
    eng.dispose()
    return dict(r)


LEVELS = ("区 (district)", "街镇 (street)", "居村 (community)", "网格 (grid)")
TILES_LOADED = ("() => [" + ", ".join(f"'{n}'" for n in LEVELS) + "].every("
                "n => window.gridopsLayers && window.gridopsLayers[n]._gridopsLoaded)")


def test_wall_shows_every_layer_filled(watched: Watched, map_server: str) -> None:
    p = watched.page
    tiles: list[tuple[str, int]] = []
    p.on("response", lambda r: "/tiles/WebMercatorQuad/" in r.url
         and tiles.append((r.url, r.status)))
    p.goto(map_server + "/map/wall", wait_until="networkidle")
    p.wait_for_function("window.gridopsLayers && "
                        "window.gridopsLayers['Hotspots (Gi*)'].getLayers().length > 0")
    p.wait_for_function("window.gridopsLayers['Open cases'].getLayers().length > 0")
    p.wait_for_function(TILES_LOADED)
    assert _layer_names(p) == WALL_LAYERS
    # the grid levels came as vector tiles of the active generation, and were drawn
    grid_tiles = [(u, st) for u, st in tiles if "/grid-grid/" in u]
    assert grid_tiles and all(st == 200 for _, st in tiles), tiles[:5]
    assert all("generation=" in u for u, _ in grid_tiles)
    assert not any("/zones/" in u for u, _ in tiles)  # the zone layers start switched off
    painted = p.evaluate("""() => Array.from(document.querySelectorAll('canvas.leaflet-tile'))
        .filter(c => c.width > 0 && c.getContext('2d').getImageData(0, 0, c.width, c.height)
                      .data.some((v, i) => i % 4 === 3 && v > 0)).length""")
    assert painted > 0, "no tile canvas has a drawn pixel"
    p.evaluate("() => { gridopsMap.addLayer(gridopsLayers['Zones: police_beats']); }")
    p.wait_for_function("gridopsLayers['Zones: police_beats']._gridopsLoaded")
    assert _count(p, "Zones: police_beats") > 0 and any("/zones/" in u for u, _ in tiles)
    assert all(st == 200 for _, st in tiles)
    p.evaluate("() => { gridopsMap.removeLayer(gridopsLayers['Zones: police_beats']); }")
    assert _count(p, "网格 (grid)") == 1322
    assert _count(p, "居村 (community)") > 300 and _count(p, "街镇 (street)") >= 18
    assert _count(p, "区 (district)") == 1
    assert _count(p, "Hotspots (Gi*)") > 50
    assert _count(p, "Chronic spots (顽症)") >= 0
    # counts in the corner equal the API's
    counts = httpx.get(map_server + "/map/wall/counts.json").json()
    shown = p.inner_text("#count-open").replace(",", "")
    assert int(shown) == counts["open"] > 0
    assert p.is_visible(".wall-legend") and "Hot spot, 99% confidence" in p.inner_text(
        ".wall-legend")
    # the view lives in the hash
    assert re.match(r"\d+/\d+\.\d+/\d+\.\d+/", urlparse(p.url).fragment)
    watched.shot("wall")
    watched.clean()


def test_wall_refresh_keeps_the_view_and_the_layers(watched: Watched, map_server: str
                                                    ) -> None:
    p = watched.page
    _open(p, map_server + "/map/wall")
    p.evaluate("() => { window.gridopsMap.setView([31.03, 121.23], 14); }")
    p.evaluate("() => { gridopsMap.removeLayer(gridopsLayers['Open cases']); }")
    first = p.inner_text("#gridops-status")
    # the page refreshes its data every 3 s (GRIDOPS_MAP_REFRESH_S in the fixture)
    p.wait_for_function("s => document.getElementById('gridops-status').textContent !== s",
                        arg=first, timeout=15_000)
    zoom, lat, lon = p.evaluate("[gridopsMap.getZoom(), gridopsMap.getCenter().lat, "
                                "gridopsMap.getCenter().lng]")
    assert zoom == 14 and abs(lat - 31.03) < 1e-4 and abs(lon - 121.23) < 1e-4
    # a full reload (a wall PC restarting) comes back to the same view and layers
    p.reload(wait_until="networkidle")
    p.wait_for_function("window.gridopsMap !== undefined")
    assert p.evaluate("gridopsMap.getZoom()") == 14
    assert not p.evaluate("gridopsMap.hasLayer(gridopsLayers['Open cases'])")
    assert p.evaluate("gridopsMap.hasLayer(gridopsLayers['Hotspots (Gi*)'])")
    watched.clean()


def test_wall_click_leads_to_the_grid_and_the_lookup(watched: Watched, map_server: str
                                                      ) -> None:
    p = watched.page
    # zoomed in, only the grid layer on (state from the hash)
    _open(p, map_server + "/map/wall#15/31.03/121.23/网格 (grid)")
    assert not p.evaluate("gridopsMap.hasLayer(gridopsLayers['Hotspots (Gi*)'])")
    p.wait_for_function("window.gridopsLayers['网格 (grid)']._gridopsLoaded")
    p.mouse.move(480, 440)
    p.mouse.move(500, 450)
    p.wait_for_selector(".leaflet-tooltip:not(.lbl)")  # hovering names the grid
    assert re.search(r"\b\d{15}\b", p.inner_text(".leaflet-tooltip:not(.lbl)"))
    p.evaluate("() => { gridopsMap.setZoom(16, {animate: false}); }")
    p.wait_for_selector(".leaflet-tooltip.lbl-fine")  # zoomed in: the grids' names
    p.evaluate("() => { gridopsMap.setZoom(15, {animate: false}); }")
    p.wait_for_function("window.gridopsLayers['网格 (grid)']._gridopsLoaded")
    p.mouse.click(500, 450)
    p.wait_for_selector(".leaflet-popup-content")
    popup = p.inner_text(".leaflet-popup-content")
    assert "grid page" in popup and re.search(r"\b\d{15}\b", popup)
    code = re.search(r"\b(\d{15})\b", popup).group(1)
    with p.expect_navigation():
        p.click(".leaflet-popup-content a:has-text('who is responsible here?')")
    p.wait_for_selector("#lookup-panel")
    assert code in p.inner_text("#lookup-panel")
    watched.clean()


def test_wall_filters_in_the_url(watched: Watched, map_server: str) -> None:
    p = watched.page
    p.goto(map_server + "/map/wall?period=90d&category=E", wait_until="networkidle")
    p.wait_for_function("window.gridopsLayers['Hotspots (Gi*)'].getLayers().length > 0")
    assert "category E" in p.inner_text(".wall-title")
    watched.clean()


def test_lookup_page_and_click_round_trip(watched: Watched, map_server: str,
                                          spot_with_asset: dict[str, Any]) -> None:
    p = watched.page
    a = spot_with_asset
    p.goto(f"{map_server}/map/lookup?lon={a['lon']}&lat={a['lat']}", wait_until="networkidle")
    names = _layer_names(p)
    assert {"Grid", "Neighbouring grids (四至)", "Department zones here",
            "Ownership areas here", "Assets nearby"} <= names
    assert _count(p, "Assets nearby") >= 1
    panel = p.inner_text("#lookup-panel")
    assert a["code"] in panel and a["owner"] in panel
    # the owner trail is a readable table: every rule with its outcome and reason
    rules = p.eval_on_selector_all("#lookup-panel table tbody tr td:first-child",
                                   "els => els.map(e => e.textContent)")
    assert {"asset", "area", "territorial"} <= set(rules)
    watched.shot("lookup")
    # click 200 px left of the spot: the page looks that spot up
    box = p.locator(".folium-map").bounding_box()
    before = p.url
    with p.expect_navigation():
        p.mouse.click(box["x"] + box["width"] / 2 - 200, box["y"] + box["height"] / 2)
    q = parse_qs(urlparse(p.url).query)
    assert p.url != before
    lon, lat = float(q["lon"][0]), float(q["lat"][0])
    assert lon < a["lon"] and abs(lat - a["lat"]) < 1e-3
    p.wait_for_selector("#spot")
    assert float(p.get_attribute("#spot", "data-lon")) == pytest.approx(lon, abs=1e-7)
    api = httpx.get(f"{map_server}/lookup", params={"lon": lon, "lat": lat}).json()
    if api["chain"]:
        assert api["chain"][-1]["code"] in p.inner_text("#lookup-panel")
    watched.shot("lookup-after-click")
    watched.clean()


def test_grid_page(watched: Watched, map_server: str, map_db: str) -> None:
    eng = make_engine(map_db)
    with eng.connect() as c:
        code = c.execute(text('SELECT grid_code FROM "case" WHERE grid_code IS NOT NULL '
                              "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar_one()
    eng.dispose()
    p = watched.page
    p.goto(f"{map_server}/map/grid/{code}", wait_until="networkidle")
    panel = p.inner_text("#grid-panel")
    for heading in ("People (1 + X + Y)", "Patrol shifts", "Neighbouring grids (四至)",
                    "Assets by kind and owner", "Cases", "Latest cases", "KPIs"):
        assert heading in panel
    assert code in panel and "leader" in panel
    assert "adoption_rate" in panel  # the grid's KPIs over the last year
    assert {"Grid", "Neighbouring grids (四至)"} <= _layer_names(p)
    assert _count(p, "Neighbouring grids (四至)") >= 3
    watched.shot("grid")
    watched.clean()


def test_tiles_from_the_intranet_server(browser: Any, tiled_server: str, tile_server: str
                                        ) -> None:
    host = tile_server.split("/{z}")[0]
    w = Watched(browser, tiled_server, allow=(host,))
    try:
        w.page.goto(tiled_server + "/map/wall", wait_until="networkidle")
        w.page.wait_for_function(
            "document.querySelectorAll('.leaflet-tile-loaded').length > 0")
        assert "intranet tiles (test)" in w.page.inner_text(".leaflet-control-attribution")
        w.clean()
    finally:
        w.close()


def test_nothing_breaks_when_tiles_cannot_load(browser: Any, tiled_server: str) -> None:
    w = Watched(browser, tiled_server)  # the tile server is outside what it may reach
    try:
        w.page.goto(tiled_server + "/map/wall", wait_until="networkidle")
        w.page.wait_for_function(
            "window.gridopsLayers['Hotspots (Gi*)'].getLayers().length > 0")
        w.page.wait_for_function(TILES_LOADED)
        assert _count(w.page, "网格 (grid)") == 1322
        assert w.outside, "tiles were asked for"
        # the only complaints are the tiles that could not load
        assert all("Failed to load resource" in e for e in w.errors)
        assert all(".png" in u for u in w.failed)
        w.shot("wall-without-tiles")
    finally:
        w.close()


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/hotspots?res=12", 422, "res: 12 is outside 6..10"),
    ("/hotspots?period=yesterday", 422, "period: 'yesterday'"),
    ("/map/wall?period=13x", 422, "period"),
    ("/map/lookup?lon=200&lat=31", 422, "lon"),
    ("/map/lookup?lon=nan&lat=31", 422, "lon"),
    ("/map/grid/999999999", 404, "999999999"),
    ("/map/wall/open.json?bbox=1,2,3", 422, "bbox"),
])
def test_bad_input_is_a_clear_4xx(map_server: str, path: str, status: int, words: str
                                  ) -> None:
    r = httpx.get(map_server + path)
    assert r.status_code == status, r.text
    assert words in r.text
