"""Layers over HTTP: CRUD with versions, bulk import with refused rows, owner and lookup,
alignment of a department's zones with the grid."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import orjson
import pytest
from fastapi.testclient import TestClient
from shapely import box
from shapely.geometry import mapping
from sqlalchemy.orm import Session

from layers.ownership_store import OwnershipRegistry
from layers.settings import Settings
from tests.support import ownerfixtures as fx


@pytest.fixture()
def spots(client: TestClient, session: Session, settings: Settings,
          demo_loaded: int) -> Iterator[dict]:  # type: ignore[type-arg]
    chain = client.get("/resolve", params={"lon": fx.P[0], "lat": fx.P[1]}).json()["chain"]
    out = fx.load(session, chain[1]["code"], chain[-1]["code"])
    # the API's owner snapshot reads through the test's transaction
    client.app.state.services.owners = OwnershipRegistry(  # type: ignore[attr-defined]
        lambda: nullcontext(session), settings)
    yield out | {"chain": chain}


def test_crud_versions_and_history(client: TestClient, spots) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/layers/departments", json={"code": "RQ", "name": "燃气公司", "tier": 3})
    assert r.status_code == 201, r.text
    assert client.post("/layers/departments",
                       json={"code": "RQ", "name": "x", "tier": 3}).status_code == 409
    feat = {"type": "Feature", "geometry": mapping(box(121.20, 31.00, 121.21, 31.01)),
            "properties": {"code": "PARK-1", "kind": "park", "owner_department": "LHSR",
                           "priority": 70}}
    r = client.post("/layers/areas", json=feat)
    assert r.status_code == 201 and r.json()["geometry"]["type"] == "MultiPolygon"
    r = client.put("/layers/areas/PARK-1", json={"owner_department": "WY"})
    assert r.status_code == 200 and r.json()["properties"]["owner_department"] == "WY"
    hist = client.get("/layers/areas/PARK-1/history").json()["versions"]
    assert [v["properties"]["owner_department"] for v in hist] == ["LHSR", "WY"]
    assert hist[0]["properties"]["valid_to"] == hist[1]["properties"]["valid_from"]
    then = hist[0]["properties"]["valid_from"]
    old = client.get("/layers/areas/PARK-1", params={"at": then})
    assert old.json()["properties"]["owner_department"] == "LHSR"
    assert client.delete("/layers/areas/PARK-1").status_code == 200
    assert client.get("/layers/areas/PARK-1").status_code == 404
    fc = client.get("/layers/assets", params={"owner_department": "SW-PS"}).json()
    assert fc["numberMatched"] == 1 and fc["features"][0]["properties"]["grid_code"]
    assert client.get("/layers/zones/nope").status_code == 422
    assert client.get("/layers/nothing").status_code == 404


def test_bad_rows_are_refused_with_reasons(client: TestClient, spots) -> None:  # type: ignore[no-untyped-def]
    bowtie = {"type": "Polygon", "coordinates": [[[121.2, 31.0], [121.21, 31.01],
                                                  [121.21, 31.0], [121.2, 31.01],
                                                  [121.2, 31.0]]]}
    bad = {"type": "Feature", "geometry": bowtie,
           "properties": {"code": "X", "kind": "park", "owner_department": "LHSR"}}
    r = client.post("/layers/areas", json=bad)
    assert r.status_code == 422 and "Self-intersection" in r.json()["detail"]
    r = client.post("/layers/areas", json={**bad, "geometry": mapping(box(1e5, 3e6, 2e5, 4e6))})
    assert r.status_code == 422 and "lon/lat" in r.json()["detail"]
    r = client.post("/layers/areas", json={**bad, "geometry": mapping(box(121, 31, 121.1, 31.1)),
                                          "properties": {**bad["properties"],
                                                         "owner_department": "NOPE"}})
    assert r.status_code == 422 and "NOPE" in r.json()["detail"]
    csv = ("code,category_code,kind,supervising_department,owner_department,"
           "maintainer_department,state,lon,lat\n"
           "3101170101000101,C0101,manhole_water,SW-GS,SW-GS,SW-GS,intact,121.23,31.03\n"
           "3101170101000102,C0101,manhole_water,SW-GS,NOPE,SW-GS,intact,121.23,31.03\n"
           "3101170101000103,C0101,manhole_water,SW-GS,SW-GS,SW-GS,lost,121.23,31.03\n"
           "3101170101000104,C0101,manhole_water,SW-GS,SW-GS,SW-GS,intact,abc,31.03\n"
           "3101170107000105,C0101,manhole_water,SW-GS,SW-GS,SW-GS,intact,121.23,31.03\n"
           "3101170101000101,C0101,manhole_water,SW-GS,SW-GS,SW-GS,intact,121.23,31.03\n")
    before = client.get("/layers/assets").json()["numberMatched"]
    rep = client.post("/layers/assets/import", content=csv.encode(),
                      headers={"content-type": "text/csv"}).json()
    assert rep["read"] == 6 and rep["created"] == 1 and rep["refused_count"] == 5
    reasons = {x["line"]: x["reason"] for x in rep["refused"]}
    assert "NOPE" in reasons[3] and "state" in reasons[4] and "line 5" in reasons[5]
    assert "major/minor" in reasons[6] and "already exists" in reasons[7]
    assert client.get("/layers/assets").json()["numberMatched"] == before + 1
    r = client.post("/layers/assets/import", content=b"{", headers={"content-type":
                                                                    "application/json"})
    assert r.status_code == 422


def test_owner_and_lookup(client: TestClient, spots) -> None:  # type: ignore[no-untyped-def]
    a = client.get("/owner", params={"lon": fx.P[0], "lat": fx.P[1], "category": "C0101"})
    assert a.status_code == 200, a.text
    body = a.json()
    assert body["owner"]["code"] == "SW-GS" and body["asset"]["code"] == "3101170101000001"
    assert body["trail"][0]["rule"] == "asset"
    assert body["chain"][-1]["code"] == spots["chain"][-1]["code"]
    d = client.get("/owner", params={"lon": spots["dispute"][0], "lat": spots["dispute"][1],
                                     "category": "C0101"}).json()
    assert d["disputed"] is True and d["owner"]["code"].startswith("JD")
    assert client.get("/owner", params={"lon": fx.P[0], "lat": fx.P[1],
                                        "category": "Z9"}).status_code == 422
    lk = client.get("/lookup", params={"lon": spots["road_and_compound"][0],
                                       "lat": spots["road_and_compound"][1],
                                       "radius": 50}).json()
    assert {a["code"] for a in lk["areas"]} == {"CPD-1", "ROAD-1"}
    # the compound applies to every category: covers and dumping both have a candidate here
    by_cat = {o["category"]["code"]: o for o in lk["owners"]}
    assert set(by_cat) == {"C0101", "C0107", "E0101"}
    assert by_cat["E0101"]["owner"]["code"] == "WY"
    assert by_cat["C0101"]["decided_by"] == "area"  # no water cover within 10 m here
    lk2 = client.get("/lookup", params={"lon": fx.P[0], "lat": fx.P[1], "radius": 10}).json()
    assert lk2["assets"][0]["code"] == "3101170101000001"
    assert "C0101" in [o["category"]["code"] for o in lk2["owners"]]


def test_alignment_of_a_misaligned_zone_layer(client: TestClient, spots) -> None:  # type: ignore[no-untyped-def]
    district = client.get("/grids/310117").json()
    x0, y0, x1, y1 = 120.8, 30.6, 121.7, 31.4
    mid = 121.2311  # a line that cuts through grids
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(box(x0, y0, mid, y1)),
         "properties": {"department_code": "CGZF", "layer": "cgzf_zones", "code": "W",
                        "name": "西区"}},
        {"type": "Feature", "geometry": mapping(box(mid, y0, x1, y1)),
         "properties": {"department_code": "CGZF", "layer": "cgzf_zones", "code": "E",
                        "name": "东区"}}]}
    rep = client.post("/layers/zones/import", content=orjson.dumps(fc),
                      headers={"content-type": "application/geo+json"}).json()
    assert rep["created"] == 2, rep
    a = client.get("/alignment/CGZF").json()
    assert a["grids"] == 1322 and a["grids_uncovered"] == 0
    assert 0 < a["grids_split"] < 100 and a["grids_whole"] == 1322 - a["grids_split"]
    split = [g for g in a["by_grid"] if not g["whole"]]
    assert all({z["zone"] for z in g["zones"]} == {"W", "E"} for g in split)
    assert abs(sum(z["share"] for z in split[0]["zones"]) - 1) < 1e-3
    rank = client.get("/alignment").json()["ranking"]
    assert rank[0]["department"] == "CGZF" and rank[0]["rank"] == 1
    assert client.get("/alignment/PSB").status_code == 404
    assert district["properties"]["code"] == "310117"


def test_writes_need_a_token_with_a_role(client: TestClient, session: Session) -> None:
    from layers.auth import create_token

    body = {"code": "RQ2", "name": "燃气", "tier": 3}
    r = client.post("/layers/departments", json=body, headers={"authorization": ""})
    assert r.status_code == 401
    r = client.post("/layers/departments", json=body,
                    headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]
    _, patrol = create_token(session, "p", "patrol")
    r = client.post("/layers/departments", json=body,
                    headers={"authorization": f"Bearer {patrol}"})
    assert r.status_code == 403
    assert client.get("/layers/departments", headers={"authorization": ""}).status_code == 200
