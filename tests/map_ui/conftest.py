"""A real gridops server on a copy of the demo city with a slice of case history, and a real
headless Chromium (Debian's `chromium`, installed by the set-up) driven by Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from layers.cluster import Cluster, free_port
from layers.db import make_engine
from layers.settings import Settings
from tests.support.clusters import clone_full
from tests.support.servers import wait_ready

ARTIFACTS = Path(os.environ.get("GRIDOPS_TEST_ARTIFACTS", "test-artifacts")) / "map"
HISTORY_CASES = 20_000
# a 1×1 PNG: what an intranet tile server answers
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5f6"
    "1b5d0000000049454e44ae426082")


@pytest.fixture(scope="session")
def map_db(pg_cluster: Cluster, full_engine: Engine, settings: Settings) -> str:
    """A database copied from the full demo city, with committed case history; its URL."""
    from etl.demo_history import generate_history

    url = clone_full(pg_cluster, full_engine, "gridops_map")
    eng = make_engine(url)
    with Session(eng) as s, s.begin():
        generate_history(s, cases=HISTORY_CASES, seed=31, settings=settings)
    eng.dispose()
    return url


def _serve(db_url: str, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port(0)
    full_env = dict(os.environ, GRIDOPS_DATABASE_URL=db_url, GRIDOPS_SCHEDULER_INTERVAL_S="0",
                    **env)
    log = (ARTIFACTS / f"server-{port}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", "serve", "--port", str(port)],
                            env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return url, proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def map_server(map_db: str) -> Iterator[str]:
    """The server with the default settings: no tiles (offline). Its base URL."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url, proc = _serve(map_db, GRIDOPS_MAP_REFRESH_S="3")
    try:
        yield url
    finally:
        _stop(proc)


class _Tiles(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="session")
def tile_server() -> Iterator[str]:
    """A stand-in for an intranet tile server; its URL template."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Tiles)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    httpd.shutdown()


@pytest.fixture(scope="session")
def tiled_server(map_db: str, tile_server: str) -> Iterator[str]:
    """The same data served with an intranet tile layer configured."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url, proc = _serve(map_db, GRIDOPS_MAP_TILES=tile_server,
                       GRIDOPS_MAP_ATTRIBUTION="intranet tiles (test)")
    try:
        yield url
    finally:
        _stop(proc)


def chromium_path() -> str:
    """Debian's chromium (scripts/setup.sh installs it for the tests)."""
    path = os.environ.get("GRIDOPS_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("chromium is not installed: run scripts/setup.sh (make test does)")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--no-first-run"])
        yield b
        b.close()


class Watched:
    """A page whose console errors, page errors and failed requests are recorded, and which
    may not reach anything but gridops (and the tile server when allowed)."""

    def __init__(self, browser: Any, base: str, allow: tuple[str, ...] = ()) -> None:
        self.page = browser.new_page(viewport={"width": 1600, "height": 900},
                                     locale="zh-CN")
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        ok = (base, *allow)

        def route(r: Any) -> None:
            if r.request.url.startswith(ok) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}-{datetime.now():%H%M%S}.png"
        self.page.screenshot(path=str(path))
        return path

    def clean(self) -> None:
        assert self.outside == [], f"the page reached outside gridops: {self.outside[:5]}"
        assert self.errors == [], f"console errors: {self.errors[:5]}"
        assert self.failed == [], f"failed requests: {self.failed[:5]}"

    def close(self) -> None:
        self.page.close()


@pytest.fixture()
def watched(browser: Any, map_server: str) -> Iterator[Watched]:
    w = Watched(browser, map_server)
    yield w
    w.close()
