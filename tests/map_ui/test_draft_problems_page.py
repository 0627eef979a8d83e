"""A real draft with real problems on its map page, in headless Chromium: a dirty city
imported over HTTP as a draft (keep_invalid), then /map/generation/{id} opened with a
planner's token in the fragment; without one, the page says the problems need it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session

from layers.auth import create_token
from layers.db import make_engine, upgrade
from tests.layers.test_grid_import import _dirty_city
from tests.map_ui.conftest import Watched
from tests.support.gridfiles import write_units
from tests.support.servers import serving


def test_draft_problems_on_the_map(browser: Any, scratch_db: str, tmp_path: Path) -> None:
    upgrade(scratch_db)
    eng = make_engine(scratch_db)
    with Session(eng) as s, s.begin():
        _, secret = create_token(s, "planner-li", "planner")
    eng.dispose()
    auth = {"authorization": f"Bearer {secret}"}
    dirty = write_units(tmp_path / "dirty.gpkg", _dirty_city(), driver="GPKG")
    with serving(scratch_db) as base:
        r = httpx.post(base + "/generations/import", content=dirty.read_bytes(),
                       params={"keep_invalid": "true", "filename": "dirty.gpkg"},
                       headers={**auth, "content-type": "application/geopackage+sqlite3"})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while (job := httpx.get(base + r.headers["location"], headers=auth).json())[
                "state"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert job["state"] == "done", job
        draft = job["result"]["generation"]
        w = Watched(browser, base)
        try:
            p = w.page
            p.goto(f"{base}/map/generation/{draft}#token={secret}")
            p.wait_for_function("window.gridopsGeneration && gridopsGeneration.state && "
                                "gridopsGeneration.state.ready", timeout=30_000)
            state = p.evaluate("gridopsGeneration.state")
            assert state["error"] is None, state
            assert state["units"]["grid"] == 294 and state["problems"] >= 2
            texts = p.locator("#problems li.problem").all_inner_texts()
            assert any("319998001001001" in t for t in texts)
            assert "token=" not in p.url  # the fragment is taken off the address bar
            w.shot("draft-problems")
            w.clean()
        finally:
            w.close()
        w = Watched(browser, base)
        try:
            p = w.page
            p.goto(f"{base}/map/generation/{draft}")
            p.wait_for_function("window.gridopsGeneration && gridopsGeneration.state && "
                                "(gridopsGeneration.state.ready || gridopsGeneration.state.error)",
                                timeout=30_000)
            assert "401" in str(p.evaluate("gridopsGeneration.state.error"))
        finally:
            w.close()
