"""OGC API Features Part 4 on a real server (a copy of the demo city): OWSLib's own client
creates, replaces and deletes an asset and a draft's grid unit with a token; OPTIONS says
what each caller may do (QGIS edits only when POST is listed); ETag and If-Match (a stale
one is 412 and changes nothing); a merge patch; Content-Crs in latitude-first EPSG:4326 and
in a Gauss-Kruger zone; every write the versioned, audited change the other endpoints make
(checked in PostGIS), the draft's coverage still seamless after each edit (the whole
validation report, and PostGIS's own area sums), the active grid untouched."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from layers.auth import create_token
from layers.cluster import Cluster
from layers.db import make_engine
from tests.support.clusters import clone_full
from tests.support.servers import serving

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"


@pytest.fixture(scope="module")
def edit_server(pg_cluster: Cluster, full_engine: Engine
                ) -> Iterator[tuple[str, Engine, dict[str, str]]]:
    url = clone_full(pg_cluster, full_engine, "gridops_ogc_edit")
    engine = make_engine(url)
    from sqlalchemy.orm import Session

    tokens = {}
    with Session(engine) as s:
        for role in ("planner", "centre", "patrol"):
            tokens[role] = create_token(s, f"ogc-edit-{role}", role)[1]
        s.commit()
    with serving(url, GRIDOPS_SCHEDULER_INTERVAL_S="0") as base:
        yield base, engine, tokens
    engine.dispose()


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _one(engine: Engine, sql: str, **params: object) -> Any:
    with engine.connect() as c:
        return c.execute(text(sql), params).one()


def _allow(r: httpx.Response) -> set[str]:
    assert r.status_code == 204, r.text
    return {m.strip() for m in r.headers["allow"].split(",")}


def test_options_say_who_may_edit(edit_server: tuple[str, Engine, dict[str, str]]) -> None:
    base, _, tok = edit_server
    with httpx.Client(base_url=f"{base}/ogc/collections") as c:
        assert "POST" not in _allow(c.options("/assets/items"))  # the public reads
        assert c.head("/assets/items").status_code == 405  # Allow does not list HEAD
        assert "POST" not in _allow(c.options("/assets/items",
                                              headers=_bearer(tok["patrol"])))
        assert "POST" in _allow(c.options("/assets/items", headers=_bearer(tok["centre"])))
        item = _allow(c.options("/assets/items/unknown_id", headers=_bearer(tok["centre"])))
        assert {"GET", "PUT", "PATCH", "DELETE"} <= item
        # QGIS carries a token as HTTP Basic credentials (the token is the password)
        basic = base64.b64encode(f"qgis:{tok['planner']}".encode()).decode()
        assert "POST" in _allow(c.options("/zones/items",
                                          headers={"Authorization": f"Basic {basic}"}))
        # the grid in force is read-only here (it changes through a draft), as are teams
        assert "POST" not in _allow(c.options("/grid-grid/items",
                                              headers=_bearer(tok["planner"])))
        r = c.post("/grid-grid/items", headers=_bearer(tok["planner"]),
                   json={"type": "Feature", "geometry": None, "properties": {}})
        assert r.status_code == 405 and "POST" not in r.headers["allow"]
        assert "draft" in r.json()["detail"]
        r = c.post("/teams/items", headers=_bearer(tok["centre"]),
                   json={"type": "Feature", "geometry": None, "properties": {}})
        assert r.status_code == 405 and "/layers/teams" in r.json()["detail"]
        r = c.post("/assets/items", json={"type": "Feature", "geometry": None,
                                          "properties": {}})
        assert r.status_code == 401


def _asset(engine: Engine) -> dict[str, Any]:
    row = _one(engine, "SELECT code, category_code, kind, supervising_department, "
               "owner_department, maintainer_department, ST_X(geom) AS x, ST_Y(geom) AS y "
               "FROM asset WHERE valid_to IS NULL AND GeometryType(geom) = 'POINT' "
               "ORDER BY code LIMIT 1")
    return dict(row._mapping)


def test_owslib_creates_replaces_deletes_an_asset(
        edit_server: tuple[str, Engine, dict[str, str]], owslib_headers: None) -> None:
    from owslib.ogcapi.features import Features

    base, engine, tok = edit_server
    w = Features(f"{base}/ogc", headers=_bearer(tok["centre"]))
    like = _asset(engine)
    code = like["code"][:10] + "999001"
    props = {k: like[k] for k in ("category_code", "kind", "supervising_department",
                                  "owner_department", "maintainer_department")}
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [
        like["x"] + 1e-4, like["y"] + 1e-4]}, "properties": {**props, "code": code,
                                                                "name": "新井盖"}}
    assert w.collection_item_create("assets", feature)
    assert w.response_headers["Location"].endswith(f"/ogc/collections/assets/items/{code}")
    got = w.collection_item("assets", code)
    assert got["properties"]["name"] == "新井盖" and got["properties"]["grid_code"]
    first = _one(engine, "SELECT id, ST_X(geom) AS x FROM asset WHERE code = :c", c=code)
    assert abs(first.x - (like["x"] + 1e-4)) < 1e-12

    moved = {**feature, "geometry": {"type": "Point", "coordinates": [
        like["x"] + 2e-4, like["y"] + 2e-4]}, "properties": {**feature["properties"],
                                                               "name": "新井盖 (moved)",
                                                               "state": "damaged"}}
    assert w.collection_item_update("assets", code, moved)
    rows = _versions(engine, code)
    assert [r.name for r in rows] == ["新井盖", "新井盖 (moved)"]
    assert rows[0].valid_to is not None and rows[1].valid_to is None  # the old one ended
    assert rows[1].state == "damaged" and abs(rows[1].x - (like["x"] + 2e-4)) < 1e-12

    assert w.collection_item_delete("assets", code)
    with httpx.Client(base_url=base) as c:
        assert c.get(f"/ogc/collections/assets/items/{code}").status_code == 404
        then = rows[1].valid_from.isoformat()
        back = c.get(f"/ogc/collections/assets/items/{code}", params={"datetime": then})
        assert back.status_code == 200 and back.json()["properties"]["state"] == "damaged"
    assert all(r.valid_to is not None for r in _versions(engine, code))
    audit = [r[0] for r in _all(engine, "SELECT action FROM layer_event WHERE code = :c "
                                "ORDER BY id", c=code)]
    assert audit == ["create", "update", "retire"]


def _versions(engine: Engine, code: str) -> list[Any]:
    return _all(engine, "SELECT id, name, state, valid_from, valid_to, ST_X(geom) AS x "
                "FROM asset WHERE code = :c ORDER BY valid_from", c=code)


def _all(engine: Engine, sql: str, **params: object) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(text(sql), params).all())


def test_etag_if_match_patch_and_content_crs(
        edit_server: tuple[str, Engine, dict[str, str]]) -> None:
    from pyproj import Transformer

    base, engine, tok = edit_server
    like = _asset(engine)
    code = like["code"][:10] + "999002"
    props = {k: like[k] for k in ("category_code", "kind", "supervising_department",
                                  "owner_department", "maintainer_department")}
    lon, lat = like["x"] + 3e-4, like["y"] - 3e-4
    with httpx.Client(base_url=f"{base}/ogc/collections/assets",
                      headers=_bearer(tok["planner"])) as c:
        # latitude first, as EPSG:4326 orders its axes
        r = c.post("/items", json={"type": "Feature", "properties": {**props, "code": code},
                                   "geometry": {"type": "Point", "coordinates": [lat, lon]}},
                   headers={"content-type": "application/geo+json",
                            "content-crs": f"<{EPSG}4326>"})
        assert r.status_code == 201, r.text
        stored = _one(engine, "SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM asset WHERE "
                      "code = :c AND valid_to IS NULL", c=code)
        assert abs(stored.x - lon) < 1e-12 and abs(stored.y - lat) < 1e-12
        tag = r.headers["etag"]
        assert c.get(f"/items/{code}").headers["etag"] == tag

        # a merge patch with the right ETag: a new version, a new ETag
        r = c.patch(f"/items/{code}", content=b'{"properties": {"name": "patched"}}',
                    headers={"content-type": "application/merge-patch+json",
                             "if-match": tag})
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["name"] == "patched"
        assert r.json()["properties"]["kind"] == like["kind"]  # the rest stays
        new_tag = r.headers["etag"]
        assert new_tag != tag
        # the stale ETag again: 412, nothing changes
        before = len(_versions(engine, code))
        for method in ("PATCH", "PUT", "DELETE"):
            body = (b'{"properties": {"name": "lost"}}' if method == "PATCH" else
                    b'{"type": "Feature", "properties": {}, "geometry": null}')
            r = c.request(method, f"/items/{code}", content=body if method != "DELETE"
                          else None, headers={"if-match": tag,
                                              "content-type": "application/merge-patch+json"
                                              if method == "PATCH" else "application/json"})
            assert r.status_code == 412, (method, r.text)
            assert r.json()["etag"] == new_tag
        assert len(_versions(engine, code)) == before
        # the geometry by a patch, in the CGCS2000 Gauss-Kruger zone (northing first)
        e, n = Transformer.from_crs(4326, 4549, always_xy=True).transform(lon + 1e-4, lat)
        r = c.patch(f"/items/{code}", json={"geometry": {"type": "Point",
                                                         "coordinates": [n, e]}},
                    headers={"content-crs": f"{EPSG}4549", "if-match": new_tag})
        assert r.status_code == 200, r.text
        stored = _one(engine, "SELECT ST_X(geom) AS x, name FROM asset WHERE code = :c AND "
                      "valid_to IS NULL", c=code)
        assert abs(stored.x - (lon + 1e-4)) < 1e-8 and stored.name == "patched"
        # what is wrong, and where
        for body, ctype, hdr, status, where in [
            (b'{"properties": {"state": "melted"}}', "application/merge-patch+json", {},
             422, "state"),
            (b'{"properties": {"colour": "red"}}', "application/merge-patch+json", {},
             422, "colour"),
            (b'{"geometry": null}', "application/merge-patch+json", {}, 422, "geometry"),
            (b'{"properties": {"code": "0000000000000000"}}', "application/merge-patch+json",
             {}, 422, "code"),
            (b'{"geometry": {"type": "Point", "coordinates": [1, 2]}}',
             "application/merge-patch+json", {"content-crs": "EPSG:2000"}, 400,
             "Content-Crs"),
            (b'<xml/>', "text/xml", {}, 415, "text/xml"),
        ]:
            r = c.patch(f"/items/{code}", content=body, headers={"content-type": ctype,
                                                                  **hdr})
            assert r.status_code == status, (body, r.text)
            assert where in r.json()["detail"], r.text
        assert c.put("/items/0000000000000000", json={
            "type": "Feature", "properties": {}, "geometry": None}).status_code == 404


def test_post_of_a_cql2_json_filter_is_a_search(
        edit_server: tuple[str, Engine, dict[str, str]], owslib_headers: None) -> None:
    """OWSLib's collection_items(cql=...) POSTs the CQL2 JSON to /items: answered as the
    GET with that filter."""
    from owslib.ogcapi.features import Features

    base, engine, _ = edit_server
    w = Features(f"{base}/ogc")
    dept = _asset(engine)["owner_department"]
    got = w.collection_items("assets", cql={"op": "=", "args": [
        {"property": "owner_department"}, dept]}, limit=10_000)
    want = _one(engine, "SELECT count(*) FROM asset WHERE valid_to IS NULL AND "
                "owner_department = :d", d=dept)[0]
    assert got["numberMatched"] == want > 0
    assert {f["properties"]["owner_department"] for f in got["features"]} == {dept}


def _draft_ok(base: str, gen: int, tok: str) -> None:
    r = httpx.get(f"{base}/generations/{gen}/validation", headers=_bearer(tok), timeout=60)
    assert r.status_code == 200 and r.json()["features"] == [], r.text[:2000]


AREA_SQL = ("SELECT sum(ST_Area(u.geom::geography)) FROM grid_unit u WHERE u.level = 4 AND "
            "u.generation_low <= :g AND (u.generation_high IS NULL OR u.generation_high >= :g)"
            " AND u.parent_code = :p")


def test_owslib_edits_a_draft_grid(edit_server: tuple[str, Engine, dict[str, str]],
                                   owslib_headers: None) -> None:
    """Create (carve), replace, patch and delete a unit of a draft through OWSLib and
    httpx; the draft stays a seamless coverage (its whole validation report is empty), the
    public never sees it, the active generation does not change."""
    from owslib.ogcapi.features import Features

    base, engine, tok = edit_server
    planner = _bearer(tok["planner"])
    r = httpx.post(f"{base}/generations", json={"label": "ogc edits"}, headers=planner)
    assert r.status_code == 201, r.text
    gen = r.json()["id"]
    coll = f"grid-grid-draft-{gen}"
    active_before = _all(engine, "SELECT id, revision FROM grid_unit ORDER BY id")
    # the public does not see the draft's collections
    assert coll not in [c["id"] for c in httpx.get(f"{base}/ogc/collections").json()[
        "collections"]]
    assert httpx.get(f"{base}/ogc/collections/{coll}/items").status_code == 404
    w = Features(f"{base}/ogc", headers=planner)
    assert coll in w.feature_collections()

    # the largest finest unit, and a small square well inside it
    big = _one(engine, "SELECT u.code, u.parent_code, ST_AsText(ST_Envelope(ST_Buffer("
               "ST_PointOnSurface(u.geom), 0.0004))) AS sq, ST_Within(ST_Buffer("
               "ST_PointOnSurface(u.geom), 0.0006), u.geom) AS inside FROM grid_unit u "
               "JOIN generation g ON g.active WHERE u.level = 4 AND u.generation_low <= g.id "
               "AND (u.generation_high IS NULL OR u.generation_high >= g.id) "
               "ORDER BY u.area_m2 DESC LIMIT 1")
    assert big.inside
    import shapely
    from shapely.geometry import mapping

    square = shapely.from_wkt(big.sq)
    area_before = _one(engine, AREA_SQL, g=gen, p=big.parent_code)[0]
    feature = {"type": "Feature", "geometry": mapping(square),
               "properties": {"name": "新网格", "code": None, "leader_name": "张三"}}
    assert w.collection_item_create(coll, feature)
    loc = w.response_headers["Location"]
    new_code = loc.rsplit("/items/", 1)[1]
    assert new_code.startswith(big.parent_code) and new_code != big.code
    got = w.collection_item(coll, new_code)
    assert got["properties"]["parent_code"] == big.parent_code
    assert shapely.geometry.shape(got["geometry"]).symmetric_difference(square).area < 1e-14
    host = w.collection_item(coll, big.code)
    assert shapely.geometry.shape(host["geometry"]).intersection(square).area < 1e-14
    _draft_ok(base, gen, tok["planner"])
    area_after = _one(engine, AREA_SQL, g=gen, p=big.parent_code)[0]
    assert abs(area_after - area_before) < 1e-3  # m²: the community's area is unchanged

    # replace (PUT, the whole unit), then a patch of its name with its ETag
    put = {"type": "Feature", "geometry": got["geometry"],
           "properties": {"name": "新网格二", "attributes": {"note": "ogc"}}}
    assert w.collection_item_update(coll, new_code, put)
    with httpx.Client(base_url=f"{base}/ogc/collections/{coll}", headers=planner) as c:
        one = c.get(f"/items/{new_code}")
        assert one.json()["properties"]["name"] == "新网格二"
        assert one.json()["properties"]["leader_name"] is None  # a replace is whole
        tag = one.headers["etag"]
        r = c.patch(f"/items/{new_code}", json={"properties": {"name": "第九网格"}},
                    headers={"if-match": '"0-0"'})
        assert r.status_code == 412, r.text
        r = c.patch(f"/items/{new_code}", json={"properties": {"name": "第九网格"}},
                    headers={"if-match": tag})
        assert r.status_code == 200 and r.json()["edit"]["validation"]["ok"], r.text
        # a unit growing into its neighbour breaks the coverage: 422 with the violations
        grown = shapely.geometry.shape(got["geometry"]).buffer(0.002)
        r = c.patch(f"/items/{new_code}", json={"geometry": mapping(grown)})
        assert r.status_code == 422 and r.json()["violations"], r.text
        # carving outside the grid is refused, saying where
        r = c.post("/items", json={"type": "Feature", "properties": {"name": "x"},
                                   "geometry": mapping(shapely.box(0, 0, 0.01, 0.01))})
        assert r.status_code == 422 and "covers no unit" in r.json()["detail"]

    # delete: its area goes back to a sibling; the draft is seamless again
    assert w.collection_item_delete(coll, new_code)
    assert httpx.get(f"{base}/ogc/collections/{coll}/items/{new_code}",
                     headers=planner).status_code == 404
    _draft_ok(base, gen, tok["planner"])
    area_end = _one(engine, AREA_SQL, g=gen, p=big.parent_code)[0]
    assert abs(area_end - area_before) < 1e-3
    actions = [r[0] for r in _all(engine, "SELECT action FROM generation_event WHERE "
                                  "generation_id = :g ORDER BY id", g=gen)]
    assert actions[-4:] == ["carve", "put", "put", "merge"]
    # the active generation's rows are as they were
    assert _all(engine, "SELECT id, revision FROM grid_unit WHERE generation_low < :g "
                "ORDER BY id", g=gen) == [r for r in active_before]
    assert httpx.delete(f"{base}/generations/{gen}", headers=planner).status_code == 200


def test_cases_for_the_centre_without_personal_data(
        edit_server: tuple[str, Engine, dict[str, str]]) -> None:
    """The cases collection: the centre reads it (no reporter, no description), the
    public does not know it exists, other staff are refused; counts, the cases open at a
    time and a filter equal PostGIS's."""
    base, engine, tok = edit_server
    centre = _bearer(tok["centre"])
    with httpx.Client(base_url=base, timeout=30) as c:
        made = []
        for i, (lon, lat) in enumerate([(121.2301, 31.0407), (121.2402, 31.0312),
                                        (119.0, 29.0)]):  # the last one is outside the grid
            r = c.post("/cases", headers=centre, json={
                "channel": "hotline_12345", "category": "E0501", "lon": lon, "lat": lat,
                "description": f"私人信息 {i}", "reporter": {"name": "李四",
                                                           "phone": "13912345678"}})
            assert r.status_code == 201, r.text
            made.append(r.json()["ref"])
        listed = [x["id"] for x in c.get("/ogc/collections").json()["collections"]]
        assert "cases" not in listed
        assert c.get("/ogc/collections/cases/items").status_code == 404
        assert c.get("/ogc/collections/cases/items",
                     headers=_bearer(tok["patrol"])).status_code == 403
        assert "cases" in [x["id"] for x in c.get("/ogc/collections", headers=centre).json()[
            "collections"]]
        page = c.get("/ogc/collections/cases/items", headers=centre,
                     params={"limit": 10_000}).json()
        assert page["numberMatched"] == _one(engine, 'SELECT count(*) FROM "case"')[0]
        text_all = str(page)
        assert "李四" not in text_all and "13912345678" not in text_all
        assert "私人信息" not in text_all
        mine = {f["id"]: f for f in page["features"] if f["id"] in made}
        assert len(mine) == 3 and mine[made[2]]["properties"]["inside"] is False
        assert mine[made[0]]["properties"]["grid_code"]
        one = c.get(f"/ogc/collections/cases/items/{made[0]}", headers=centre)
        assert one.status_code == 200 and one.json()["geometry"]["coordinates"] == [
            121.2301, 31.0407]
        # open at a time: reported by then, not closed before
        t = _one(engine, 'SELECT created_at FROM "case" WHERE ref = :r', r=made[1])[0]
        at = c.get("/ogc/collections/cases/items", headers=centre,
                   params={"datetime": t.isoformat(), "limit": 10_000}).json()
        assert at["numberMatched"] == _one(
            engine, 'SELECT count(*) FROM "case" WHERE created_at <= :t AND (closed_at IS '
            "NULL OR closed_at > :t)", t=t)[0]
        assert made[1] in [f["id"] for f in at["features"]]
        assert made[2] not in [f["id"] for f in at["features"]]
        flt = c.get("/ogc/collections/cases/items", headers=centre, params={
            "filter": "inside = false AND category_code = 'E0501'"}).json()
        assert flt["numberMatched"] == _one(
            engine, "SELECT count(*) FROM \"case\" WHERE NOT inside AND "
            "category_code = 'E0501'")[0] >= 1
        assert c.get("/ogc/collections/cases/items", headers=centre,
                     params={"reporter_phone": "13912345678"}).status_code == 400


