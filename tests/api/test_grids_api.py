"""The read API over HTTP (TestClient) on the demo city."""

from __future__ import annotations

from fastapi.testclient import TestClient

GRID = "310117001001001"


def test_health(client: TestClient, demo_loaded: int) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] is True
    assert body["active_generation"]["id"] == demo_loaded
    assert body["units_per_level"] == {"district": 1, "street": 20, "community": 386,
                                       "grid": 1322}
    assert [lv["name"] for lv in body["levels"]] == ["区", "街镇", "居村", "网格"]


def test_list_grids_paged_geojson(client: TestClient, demo_loaded: int) -> None:
    r = client.get("/grids", params={"level": "grid", "limit": 500})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert fc["numberMatched"] == 1322 and fc["numberReturned"] == 500
    nxt = next(link["href"] for link in fc["links"] if link["rel"] == "next")
    codes = [f["properties"]["code"] for f in fc["features"]]
    seen = set(codes)
    while nxt:
        page = client.get(nxt).json()
        seen.update(f["properties"]["code"] for f in page["features"])
        nxt = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    assert len(seen) == 1322
    f = fc["features"][0]
    assert f["geometry"]["type"] == "MultiPolygon"
    assert f["properties"]["level_name"] == "网格" and f["properties"]["leader"]["name"]


def test_filter_by_parent_level_and_bbox(client: TestClient, demo_loaded: int) -> None:
    streets = client.get("/grids", params={"level": 2}).json()
    assert streets["numberMatched"] == 20
    names = {f["properties"]["name"] for f in streets["features"]}
    assert {"岳阳街道", "泗泾镇", "佘山度假区"} <= names
    kids = client.get("/grids", params={"parent": "310117001"}).json()
    assert kids["numberMatched"] == 26
    assert all(f["properties"]["parent_code"] == "310117001" for f in kids["features"])
    box = client.get("/grids", params={"level": "grid", "bbox": "121.22,31.00,121.24,31.02"})
    assert 0 < box.json()["numberMatched"] < 1322


def test_bad_parameters_are_422_with_reason(client: TestClient, demo_loaded: int) -> None:
    for bbox, words in [("1,2,3", "expected 4"), ("a,1,2,3", "minlon is not a number"),
                        ("121,31,120,32", "min must not exceed max"),
                        ("121,95,122,96", "minlat 95.0 is outside"),
                        ("nan,31,122,32", "finite")]:
        r = client.get("/grids", params={"bbox": bbox})
        assert r.status_code == 422, bbox
        assert words in r.json()["detail"], (bbox, r.json())
    r = client.get("/grids", params={"level": "province"})
    assert r.status_code == 422 and "level" in r.json()["detail"]
    r = client.get("/grids", params={"limit": 10**6})
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    r = client.get("/grids", params={"at": "yesterday"})
    assert r.status_code == 422 and "at" in r.json()["detail"]


def test_one_grid_with_family_and_neighbours(client: TestClient, demo_loaded: int) -> None:
    r = client.get(f"/grids/{GRID}")
    assert r.status_code == 200
    props = r.json()["properties"]
    assert [p["code"] for p in props["parents"]] == ["310117", "310117001", "310117001001"]
    assert props["children"] == []
    assert props["neighbours"], "a grid in the old town has neighbours"
    assert set(props["sizhi"]) == {"north", "east", "south", "west"}
    for n in props["neighbours"]:
        assert len(n["code"]) == 15 and n["shared_boundary_m"] >= 1
    street = client.get("/grids/310117001").json()["properties"]
    assert len(street["children"]) == 26
    assert {n["side"] for n in street["neighbours"]} >= {"north", "south"}


def test_neighbours_are_symmetric(client: TestClient, demo_loaded: int) -> None:
    props = client.get("/grids/310117003").json()["properties"]
    assert len(props["neighbours"]) >= 3
    for n in props["neighbours"]:
        back = client.get(f"/grids/{n['code']}").json()["properties"]["neighbours"]
        mine = next(b for b in back if b["code"] == "310117003")
        assert abs(mine["shared_boundary_m"] - n["shared_boundary_m"]) < 1.0


def test_unknown_code_404(client: TestClient, demo_loaded: int) -> None:
    r = client.get("/grids/310117999999999")
    assert r.status_code == 404 and "310117999999999" in r.json()["detail"]
    assert client.get("/grids/310117999999999/history").status_code == 404
    assert client.get("/grids/abc").status_code == 422


def test_history_and_as_of(client: TestClient, demo_loaded: int) -> None:
    h = client.get(f"/grids/{GRID}/history").json()
    assert h["versions"][0]["generation_low"] == demo_loaded
    assert h["versions"][-1]["current"] is True
    assert client.get(f"/grids/{GRID}", params={"generation": demo_loaded}).status_code == 200
    r = client.get(f"/grids/{GRID}", params={"at": "2001-01-01T00:00:00Z"})
    assert r.status_code == 404 and "no generation was active" in r.json()["detail"]
