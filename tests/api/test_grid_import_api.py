"""Bring your own city over HTTP, against a real server on a database of its own: the
import is a durable job (queued by one server, done by the next), its problems are GeoJSON,
and the grid exports in every format with the fields an import reads back."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyogrio
import pytest
from sqlalchemy.orm import Session

from layers.auth import create_token
from layers.db import make_engine, upgrade
from tests.layers.test_grid_import import _dirty_city
from tests.support.gridfiles import lattice_city, write_units
from tests.support.servers import serving

GPKG = "application/geopackage+sqlite3"


@pytest.fixture()
def planner_db(scratch_db: str) -> Iterator[tuple[str, dict[str, str]]]:
    upgrade(scratch_db)
    eng = make_engine(scratch_db)
    with Session(eng) as s, s.begin():
        _, secret = create_token(s, "planner-wang", "planner")
    eng.dispose()
    yield scratch_db, {"authorization": f"Bearer {secret}"}


def _wait(base: str, href: str, auth: dict[str, str], timeout: float = 90) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(base + href, headers=auth).json()
        if job["state"] in ("done", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"job {href} did not end: {job}")


def test_import_job_survives_a_restart_and_round_trips(planner_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, auth = planner_db
    city = write_units(tmp_path / "city.gpkg", lattice_city(), driver="GPKG", crs="EPSG:4549")
    dirty = write_units(tmp_path / "dirty.gpkg", _dirty_city(), driver="GPKG")
    # a server whose worker is off takes the upload and queues it
    with serving(url, GRIDOPS_JOBS_WORKER="false") as base:
        r = httpx.post(base + "/generations/import", content=city.read_bytes(),
                       headers={**auth, "content-type": GPKG}, params={"activate": "true"})
        assert r.status_code == 202, r.text
        href = r.headers["location"]
        assert r.json()["state"] == "queued" and href == r.json()["href"]
        assert httpx.post(base + "/generations/import", content=city.read_bytes(),
                          headers={"content-type": GPKG}).status_code == 401
        r = httpx.post(base + "/generations/import", content=b"not a geopackage at all",
                       headers={**auth, "content-type": GPKG})
        assert r.status_code == 422 and "GDAL" in r.json()["detail"]
        r = httpx.post(base + "/generations/import", content=b"x",
                       headers={**auth, "content-type": "image/png"})
        assert r.status_code == 415
    # the next server's worker finds it in PostgreSQL and does it
    with serving(url) as base:
        job = _wait(base, href, auth)
        assert job["state"] == "done", job
        gen = job["result"]["generation"]
        assert job["result"]["activated"] and job["result"]["counts"]["grid"] == 294
        assert httpx.get(base + "/resolve", params={"lon": 121.201, "lat": 31.001}
                         ).json()["chain"][-1]["code"].startswith("319998")
        # a dirty grid: refused, each problem with its geometry, nothing loaded
        r = httpx.post(base + "/generations/import", content=dirty.read_bytes(),
                       headers={**auth, "content-type": GPKG})
        job = _wait(base, r.headers["location"], auth)
        assert job["state"] == "failed" and job["error"]["status"] == 422
        assert "sibling_overlap" in job["error"]["message"]
        feats = job["error"]["extra"]["problems"]["features"]
        assert {f["properties"]["kind"] for f in feats} >= {"sibling_overlap", "gap_in_parent"}
        gens = httpx.get(base + "/generations").json()
        assert [g["id"] for g in gens] == [gen]
        # kept as a draft to fix: its problems over /generations/{id}/problems
        r = httpx.post(base + "/generations/import", content=dirty.read_bytes(),
                       headers={**auth, "content-type": GPKG},
                       params={"keep_invalid": "true", "filename": "dirty.gpkg"})
        job = _wait(base, r.headers["location"], auth)
        assert job["state"] == "done", job
        draft = job["result"]["generation"]
        assert httpx.get(base + f"/generations/{draft}/problems").status_code == 401
        fc = httpx.get(base + f"/generations/{draft}/problems", headers=auth).json()
        assert fc["counts"].get("sibling_overlap") and fc["features"][0]["geometry"]
        assert httpx.get(base + f"/generations/{draft}", headers=auth).json()["state"] == "draft"
        assert httpx.get(base + f"/generations/{draft}").status_code == 404  # not published
        page = httpx.get(base + f"/map/generation/{draft}")
        assert page.status_code == 200 and f"/generations/{draft}/problems" in page.text
        # a second draft is refused while this one is pending, naming it; then discarded
        r = httpx.post(base + "/generations/import", content=city.read_bytes(),
                       headers={**auth, "content-type": GPKG})
        job = _wait(base, r.headers["location"], auth)
        assert job["state"] == "failed" and f"generation {draft}" in job["error"]["message"]
        assert httpx.delete(base + f"/generations/{draft}").status_code == 401
        r = httpx.delete(base + f"/generations/{draft}", headers=auth)
        assert r.status_code == 200 and r.json()["discarded"], r.text
        assert httpx.delete(base + f"/generations/{gen}", headers=auth).status_code == 409
        assert [g["id"] for g in httpx.get(base + "/generations").json()] == [gen]
        assert httpx.get(base + "/health").json()["active_generation"]["id"] == gen
        # exports: every format, fields an import reads
        for f in ("gpkg", "shp", "geojson", "fgb", "csv"):
            r = httpx.get(base + "/grids", params={"f": f, "generation": gen})
            assert r.status_code == 200, (f, r.text)
            assert "attachment" in r.headers["content-disposition"]
            path = tmp_path / f"export.{'zip' if f == 'shp' else f}"
            path.write_bytes(r.content)
            if f == "shp":
                assert {n.rsplit(".", 1)[1] for n in zipfile.ZipFile(io.BytesIO(r.content))
                        .namelist()} >= {"shp", "shx", "dbf", "prj", "cpg"}
                continue
            if f != "csv":
                info = pyogrio.read_info(path)
                assert info["features"] == 303
                assert {"code", "name", "level", "parent"} <= set(info["fields"])
        r = httpx.get(base + "/grids", params={"f": "gpkg", "crs": "EPSG:4549", "level": "grid"})
        assert pyogrio.read_info(io.BytesIO(r.content))["crs"] == "EPSG:4549"
        assert httpx.get(base + "/grids", params={"f": "kml"}).status_code == 422
