"""Each class of bad input is a precise 4xx (what is wrong and where), never a 500, and a
refused request changes nothing stored."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth import create_token

P = (121.2277, 31.0322)


@pytest.fixture()
def centre(full_session: Session) -> dict[str, str]:
    _, secret = create_token(full_session, "bad-input-centre", "centre")
    return {"authorization": f"Bearer {secret}"}


def _counts(s: Session) -> tuple[int, int, int]:
    return (s.scalar(text('SELECT count(*) FROM "case"')) or 0,
            s.scalar(text("SELECT count(*) FROM case_event")) or 0,
            s.scalar(text("SELECT count(*) FROM department")) or 0)


REPORT = {"channel": "patrol_app", "category": "E0501", "lon": P[0], "lat": P[1],
          "description": "游商占道"}


@pytest.mark.parametrize(("path", "body"), [
    ("/cases", REPORT),
    ("/resolve", {"lon": P[0], "lat": P[1]}),
    ("/public/cases/SJ0/rating", {"satisfaction": 5, "code": "x"}),
    ("/layers/departments", {"code": "X1", "name": "x", "tier": 3}),
    ("/layers/departments/import", [{"code": "X1", "name": "x", "tier": 3}]),
    ("/resolve/batch", [[P[0], P[1]]]),
    ("/cases/SJ0/photos", {"x": 1}),
])
def test_a_body_of_the_wrong_content_type_is_415(full_client: TestClient,
                                                 full_session: Session, centre: dict[str, str],
                                                 path: str, body: object) -> None:
    before = _counts(full_session)
    r = full_client.post(path, content=orjson.dumps(body),
                         headers={**centre, "content-type": "text/plain"})
    assert r.status_code == 415, r.text
    assert "text/plain" in r.json()["detail"]
    assert _counts(full_session) == before


def test_an_oversize_body_is_refused_by_its_declared_size(full_client: TestClient,
                                                         centre: dict[str, str]) -> None:
    big = b'{"channel": "web", "description": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = full_client.post("/cases", content=big,
                         headers={**centre, "content-type": "application/json"})
    assert r.status_code == 413 and "1,048,576" in r.json()["detail"], r.text
    assert len(r.text) < 500  # no echo of the input


@pytest.mark.parametrize("params", [
    {"lon": P[0], "lat": P[1], "at": "2026-01-01T00:00:00-20:36"},  # offset beyond ±15:59
    {"lon": P[0], "lat": P[1], "at": "0602-09-18T13:41:19-18:09"},
    {"lon": P[0], "lat": P[1], "at": "9999-12-31T23:59:59+00:00"},
])
def test_times_postgres_cannot_take_are_422(full_client: TestClient,
                                            params: dict[str, object]) -> None:
    r = full_client.get("/resolve", params=params)
    assert r.status_code in (404, 422), r.text  # far times: 422; -20:36 in range: 404/ok
    for path in ("/grids", "/hotspots", "/alignment"):
        r = full_client.get(path, params={"at": params["at"], "since": params["at"]})
        assert r.status_code < 500, (path, r.text)


def test_a_time_with_a_large_offset_is_read_in_utc(full_client: TestClient) -> None:
    r = full_client.get("/grids", params={"level": "district", "at": "2999-01-01T00:00:00-20:36"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/map/wall/counts.json", "/grids", "/hotspots", "/kpis",
                                  "/layers/departments", "/cases", "/open311/v2/requests.json"])
def test_a_nul_in_a_query_parameter_is_422_naming_it(full_client: TestClient,
                                                    centre: dict[str, str], path: str) -> None:
    r = full_client.get(f"{path}?category=E05%00&department=%00", headers=centre)
    assert r.status_code in (400, 422), r.text
    assert "NUL" in r.text and "category" in r.text


def test_nul_and_lone_surrogates_in_bodies_store_nothing(full_client: TestClient,
                                                         full_session: Session,
                                                         centre: dict[str, str]) -> None:
    before = _counts(full_session)
    bodies = [b'{"channel": "web", "category": "E0501", "lon": 121.2277, "lat": 31.0322, '
              b'"description": "a\\u0000b"}',
              b'{"channel": "web", "category": "E0501", "lon": 121.2277, "lat": 31.0322, '
              b'"description": "a\\ud800b"}',
              b'{"channel": "web", "category": "E0501", "lon": 121.2277, "lat": 31.0322, '
              b'"reporter": {"name": "\\udfff"}}']
    for b in bodies:
        r = full_client.post("/cases", content=b,
                             headers={**centre, "content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert "NUL" in r.text or "surrogate" in r.text
    r = full_client.post("/layers/departments", json={"code": "X1", "name": "a\x00b",
                                                      "tier": 3}, headers=centre)
    assert r.status_code == 422 and "NUL" in r.text, r.text
    r = full_client.post("/open311/v2/requests.json",
                         data={"service_code": "E0501", "lat": P[1], "long": P[0],
                               "description": "x\x00y"})
    assert r.status_code == 400 and "NUL" in r.text, r.text
    assert _counts(full_session) == before


def test_batches_refuse_what_they_do_not_read(client: TestClient, demo_loaded: int) -> None:
    # a row naming its own CRS is an error for that row, not resolved as WGS84
    r = client.post("/resolve/batch", json=[{"id": "a", "lon": P[0], "lat": P[1]},
                                            {"id": "b", "lon": P[0], "lat": P[1],
                                             "crs": "GCJ-02"}])
    assert r.status_code == 200, r.text
    rows = {x["id"]: x for x in r.json()["results"]}
    assert rows["a"]["error"] is None and rows["a"]["inside"] is True
    assert "crs" in rows["b"]["error"] and rows["b"]["inside"] is None
    # a FeatureCollection naming another CRS is refused whole
    fc = {"type": "FeatureCollection",
          "crs": {"type": "name", "properties": {"name": "EPSG:4549"}},
          "features": [{"type": "Feature", "geometry": {"type": "Point",
                                                        "coordinates": [400000, 3435000]}}]}
    r = client.post("/resolve/batch", content=orjson.dumps(fc),
                    headers={"content-type": "application/geo+json"})
    assert r.status_code == 422 and "crs" in r.json()["detail"]
    # malformed or truncated JSON, a feature that is not a point: precise answers
    r = client.post("/resolve/batch", content=b'{"type": "FeatureCollection", "features": [',
                    headers={"content-type": "application/geo+json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [P[0], P[1], 12.5]}},
        "not a feature"]}
    r = client.post("/resolve/batch", content=orjson.dumps(fc),
                    headers={"content-type": "application/geo+json"})
    assert r.status_code == 200, r.text
    feats = r.json()["features"]
    assert "LineString" in feats[0]["properties"]["error"]
    assert feats[1]["properties"]["error"] is None  # a height is allowed
    assert feats[2]["properties"]["error"]
    # CSV that is not UTF-8 (a GBK export)
    r = client.post("/resolve/batch", content="id,lon,lat\n井盖,121.2,31.0\n".encode("gbk"),
                    headers={"content-type": "text/csv"})
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"]


def test_layer_filters_and_geometries_are_checked(full_client: TestClient,
                                                  centre: dict[str, str]) -> None:
    r = full_client.get("/layers/departments", params={"tier": "abc"})
    assert r.status_code == 422 and "tier" in r.json()["detail"], r.text
    area = {"code": "A3D-1", "kind": "park", "owner_department": "LHSR", "priority": 50}
    ring = [[121.20, 31.00, 4.5], [121.21, 31.00, 4.5], [121.21, 31.01, 4.5],
            [121.20, 31.00, 4.5]]
    r = full_client.post("/layers/areas", headers=centre, json={
        "type": "Feature", "properties": area,
        "geometry": {"type": "Polygon", "coordinates": [ring]}})
    assert r.status_code == 201, r.text  # a height is dropped, the area kept in 2-D
    for geom in ({"type": "Circle", "coordinates": [121.2, 31.0]},
                 {"type": "Polygon", "coordinates": "x"}):
        r = full_client.post("/layers/areas", headers=centre, json={
            "type": "Feature", "properties": {**area, "code": "A3D-2"}, "geometry": geom})
        assert r.status_code == 422 and "geometry" in r.json()["detail"], r.text


def test_one_bad_row_of_an_import_refuses_that_row_only(full_client: TestClient,
                                                        centre: dict[str, str]) -> None:
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": "IMP-1", "kind": "park",
                                           "owner_department": "LHSR", "priority": 10},
         "geometry": {"type": "Polygon", "coordinates": [[[121.2, 31.0], [121.21, 31.0],
                                                          [121.21, 31.01], [121.2, 31.0]]]}},
        {"type": "Feature", "properties": ["not", "an", "object"], "geometry": None},
        {"type": "Feature", "properties": {"code": "IMP-3", "kind": "park",
                                           "owner_department": "LHSR", "priority": 10},
         "geometry": {"type": "Hexagon", "coordinates": []}}]}
    r = full_client.post("/layers/areas/import", headers=centre, json=fc)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["created"] == 1 and [x["line"] for x in rep["refused"]] == [2, 3]
    r = full_client.post("/layers/departments/import", headers={**centre,
                         "content-type": "text/csv"},
                         content="code,name,tier\nGB1,市政所,3\n".encode("gbk"))
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"], r.text