def test_two_writes_with_one_etag_one_wins(
        edit_server: tuple[str, Engine, dict[str, str]]) -> None:
    """Two patches sent at once with the same If-Match: one is stored, the other 412."""
    from concurrent.futures import ThreadPoolExecutor

    base, engine, tok = edit_server
    zone = _one(engine, "SELECT layer, code FROM department_zone WHERE valid_to IS NULL "
                "ORDER BY layer, code LIMIT 1")
    fid = f"{zone.layer}~{zone.code}"
    url = f"{base}/ogc/collections/zones/items/{fid}"
    with httpx.Client(headers=_bearer(tok["centre"]), timeout=30) as c:
        tag = c.get(url).headers["etag"]

        def patch(i: int) -> int:
            return c.patch(url, json={"properties": {"name": f"race {i}"}},
                           headers={"if-match": tag}).status_code

        for _ in range(3):
            with ThreadPoolExecutor(2) as pool:
                got = sorted(pool.map(patch, range(2)))
            assert got == [200, 412], got
            tag = c.get(url).headers["etag"]
    n = _one(engine, "SELECT count(*) FROM department_zone WHERE layer = :l AND code = :c "
             "AND valid_to IS NULL", l=zone.layer, c=zone.code)[0]
    assert n == 1


def test_writes_as_qgis_sends_them(edit_server: tuple[str, Engine, dict[str, str]]) -> None:
    """What QGIS 3.32+ sends (docs/ogc_design.md §8): HTTP Basic with the token as the
    password, every field of the layer (read-only ones and nulls too), coordinates at 6
    decimals in the layer's CRS with a bare Content-Crs URI (EPSG:4490: latitude first),
    the new id read from Location after its last /items/."""
    base, engine, tok = edit_server
    basic = base64.b64encode(f"qgis-user:{tok['centre']}".encode()).decode()
    like = _asset(engine)
    code = like["code"][:10] + "999003"
    with httpx.Client(base_url=f"{base}/ogc/collections/assets",
                      headers={"Authorization": f"Basic {basic}"}) as c:
        fields = c.get(f"/items/{like['code']}").json()["properties"]
        props = {**{k: None for k in fields}, **{k: like[k] for k in (
            "category_code", "kind", "supervising_department", "owner_department",
            "maintainer_department")}, "code": code}
        lon, lat = round(like["x"] + 5e-4, 6), round(like["y"] + 5e-4, 6)
        r = c.post("/items", json={"type": "Feature", "properties": props, "geometry": {
            "type": "Point", "coordinates": [lat, lon]}}, headers={
            "content-type": "application/geo+json",
            "content-crs": f"{EPSG}4490"})
        assert r.status_code == 201, r.text
        new_id = r.headers["location"].rsplit("/items/", 1)[1]
        assert new_id == code
        got = c.get(f"/items/{new_id}").json()
        assert got["properties"]["state"] == "intact"  # null: the default
        assert abs(got["geometry"]["coordinates"][0] - lon) < 1e-9
        # PUT of the whole feature as read, one field changed, grid_code and times included
        whole = {**got["properties"], "name": "QGIS edit"}
        r = c.put(f"/items/{new_id}", json={"type": "Feature", "properties": whole,
                                            "geometry": {"type": "Point",
                                                         "coordinates": [lat, lon]}},
                  headers={"content-crs": f"{EPSG}4490"})
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["name"] == "QGIS edit"
        assert r.json()["properties"]["grid_code"] == got["properties"]["grid_code"]
        r = c.delete(f"/items/{new_id}")
        assert r.status_code == 200, r.text
