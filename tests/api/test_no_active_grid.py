"""Before any grid is loaded every endpoint that needs one answers the same: 503
no_active_grid (not 404 here, 422 there)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from layers.db import upgrade
from layers.settings import Settings


def test_every_grid_endpoint_says_no_active_grid(scratch_db: str, settings: Settings) -> None:
    upgrade(scratch_db)
    app = create_app(settings.model_copy(update={"database_url": scratch_db}), listen=False)
    with TestClient(app) as c:
        for path in ("/resolve?lon=121.2&lat=31.0", "/grids", "/grids/310117",
                     "/owner?lon=121.2&lat=31.0&category=E0501",
                     "/lookup?lon=121.2&lat=31.0", "/hotspots", "/hotspots/chronic",
                     "/alignment", "/map/wall", "/map/grid/310117001001001"):
            r = c.get(path)
            assert r.status_code == 503, (path, r.status_code, r.text[:200])
            assert r.json()["code"] == "no_active_grid", (path, r.text[:200])
        r = c.post("/resolve/batch", json=[[121.2, 31.0]])
        assert r.status_code == 503 and r.json()["code"] == "no_active_grid"
