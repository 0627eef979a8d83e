"""`python -m benchmarks.wall_render`: the wall map's first screen in a real browser on the
100,000-grid megacity (its own throw-away cluster, a real 2-worker server, Debian's headless
Chromium through Playwright, a 1600 x 900 window).

The wall (`/map/wall`): the grid levels as vector tiles (Leaflet.VectorGrid). Timed from the
navigation's start (the page's performance.now()) until every grid-level VectorGrid layer on
the map has fired "load" (gridops.js sets `_gridopsLoaded` on it; the layers are those of
`window.gridopsLayers` that are L.VectorGrid and on the map: the zones start switched off),
at least one tile canvas has a drawn pixel, and two animation frames have passed. Warm:
after the server's prewarm of the first views (tile_cache no longer growing, or the log line
of every worker); cold: a server started with GRIDOPS_TILES_PREWARM=false and an empty
tile_cache, its first wall screen (every tile built by PostGIS on demand). Bytes: the body of
every response the page received (request.sizes(); the server does not compress), the
tiles' alone and the whole page's (HTML, scripts, tiles, labels, hot spots, counts).

Baseline in the same run, browser and server: what the wall did before the tiles, one
GeoJSON per grid level drawn by Leaflet's L.geoJSON (canvas renderer, the old wall's
styles), the shapes of layers.wall.outlines (what the old wall embedded; kept an hour in its
page cache, so computed once here before the runs and served as static files by Python's
http.server on another port: Leaflet's script and CSS from gridops' /map/static, the same
view fitted to the same bounds). Timed from the navigation's start until every level is
added to the map and two animation frames have passed. A lower bound of the old wall: no
tooltip, highlight or click handlers, no other overlay.

Every run in a fresh browser context (an empty HTTP cache), the wall and the baseline
alternated, one unmeasured run of each first; medians. Ratios: the baseline's time over the
wall's (target >= 1) and the bytes likewise."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from etl.demo_city import build_city, megacity_source
from layers import grids, tiles, wall
from layers.db import make_engine
from layers.settings import Settings
from map_ui.pages import _depth_style

from .env import analyze, create_database, load_grid, throwaway_cluster
from .report import Report, Target, log
from .serve_load import server

VIEWPORT = {"width": 1600, "height": 900}  # the wall's screen (layers.tiles.SCREEN)
TILE_PATH = "/tiles/WebMercatorQuad/"
DONE_TIMEOUT_MS = 600_000

# Installed before any script of the page: every animation frame, until the wall's grid
# levels are in (the same test the browser tests make), then a drawn pixel, then two frames.
WALL_PROBE = """
(() => {
  if (window.top !== window) { return; }
  function painted() {
    return Array.from(document.querySelectorAll('canvas.leaflet-tile')).filter(c =>
      c.width > 0 && c.getContext('2d').getImageData(0, 0, c.width, c.height).data
        .some((v, i) => i % 4 === 3 && v > 0)).length;
  }
  let loadedAt = null;
  function tick() {
    const named = window.gridopsLayers, map = window.gridopsMap;
    if (named && map && window.L && L.VectorGrid) {
      const ls = Object.keys(named).filter(k => named[k] instanceof L.VectorGrid &&
                                                map.hasLayer(named[k]));
      if (ls.length && ls.every(k => named[k]._gridopsLoaded)) {
        if (loadedAt === null) { loadedAt = performance.now(); }
        const n = painted();
        if (n > 0) {
          requestAnimationFrame(() => requestAnimationFrame(() => {
            window.__benchDone = {loaded: loadedAt, done: performance.now(), layers: ls,
                                  html: performance.getEntriesByType('navigation')[0]
                                    .responseEnd,
                                  painted: n, zoom: map.getZoom(),
                                  canvases: document.querySelectorAll(
                                    'canvas.leaflet-tile').length};
          }));
          return;
        }
      } else {
        loadedAt = null;  // a layer started loading again
      }
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
})();
"""

LAYER_STATE = """() => { const n = window.gridopsLayers, m = window.gridopsMap;
  if (!n || !m) { return null; }
  return Object.keys(n).filter(k => window.L && L.VectorGrid && n[k] instanceof L.VectorGrid)
    .map(k => [k, m.hasLayer(n[k]), !!n[k]._gridopsLoaded,
               Object.values(n[k]._tiles || {}).filter(t => !t.loaded).length]); }"""

BASELINE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>the wall before the tiles (benchmark baseline)</title>
<link rel="stylesheet" href="{css}">
<script src="{js}"></script>
<style>html, body, #map {{ margin: 0; width: 100%; height: 100%; }}</style>
</head><body><div id="map"></div>
<script>
(function () {{
  var LEVELS = {levels};
  var map = L.map("map", {{preferCanvas: true, zoomControl: true}});
  map.fitBounds({fit}, {{animate: false}});
  Promise.all(LEVELS.map(function (lv) {{
    return fetch(lv.url).then(function (r) {{ return r.json(); }});
  }})).then(function (fcs) {{
    var loaded = performance.now(), n = 0;
    fcs.forEach(function (fc, i) {{
      n += fc.features.length;
      L.geoJSON(fc, {{style: function () {{ return LEVELS[i].style; }}}}).addTo(map);
    }});
    var added = performance.now();
    requestAnimationFrame(function () {{ requestAnimationFrame(function () {{
      window.__benchDone = {{loaded: loaded, added: added, done: performance.now(),
                             html: performance.getEntriesByType("navigation")[0].responseEnd,
                             features: n, zoom: map.getZoom()}};
    }}); }});
  }}).catch(function (e) {{ window.__benchDone = {{error: String(e)}}; }});
}})();
</script></body></html>
"""


@dataclass
class Run:
    """One page load: its times (ms from the navigation's start) and what it fetched."""

    done_ms: float
    loaded_ms: float
    page_bytes: int
    data_bytes: int  # the tiles' (wall) or the GeoJSON's (baseline)
    data_requests: int
    info: dict[str, Any] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    tile_cache: Counter[str] = field(default_factory=Counter)
    zooms: Counter[str] = field(default_factory=Counter)
    addresses: set[tuple[str, int, int, int]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def chromium_path() -> str:
    """Debian's chromium, found as tests/map_ui/conftest.py finds it."""
    path = os.environ.get("GRIDOPS_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise RuntimeError("chromium is not installed: run scripts/setup.sh (make test does)")
    return path


def load_page(browser: Any, url: str, is_data: Any, probe: str | None = None) -> Run:
    """Open url in a fresh context, wait for window.__benchDone, then for the network to
    settle; the figures of the load."""
    ctx = browser.new_context(viewport=VIEWPORT, locale="zh-CN", device_scale_factor=1)
    try:
        if probe:
            ctx.add_init_script(probe)
        page = ctx.new_page()
        requests: list[Any] = []
        errors: list[str] = []
        failed: list[str] = []

        def console(m: Any) -> None:
            if m.type == "error":
                errors.append(m.text)

        page.on("console", console)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("requestfinished", lambda r: requests.append(r))
        page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
        responses: list[tuple[int, str]] = []
        page.on("response", lambda r: responses.append((r.status, r.url)))
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_function("() => window.__benchDone", timeout=DONE_TIMEOUT_MS,
                                   polling=100)
        except Exception as e:
            state = page.evaluate(LAYER_STATE)
            bad = [f"{st} {u}" for st, u in responses if st >= 400]
            raise RuntimeError(
                f"{url}: not drawn after {DONE_TIMEOUT_MS / 1000:.0f} s ({e.__class__.__name__})"
                f"; layers {state}; {len(responses)} responses, errors {bad[:5]}; "
                f"console {errors[:5]}; failed {failed[:5]}") from e
        info = page.evaluate("() => window.__benchDone")
        if os.environ.get("GRIDOPS_BENCH_TIMINGS"):  # where the first screen's time goes
            for name, start, end in page.evaluate(
                    "() => performance.getEntriesByType('resource').map("
                    "e => [e.name, e.startTime, e.responseEnd])"):
                print(f"  {start:8.1f} {end:8.1f} {end - start:7.1f} ms  "
                      f"{name.split('//', 1)[-1].split('/', 1)[-1][:90]}", file=sys.stderr)
        if "error" in info:
            raise RuntimeError(f"{url}: {info['error']}")
        with contextlib.suppress(Exception):  # the wall refreshes itself: may never idle
            page.wait_for_load_state("networkidle", timeout=5_000)
        run = Run(float(info["done"]), float(info["loaded"]), 0, 0, 0, info,
                  errors=errors, failed=failed)
        for r in requests:
            size = int(r.sizes()["responseBodySize"])
            run.page_bytes += size
            resp = r.response()
            if resp is not None:
                run.statuses[resp.status] += 1
            if is_data(r.url):
                run.data_bytes += size
                run.data_requests += 1
                if resp is not None and TILE_PATH in r.url:
                    run.tile_cache[resp.headers.get("x-tile-cache", "?")] += 1
                    coll = r.url.split("/collections/", 1)[1].split("/", 1)[0]
                    z, x, y = r.url.split(TILE_PATH, 1)[1].split("?", 1)[0].split("/")[:3]
                    run.zooms[f"z{z}"] += 1
                    run.addresses.add((coll, int(z), int(x), int(y)))
        page.close()
        return run
    finally:
        ctx.close()


def is_grid_tile(url: str) -> bool:
    return TILE_PATH in url and "/collections/grid-" in url


def is_level_geojson(url: str) -> bool:
    return "/level-" in url and url.endswith(".json")


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[str]:
    """Python's http.server on a loopback port, serving root; its base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(Quiet, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, name="bench-static", daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def env_var(name: str, value: str) -> Iterator[None]:
    """An environment variable for what starts inside (the server's settings)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def tile_count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.scalar(text("SELECT count(*) FROM tile_cache")) or 0)


def wait_prewarm(engine: Engine, logfile: Path, workers: int, timeout_s: float
                 ) -> tuple[float, int, bool]:
    """Until every worker logged its first tiles ready, or tile_cache stopped growing for
    5 s (at least one tile), or the timeout: (seconds waited, tiles stored, finished)."""
    t0 = time.perf_counter()
    last, since = -1, time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        n = tile_count(engine)
        ready = len(re.findall(r"the wall's first \d+ tiles .* ready",
                               logfile.read_text(errors="replace")))
        if ready >= workers:
            return time.perf_counter() - t0, n, True
        if n != last:
            last, since = n, time.perf_counter()
        elif n > 0 and time.perf_counter() - since >= 5.0:
            return time.perf_counter() - t0, n, True
        time.sleep(0.5)
    return time.perf_counter() - t0, tile_count(engine), False


def tile_addresses(engine: Engine) -> set[tuple[str, int, int, int]]:
    """(collection, z, x, y) of every tile in tile_cache."""
    with engine.connect() as c:
        return {(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in
                c.execute(text("SELECT collection, z, x, y FROM tile_cache"))}


def wall_assets(base: str) -> tuple[str, str, str]:
    """The wall's Leaflet script and CSS URLs and its fitted bounds (JS literal), read from
    its HTML."""
    html = httpx.get(f"{base}/map/wall", timeout=120).raise_for_status().text
    js = re.search(r'src="([^"]*/leaflet\.js)"', html)
    css = re.search(r'href="([^"]*/leaflet\.css)"', html)
    fit = re.search(r"gridops\.keepState\(map, named, (\[\[[^\]]*\], ?\[[^\]]*\]\])\)", html)
    if not (js and css and fit):
        raise RuntimeError("the wall's HTML has no leaflet.js, leaflet.css or keepState bounds")
    return base + js.group(1), base + css.group(1), fit.group(1)


def build_baseline(root: Path, engine: Engine, gen: int, js: str, css: str, fit: str
                   ) -> tuple[float, int, int]:
    """wall.outlines of every level as root/level-<rank>.json and the page root/index.html
    drawing them; (seconds to compute them, bytes, features)."""
    levels: list[dict[str, Any]] = []
    size = n = 0
    t0 = time.perf_counter()
    with Session(engine) as s:
        lvs = grids.levels(s)
        for i, lv in enumerate(lvs):
            fc = wall.outlines(s, gen, lv.rank)
            body = orjson.dumps(fc)
            (root / f"level-{lv.rank}.json").write_bytes(body)
            size += len(body)
            n += len(fc["features"])
            depth = len(lvs) - 1 - i
            colour, weight, _, _ = _depth_style(depth)
            levels.append({"url": f"level-{lv.rank}.json", "style": {
                "color": colour, "weight": weight, "fillOpacity": 0.0, "fill": depth == 0,
                "opacity": 0.9}})
    seconds = time.perf_counter() - t0
    (root / "index.html").write_text(BASELINE_HTML.format(
        css=css, js=js, fit=fit, levels=orjson.dumps(levels).decode()))
    return seconds, size, n


def _med(runs: list[Run], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


def _html(runs: list[Run]) -> float:
    return float(statistics.median(float(r.info.get("html", 0)) for r in runs)) / 1000


def _spread(runs: list[Run]) -> str:
    xs = [r.done_ms / 1000 for r in runs]
    return f"median of {len(xs)}, {min(xs):.2f}-{max(xs):.2f} s"


def _problems(rep: Report, label: str, runs: list[Run]) -> None:
    errors = [e for r in runs for e in r.errors]
    failed = [f for r in runs for f in r.failed]
    bad = Counter({st: k for r in runs for st, k in r.statuses.items() if st >= 400})
    if errors:
        rep.note(f"{label}: {len(errors)} console/page errors, e.g. "
                 + "; ".join(sorted(set(errors))[:5]))
    if failed:
        rep.note(f"{label}: {len(failed)} failed requests, e.g. "
                 + "; ".join(sorted(set(failed))[:5]))
    if bad:
        rep.note(f"{label}: HTTP error answers {dict(bad)}")


def run(rep: Report, cluster: Any, home: Path, n_grids: int, repeats: int) -> None:
    url = create_database(cluster, "wall_render")
    settings = Settings(database_url=url, home=home)
    engine = make_engine(url)
    try:
        log(f"megacity: building {n_grids:,} grids")
        specs = build_city(megacity_source(n_grids=n_grids))
        loaded = load_grid(engine, specs, settings, "bench-wall-render")
        if loaded.generation is None:
            raise RuntimeError(f"the megacity did not load: {loaded.error}")
        gen = loaded.generation
        analyze(engine)
        log(f"  loaded in {loaded.seconds:.1f} s")
        sec = f"wall render (megacity, {len(specs):,} units)"
        rep.meta.update(grids=n_grids, units=len(specs), generation=gen, repeats=repeats,
                        viewport=VIEWPORT, chromium=chromium_path())
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=[
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run"])
            rep.meta["browser_version"] = browser.version
            try:
                _measure(rep, sec, browser, engine, home, url, gen, repeats)
            finally:
                browser.close()
    finally:
        engine.dispose()


def _measure(rep: Report, sec: str, browser: Any, engine: Engine, home: Path, url: str,
             gen: int, repeats: int) -> None:
    prewarm_field = "tiles_prewarm" in Settings.model_fields
    cold: Run | None = None
    if prewarm_field:
        log("cold: a server without the prewarm, an empty tile_cache")
        with env_var("GRIDOPS_TILES_PREWARM", "false"), \
                server(url, home, workers=2) as base:
            cold = load_page(browser, f"{base}/map/wall", is_grid_tile, WALL_PROBE)
            log(f"  cold wall: {cold.done_ms / 1000:.2f} s, {cold.data_requests} tiles "
                f"{dict(cold.tile_cache)}")
        with engine.begin() as c:
            c.execute(text("DELETE FROM tile_cache"))
    else:
        rep.note("no tiles_prewarm setting in this tree: no cold run")

    with server(url, home, workers=2) as base, \
            tempfile.TemporaryDirectory(prefix="gridops-wall-before-") as tmp:
        port = base.rsplit(":", 1)[1]
        logfile = home / f"serve-{port}.log"
        waited, stored, finished = wait_prewarm(engine, logfile, 2, timeout_s=900)
        log(f"  prewarm: {stored} tiles in tile_cache after {waited:.1f} s"
            + ("" if finished else " (timed out)"))
        js, css, fit = wall_assets(base)
        root = Path(tmp)
        t_geo, geo_bytes, geo_features = build_baseline(root, engine, gen, js, css, fit)
        log(f"  baseline GeoJSON: {geo_features:,} features, {geo_bytes / 1e6:.1f} MB, "
            f"{t_geo:.1f} s")
        with static_server(root) as static:
            before = f"{static}/index.html"
            wall_url = f"{base}/map/wall"
            # the first screen after the prewarm (not in the medians), a warm-up of each
            cached = tile_addresses(engine)
            first = load_page(browser, wall_url, is_grid_tile, WALL_PROBE)
            missing = sorted(a for a in first.addresses if a not in cached)
            log(f"  first wall after the prewarm: {first.done_ms / 1000:.2f} s, "
                f"{first.data_requests} tiles {dict(first.tile_cache)}")
            load_page(browser, before, is_level_geojson)
            walls: list[Run] = []
            bases: list[Run] = []
            for i in range(repeats):
                order = [("wall", wall_url), ("before", before)]
                for name, u in order if i % 2 == 0 else order[::-1]:
                    if name == "wall":
                        r = load_page(browser, u, is_grid_tile, WALL_PROBE)
                        walls.append(r)
                    else:
                        r = load_page(browser, u, is_level_geojson)
                        bases.append(r)
                    log(f"  run {i + 1}: {name}: {r.done_ms / 1000:.2f} s, "
                        f"{r.data_bytes / 1e6:.2f} MB in {r.data_requests} requests")
        tiles_after = tile_count(engine)

    w, b = walls[-1], bases[-1]
    t_wall, t_base = _med(walls, "done_ms") / 1000, _med(bases, "done_ms") / 1000
    rep.add(sec, "baseline: L.geoJSON of every level (wall.outlines), drawn", t_base, "s",
            note=f"{_spread(bases)}; {geo_features:,} features; HTML in at {_html(bases):.2f} s, "
                 f"GeoJSON fetched and parsed at "
                 f"{_med(bases, 'loaded_ms') / 1000:.2f} s, zoom {b.info.get('zoom')}")
    rep.add(sec, "wall: vector tiles, prewarmed (every level loaded, painted)", t_wall, "s",
            note=f"{_spread(walls)}; HTML in at {_html(walls):.2f} s, layers loaded at "
                 f"{_med(walls, 'loaded_ms') / 1000:.2f} s;"
                 f" {len(w.info.get('layers', []))} VectorGrid layers, zoom "
                 f"{w.info.get('zoom')}, {w.info.get('painted')} of "
                 f"{w.info.get('canvases')} tile canvases painted")
    rep.add(sec, "render: baseline / wall (warm)", t_base / t_wall, "x", Target(">=", 1.0),
            note="> 1: the tiles draw the first screen sooner")
    rep.add(sec, "wall: the first screen after the prewarm", first.done_ms / 1000, "s",
            note=f"one run, not in the median; {first.data_requests} tiles "
                 f"{dict(first.tile_cache)} (miss: built on demand)")
    if cold is not None:
        rep.add(sec, "wall cold: no prewarm, empty tile_cache, first screen",
                cold.done_ms / 1000, "s",
                note=f"one run; {cold.data_requests} tiles {dict(cold.tile_cache)}")
        rep.add(sec, "render: baseline / wall cold", t_base * 1000 / cold.done_ms, "x",
                note="what the first screen after a start costs without the prewarm")
    tile_bytes = _med(walls, "data_bytes")
    rep.add(sec, "baseline: GeoJSON bytes", _med(bases, "data_bytes") / 1e6, "MB",
            note=f"{b.data_requests} files (one a level)")
    rep.add(sec, "wall: grid tile bytes", tile_bytes / 1e6, "MB",
            note=f"{w.data_requests} tile requests {dict(sorted(w.zooms.items()))}, "
                 f"x-tile-cache {dict(w.tile_cache)}")
    rep.add(sec, "bytes: baseline GeoJSON / wall tiles", _med(bases, "data_bytes")
            / max(tile_bytes, 1), "x", Target(">=", 1.0))
    rep.add(sec, "baseline: whole page bytes", _med(bases, "page_bytes") / 1e6, "MB",
            note="HTML, Leaflet, the GeoJSON")
    rep.add(sec, "wall: whole page bytes", _med(walls, "page_bytes") / 1e6, "MB",
            note="HTML, scripts, tiles, labels, hot spots, counts (until the network is "
                 "idle)")
    rep.add(sec, "whole page bytes: baseline / wall", _med(bases, "page_bytes")
            / max(_med(walls, "page_bytes"), 1), "x")
    rep.add(sec, "server: prewarm done after start-up", waited, "s",
            note=f"{stored} tiles in tile_cache" + ("" if finished else ", timed out")
                 + f"; {tiles_after} after the runs")
    rep.add(sec, "server: wall.outlines of every level (old wall, once an hour)", t_geo, "s",
            note="not in the baseline's time: its page cache kept them")
    rep.meta.update(
        wall_runs=[vars_of(r) for r in walls], baseline_runs=[vars_of(r) for r in bases],
        cold_run=vars_of(cold) if cold else None, first_after_prewarm=vars_of(first),
        geojson_bytes=geo_bytes, geojson_features=geo_features, prewarm_tiles=stored)
    _problems(rep, "wall", [first, *walls] + ([cold] if cold else []))
    _problems(rep, "baseline", bases)
    if missing:
        (s_, w_), (n_, e_) = orjson.loads(fit)
        inside = {(z, x, y) for z in {a[1] for a in missing}
                  for z, x, y in tiles.box_tiles((w_, s_, e_, n_), z)}
        out = sum(1 for a in missing if a[1:] not in inside)
        rep.note(f"the first wall screen after the prewarm asked for {len(missing)} grid "
                 f"tiles not in tile_cache (zooms {sorted({a[1] for a in missing})}), "
                 f"{out} of them outside the tiles meeting the territory's box (what the "
                 "prewarm builds); tile_cache had "
                 f"{stored} tiles after the prewarm, {tiles_after} after the runs")


def vars_of(r: Run) -> dict[str, Any]:
    return {"done_ms": r.done_ms, "loaded_ms": r.loaded_ms, "page_bytes": r.page_bytes,
            "data_bytes": r.data_bytes, "data_requests": r.data_requests, "info": r.info,
            "statuses": dict(r.statuses), "tile_cache": dict(r.tile_cache),
            "zooms": dict(r.zooms), "errors": r.errors, "failed": r.failed}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.wall_render")
    ap.add_argument("--grids", type=int, default=100_000, help="megacity size")
    ap.add_argument("--repeats", type=int, default=5, help="measured runs of each page")
    ap.add_argument("--quick", action="store_true", help="a 20,000-grid megacity, 3 runs")
    ap.add_argument("--json", type=Path, default=Path("/tmp/gridops-bench-wall-render.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.grids, args.repeats = min(args.grids, 20_000), min(args.repeats, 3)
    rep = Report()
    with throwaway_cluster() as cluster:
        run(rep, cluster, cluster.datadir.parent, args.grids, max(1, args.repeats))
    rep.finish("wall render: the wall's first screen in Chromium, vector tiles against one "
               "GeoJSON per level", args.json)


if __name__ == "__main__":
    main()
