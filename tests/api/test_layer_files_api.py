"""Layers as GIS files over HTTP: GET ?f= answers an attachment of the documented media type,
POST .../import reads it back changing nothing; a GBK Shapefile, bad files and oversize
bodies."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pyogrio.raw
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely import box
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import gisfile
from layers import responsibility as resp
from tests.support import ownerfixtures as fx


@pytest.fixture()
def loaded(client: TestClient, session: Session, demo_loaded: int) -> str:
    chain = client.get("/resolve", params={"lon": fx.P[0], "lat": fx.P[1]}).json()["chain"]
    fx.load(session, chain[1]["code"], chain[-1]["code"])
    return str(chain[-1]["code"])


def _count(session: Session) -> int:
    return sum(int(session.execute(text(f"SELECT count(*) FROM {d.model.__tablename__}"))
                   .scalar_one()) for d in resp.LAYERS.values())


@pytest.mark.parametrize("fmt", ["gpkg", "shp", "fgb"])
def test_export_then_import_changes_nothing(client: TestClient, session: Session, loaded: str,
                                            fmt: str) -> None:
    before = _count(session)
    for name in ("assets", "areas", "departments", "teams", "roles"):
        r = client.get(f"/layers/{name}", params={"f": fmt})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(gisfile.MEDIA_TYPES[fmt])
        assert "attachment" in r.headers["content-disposition"]
        assert name in r.headers["content-disposition"]
        rep = client.post(f"/layers/{name}/import", content=r.content,
                          headers={"content-type": gisfile.MEDIA_TYPES[fmt]})
        assert rep.status_code == 200, rep.text
        body = rep.json()
        assert body["created"] == body["updated"] == body["refused_count"] == 0, body
        assert body["unchanged"] == body["read"] > 0
    assert _count(session) == before


def test_export_in_another_crs_and_csv(client: TestClient, loaded: str) -> None:
    r = client.get("/layers/areas", params={"f": "geojson", "crs": "EPSG:4549"})
    assert r.status_code == 200
    x = r.json()["features"][0]["geometry"]["coordinates"][0][0][0][0]
    assert x > 1000  # metres
    rep = client.post("/layers/areas/import", content=r.content,
                      headers={"content-type": "application/geo+json"}).json()
    assert rep["unchanged"] == 2 and rep["created"] == 0, rep
    csv = client.get("/layers/areas", params={"f": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("WKT,")
    rep = client.post("/layers/areas/import", content=csv.content,
                      headers={"content-type": "text/csv"}).json()
    assert rep["unchanged"] == 2 and rep["created"] == 0, rep
    assert client.get("/layers/areas", params={"f": "kml"}).status_code == 422
    assert client.get("/layers/areas", params={"crs": "EPSG:4549"}).status_code == 422
    assert client.get("/layers/departments", params={"f": "gpkg",
                                                     "crs": "EPSG:4549"}).status_code == 422


def test_gbk_shapefile_upload(client: TestClient, loaded: str, tmp_path: Any) -> None:
    shp = tmp_path / "a.shp"
    pyogrio.raw.write(str(shp), shapely.to_wkb(np.array([box(121.22, 31.01, 121.221, 31.011)],
                                                        dtype=object)),
                      [np.array(["GBK-9"], dtype=object), np.array(["park"], dtype=object),
                       np.array(["醉白池"], dtype=object), np.array(["LHSR"], dtype=object)],
                      ["code", "kind", "name", "owner_dp"], driver="ESRI Shapefile",
                      geometry_type="Polygon", crs="EPSG:4326", encoding="GBK")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in tmp_path.iterdir():
            if f.suffix != ".cpg":
                zf.write(f, arcname=f.name)
    rep = client.post("/layers/areas/import", params={"encoding": "GBK"},
                      content=buf.getvalue(), headers={"content-type": "application/zip"})
    assert rep.status_code == 200 and rep.json()["created"] == 1, rep.text
    assert client.get("/layers/areas/GBK-9").json()["properties"]["name"] == "醉白池"


def test_bad_files_are_4xx_and_store_nothing(client: TestClient, session: Session,
                                             loaded: str, tmp_path: Any) -> None:
    before = _count(session)
    gpkg = {"content-type": "application/geopackage+sqlite3"}
    r = client.post("/layers/areas/import", content=b"not a geopackage" * 20, headers=gpkg)
    assert r.status_code == 422 and "not a GIS file" in r.json()["detail"]
    r = client.post("/layers/areas/import", content=b"x", headers={"content-type":
                                                                   "application/zip"})
    assert r.status_code == 422 and "zip" in r.json()["detail"]
    path = tmp_path / "l.gpkg"
    pyogrio.raw.write(str(path), shapely.to_wkb(np.array(
        [shapely.LineString([(121.2, 31.0), (121.21, 31.01)])], dtype=object)),
        [np.array(["L"], dtype=object), np.array(["park"], dtype=object),
         np.array(["LHSR"], dtype=object)], ["code", "kind", "owner_department"],
        driver="GPKG", geometry_type="LineString", crs="EPSG:4326")
    r = client.post("/layers/areas/import", content=path.read_bytes(), headers=gpkg)
    assert r.status_code == 422 and "LineString" in r.json()["detail"]
    r = client.post("/layers/areas/import", params={"encoding": "klingon"},
                    content=path.read_bytes(), headers=gpkg)
    assert r.status_code == 422 and "encoding" in r.json()["detail"]
    r = client.post("/layers/areas/import", params={"layer": "nope"},
                    content=path.read_bytes(), headers=gpkg)
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    r = client.post("/layers/areas/import", content=b"a", headers={"content-type":
                                                                  "image/png"})
    assert r.status_code == 415
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    limit = settings.import_max_bytes
    settings.import_max_bytes = 100
    try:
        r = client.post("/layers/areas/import", content=path.read_bytes(), headers=gpkg)
    finally:
        settings.import_max_bytes = limit
    assert r.status_code == 413 and "100" in r.json()["detail"]
    assert _count(session) == before
