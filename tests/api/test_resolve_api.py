"""Resolving points over HTTP: one point in every CRS, outside points, batches, bad input."""

from __future__ import annotations

import csv
import io

import numpy as np
import orjson
from fastapi.testclient import TestClient

from spatial.crs import from_wgs84

# a point in the old town (岳阳街道), WGS84
LON, LAT = 121.2277, 31.0322


def test_get_resolve_gives_the_whole_chain(client: TestClient, demo_loaded: int) -> None:
    r = client.get("/resolve", params={"lon": LON, "lat": LAT})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["inside"] is True
    assert [u["level"] for u in a["chain"]] == [1, 2, 3, 4]
    assert a["chain"][0]["code"] == "310117"
    assert a["grid"]["code"].startswith(a["chain"][2]["code"])
    assert a["h3"]["resolution"] == 11 and len(a["h3"]["cell"]) == 15
    assert a["crs"]["key"] == "EPSG:4326"
    assert a["wgs84"] == {"lon": LON, "lat": LAT}
    assert a["generation"]["id"] == demo_loaded
    assert a["nearest"] is None
    # the grid page agrees on the parents
    g = client.get(f"/grids/{a['grid']['code']}").json()["properties"]
    assert [p["code"] for p in g["parents"]] == [u["code"] for u in a["chain"][:3]]


def test_every_crs_resolves_to_the_same_grid(client: TestClient, demo_loaded: int) -> None:
    want = client.get("/resolve", params={"lon": LON, "lat": LAT}).json()["grid"]["code"]
    for crs in ("EPSG:4490", "GCJ-02", "BD-09", "EPSG:4549", "EPSG:3857"):
        x, y = from_wgs84(np.array([LON]), np.array([LAT]), crs)
        params: dict[str, object] = {"crs": crs}
        if crs.startswith("EPSG:4") and crs != "EPSG:4549":
            params.update(lon=float(x[0]), lat=float(y[0]))
        else:
            params.update(x=float(x[0]), y=float(y[0]))
        a = client.get("/resolve", params=params).json()
        assert a["grid"]["code"] == want, crs
        assert a["crs"]["key"] == crs
        assert abs(a["wgs84"]["lon"] - LON) < 1e-6 and abs(a["wgs84"]["lat"] - LAT) < 1e-6
    # GCJ-02 is offset by hundreds of metres: taken as WGS84 it lands elsewhere
    gx, gy = from_wgs84(np.array([LON]), np.array([LAT]), "GCJ-02")
    raw = client.post("/resolve", json={"lon": float(gx[0]), "lat": float(gy[0])}).json()
    assert abs(raw["wgs84"]["lon"] - LON) > 1e-3


def test_outside_is_answered_with_nearest(client: TestClient, demo_loaded: int) -> None:
    a = client.get("/resolve", params={"lon": 121.60, "lat": 31.20}).json()  # Pudong
    assert a["inside"] is False and a["grid"] is None and a["chain"] == []
    assert a["nearest"]["code"].startswith("310117") and len(a["nearest"]["code"]) == 15
    assert 10_000 < a["nearest"]["distance_m"] < 60_000


def test_bad_coordinates_are_422_naming_field_and_value(
        client: TestClient, demo_loaded: int) -> None:
    cases = [({"lon": "nan", "lat": 31}, "lon"), ({"lon": 121, "lat": 91}, "lat"),
             ({"lon": 181, "lat": 31}, "lon"), ({"lon": "inf", "lat": 31}, "lon"),
             ({"lon": 121, "lat": 31, "crs": "mars"}, "crs"), ({"lon": 121}, "lat")]
    for params, field in cases:
        r = client.get("/resolve", params=params)
        assert r.status_code == 422, params
        assert field in r.json()["detail"], (params, r.json())
    r = client.post("/resolve", content=b'{"lon": NaN, "lat": 31.0}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lon" in r.json()["detail"]


def test_batch_json_geojson_csv_agree(client: TestClient, demo_loaded: int) -> None:
    rng = np.random.default_rng(1)
    lon = rng.uniform(121.0, 121.5, 3000)
    lat = rng.uniform(30.85, 31.2, 3000)
    pts = [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]
    j = client.post("/resolve/batch", json=pts)
    assert j.status_code == 200, j.text
    body = orjson.loads(j.content)
    assert body["count"] == 3000 and body["generation"]["id"] == demo_loaded
    grids_json = [x["grid"] for x in body["results"]]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": i, "geometry": {"type": "Point", "coordinates": p},
         "properties": {}} for i, p in enumerate(pts)]}
    g = client.post("/resolve/batch", content=orjson.dumps(fc),
                    headers={"content-type": "application/geo+json"})
    feats = orjson.loads(g.content)["features"]
    assert [f["properties"]["grid"] for f in feats] == grids_json
    assert feats[5]["id"] == 5
    text = "id,lon,lat\n" + "".join(f"p{i},{a},{b}\n" for i, (a, b) in enumerate(pts))
    c = client.post("/resolve/batch", content=text.encode(),
                    headers={"content-type": "text/csv"})
    assert c.headers["x-gridops-generation"] == str(demo_loaded)
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert [r["grid"] or None for r in rows] == grids_json
    assert rows[0]["id"] == "p0"
    inside = sum(1 for x in grids_json if x)
    assert 0 < inside < 3000
    one = client.get("/resolve", params={"lon": pts[7][0], "lat": pts[7][1]}).json()
    assert (one["grid"]["code"] if one["inside"] else None) == grids_json[7]


def test_batch_rows_with_bad_coordinates_get_an_error(
        client: TestClient, demo_loaded: int) -> None:
    text = "lon,lat\n121.23,31.03\nabc,31\n121.2,95\n"
    rows = list(csv.DictReader(io.StringIO(client.post(
        "/resolve/batch", content=text.encode(), headers={"content-type": "text/csv"}).text)))
    assert rows[0]["inside"] == "True" and not rows[0]["error"]
    assert "line 3" in rows[1]["error"]
    assert rows[2]["error"] and rows[2]["inside"] == ""


def test_batch_limits_and_formats(client: TestClient, demo_loaded: int) -> None:
    app = client.app
    app.state.services.settings.batch_max_points = 10  # type: ignore[attr-defined]
    try:
        r = client.post("/resolve/batch", json=[[121.2, 31.0]] * 11)
        assert r.status_code == 413 and "10" in r.json()["detail"]
    finally:
        app.state.services.settings.batch_max_points = 1_000_000  # type: ignore[attr-defined]
    r = client.post("/resolve/batch", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "text/plain" in r.json()["detail"]
    r = client.post("/resolve/batch", content=b"lng,lt\n1,2\n",
                    headers={"content-type": "text/csv"})
    assert r.status_code == 422 and "lon" in r.json()["detail"]
    r = client.post("/resolve/batch", content=b"[1,2", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_as_of_uses_the_generation_of_that_time(client: TestClient, demo_loaded: int) -> None:
    r = client.get("/resolve", params={"lon": LON, "lat": LAT, "at": "2000-01-01T00:00:00Z"})
    assert r.status_code == 404 and "no generation was active" in r.json()["detail"]
    r = client.get("/resolve", params={"lon": LON, "lat": LAT, "generation": demo_loaded})
    assert r.status_code == 200 and r.json()["generation"]["id"] == demo_loaded


# ---------------------------------------------------------------- the GET fast path


def _full_route(query: str) -> str:
    """The same query with its names percent-encoded: the fast path leaves it to FastAPI's
    route, which decodes it to the same parameters."""
    return "&".join("".join(f"%{ord(c):02X}" for c in k) + "=" + v
                    for k, v in (p.split("=", 1) for p in query.split("&")))


def test_fast_path_answers_as_the_route_does(client: TestClient, demo_loaded: int) -> None:
    fast = client.app.fast_path  # type: ignore[attr-defined]
    assert fast is not None  # the app is running
    rng = np.random.default_rng(7)
    lon = [*rng.uniform(121.0, 121.5, 300).tolist(), LON, 121.6, 121.2277, 180.0, -180.0]
    lat = [*rng.uniform(30.85, 31.2, 300).tolist(), LAT, 31.2, 31.0322, 90.0, -90.0]
    inside = 0
    for x, y in zip(lon, lat, strict=True):
        for q in (f"lon={x!r}&lat={y!r}", f"lat={y!r}&lon={x!r}"):
            assert fast.answer(q.encode()) is not None, q
            a, b = client.get(f"/resolve?{q}"), client.get(f"/resolve?{_full_route(q)}")
            assert a.status_code == b.status_code == 200, (q, a.text, b.text)
            assert a.content == b.content, q
            assert a.headers == b.headers, q
        inside += orjson.loads(a.content)["inside"]
    assert 0 < inside < len(lon)
    # other spellings of numbers the fast path takes: read as the route reads them
    for q in ["lon=121&lat=31", "lon=0121.2277&lat=031.0322", "lon=1.212277e2&lat=3103.22E-2",
              "lon=-0&lat=-0.0", "lon=121.22770000000000000001&lat=31.0322",
              "lon=121.2277&lat=31.03220000000000000000000000009"]:
        assert fast.answer(q.encode()) is not None, q
        a, b = client.get(f"/resolve?{q}"), client.get(f"/resolve?{_full_route(q)}")
        assert a.status_code == b.status_code == 200, (q, a.text, b.text)
        assert a.content == b.content, q


def test_fast_path_leaves_anything_unusual_to_the_route(
        client: TestClient, demo_loaded: int) -> None:
    fast = client.app.fast_path  # type: ignore[attr-defined]
    for q in ["lon=nan&lat=31", "lon=inf&lat=31", "lon=1e999&lat=31", "lon=121&lat=91",
              "lon=181&lat=31", "lon=+121.2&lat=31", "lon=121.2%30&lat=31", "lon=121_2&lat=31",
              "lon=121.2&lat=31&crs=EPSG:4326", "lon=121.2&lat=31&lat=31.1", "lon=121.2",
              "lon=121.2&lat=31&generation=1", "lon=121.2&lat=31&x=%00", "lon= 121.2&lat=31",
              "lon=121.&lat=31", "lon=.5&lat=31", "lon=121.2&lat=", "lon=121.2&&lat=31",
              "x=121.2&y=31", "lon=121.2&lat=31&", "lon=1e+2&lat=31", ""]:
        assert fast.answer(q.encode()) is None, q
    # and the route answers them as before
    r = client.get("/resolve?lon=121.2277&lat=31.0322&x=%00")
    assert r.status_code == 422 and "'x'" in r.json()["detail"]
    r = client.get("/resolve?lon=1e999&lat=31")
    assert r.status_code == 422 and "lon" in r.json()["detail"]
    r = client.get("/resolve?lon=121.2277&lat=31.0322&lat=31.2")  # the last one counts
    assert r.status_code == 200 and r.json()["input"]["lat"] == 31.2
    r = client.get("/resolve?lon=121.2277&lat=31.0322&generation=999999")
    assert r.status_code == 404
    assert client.head("/resolve?lon=121.2277&lat=31.0322").status_code == 405
