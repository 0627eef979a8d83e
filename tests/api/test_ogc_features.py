"""OGC API Features, Part 1 (Core), read by OWSLib's own client (owslib.ogcapi.features)
from a real server on a copy of the demo city: landing page, conformance, the API
definition (the items' limit default and maximum where QGIS reads them), the collections,
items with bbox and limit, paging by the next links to the end (every unit once, the
total numberMatched, equal to PostGIS's count), one item, property filters, datetime, and
the 400s a bad parameter gets. HTML only when asked for."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, text

from layers.cluster import Cluster
from layers.db import make_engine
from tests.support.clusters import clone_full
from tests.support.servers import serving

CORE = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"
GRID = "grid-grid"


@pytest.fixture(scope="module")
def ogc_server(pg_cluster: Cluster, full_engine: Engine) -> Iterator[tuple[str, Engine]]:
    url = clone_full(pg_cluster, full_engine, "gridops_ogc")
    engine = make_engine(url)
    with serving(url, GRIDOPS_SCHEDULER_INTERVAL_S="0") as base:
        yield base, engine
    engine.dispose()


def _count(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as c:
        return int(c.execute(text(sql), params).scalar_one())


ACTIVE_FINEST = ("SELECT count(*) FROM grid_unit u JOIN generation g ON g.active "
                 "WHERE u.level = 4 AND u.generation_low <= g.id AND "
                 "(u.generation_high IS NULL OR u.generation_high >= g.id)")


def test_owslib_reads_the_grid_and_the_layers(ogc_server: tuple[str, Engine],
                                              owslib_headers: None) -> None:
    from owslib.ogcapi.features import Features

    base, engine = ogc_server
    w = Features(f"{base}/ogc")
    assert CORE in w.conformance()["conformsTo"]
    api = w.api()
    limit = api["components"]["parameters"]["limit"]["schema"]
    assert (limit["default"], limit["maximum"]) == (100, 10_000)
    assert all(p.startswith("/ogc") for p in api["paths"])
    ids = w.feature_collections()
    assert {"grid-district", "grid-street", "grid-community", GRID, "assets", "areas",
            "zones", "assignments", "departments", "categories"} <= set(ids)
    coll = w.collection(GRID)
    assert coll["storageCrs"].endswith("CRS84") and coll["itemType"] == "feature"
    x0, y0, x1, y1 = coll["extent"]["spatial"]["bbox"][0]
    assert 120 < x0 < x1 < 123 and 30 < y0 < y1 < 32

    # every finest unit once by following next, the total PostGIS's
    total = _count(engine, ACTIVE_FINEST)
    seen: list[str] = []
    kw: dict[str, object] = {"limit": 500}
    while True:
        page = w.collection_items(GRID, **kw)
        assert page["numberMatched"] == total
        assert page["numberReturned"] == len(page["features"]) <= 500
        seen += [f["id"] for f in page["features"]]
        nxt = [lk["href"] for lk in page["links"] if lk["rel"] == "next"]
        if not nxt:
            break
        kw = dict(parse_qsl(urlsplit(nxt[0]).query))
    assert len(seen) == len(set(seen)) == total == 1322

    # bbox: PostGIS's ST_Intersects count; one item; a property filter
    box = [121.20, 31.00, 121.25, 31.04]
    page = w.collection_items(GRID, bbox=box, limit=1000)
    want = _count(engine, ACTIVE_FINEST + " AND ST_Intersects(u.geom, ST_MakeEnvelope("
                  ":a, :b, :c, :d, 4326))", a=box[0], b=box[1], c=box[2], d=box[3])
    assert page["numberMatched"] == page["numberReturned"] == want > 0
    one = page["features"][0]
    got = w.collection_item(GRID, one["id"])
    assert got["id"] == one["id"] and got["geometry"] == one["geometry"]
    q = w.collection_queryables(GRID)["properties"]
    assert q["parent_code"]["type"] == "string"
    assert q["geometry"]["$ref"] == "https://geojson.org/schema/MultiPolygon.json"
    street = one["properties"]["parent_code"]
    kids = w.collection_items("grid-grid", parent_code=street, limit=1000)
    assert kids["numberMatched"] == _count(engine, ACTIVE_FINEST + " AND u.parent_code = :p",
                                           p=street)

    # a layer: current rows, a filter, an item by key, and the past by datetime
    zones = w.collection_items("zones", limit=10)
    assert zones["numberMatched"] == _count(
        engine, "SELECT count(*) FROM department_zone WHERE valid_to IS NULL")
    z = zones["features"][0]
    assert z["id"] == f'{z["properties"]["layer"]}~{z["properties"]["code"]}'
    assert w.collection_item("zones", z["id"])["properties"] == z["properties"]
    dept = z["properties"]["department_code"]
    mine = w.collection_items("zones", department_code=dept, limit=1000)
    assert {f["properties"]["department_code"] for f in mine["features"]} == {dept}
    before = w.collection_items("zones", datetime_="2000-01-01T00:00:00Z")
    assert before["numberMatched"] == 0  # the demo's layers start today
    deps = w.collection_items("departments", limit=5)
    assert deps["features"][0]["geometry"] is None and deps["numberMatched"] > 5


def test_bad_parameters_are_400_and_html_is_asked_for(ogc_server: tuple[str, Engine]) -> None:
    base, _ = ogc_server
    with httpx.Client(base_url=base) as c:
        for params, where in [({"bbox": "1,2,3"}, "bbox"), ({"bbox": "121,31,120,32"}, "bbox"),
                              ({"datetime": "yesterday"}, "datetime"),
                              ({"colour": "red"}, "colour")]:
            r = c.get(f"/ogc/collections/{GRID}/items", params=params)
            assert r.status_code == 400, (params, r.text)
            assert where in r.json()["detail"]
        assert c.get("/ogc/collections/nothing/items").status_code == 404
        assert c.get(f"/ogc/collections/{GRID}/items/999").status_code == 404
        big = c.get(f"/ogc/collections/{GRID}/items", params={"limit": 50_000})
        assert big.status_code == 200 and big.json()["numberReturned"] == 1322  # at most max
        assert c.get("/ogc").headers["content-type"].startswith("application/json")
        assert c.get("/ogc", headers={"accept": "text/xml,application/xml"}).headers[
            "content-type"].startswith("application/json")
        page = c.get(f"/ogc/collections/{GRID}/items", params={"limit": 3},
                     headers={"accept": "text/html,application/xhtml+xml"})
        assert page.headers["content-type"].startswith("text/html")
        assert "3 of 1322 features" in page.text and "leaflet" in page.text
        assert c.get("/ogc/collections", params={"f": "html"}).text.count("/items?f=html") >= 10


EPSG = "http://www.opengis.net/def/crs/EPSG/0/"


def _first_xy(geom: dict[str, object]) -> tuple[float, float]:
    c: object = geom["coordinates"]
    while isinstance(c, list) and isinstance(c[0], list):
        c = c[0]
    assert isinstance(c, list)
    return float(c[0]), float(c[1])


def test_crs_axis_order_and_bbox_crs(ogc_server: tuple[str, Engine]) -> None:
    """Part 2: the offered CRSs, each answer in its own axis order (EPSG:4326 and 4490
    latitude first, the CGCS2000 Gauss-Kruger zone northing first, Web Mercator easting
    first) with Content-Crs, and bbox-crs read in its axis order."""
    from pyproj import Transformer

    base, engine = ogc_server
    with httpx.Client(base_url=f"{base}/ogc/collections/{GRID}") as c:
        offered = c.get(f"{base}/ogc/collections/{GRID}").json()["crs"]
        assert {ogc_crs for ogc_crs in offered} >= {
            "http://www.opengis.net/def/crs/OGC/1.3/CRS84", EPSG + "4326", EPSG + "4490",
            EPSG + "4549", EPSG + "3857"}
        box = "121.20,31.00,121.25,31.04"
        plain = c.get("/items", params={"bbox": box, "limit": 1000})
        assert plain.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
        ids = [f["id"] for f in plain.json()["features"]]
        lon, lat = _first_xy(plain.json()["features"][0]["geometry"])
        for code in (4490, 4326):  # latitude first, in the answer and in bbox-crs
            r = c.get("/items", params={"bbox": "31.00,121.20,31.04,121.25",
                                        "bbox-crs": f"{EPSG}{code}", "crs": f"{EPSG}{code}",
                                        "limit": 1000})
            assert r.status_code == 200, r.text
            assert r.headers["content-crs"] == f"<{EPSG}{code}>"
            assert [f["id"] for f in r.json()["features"]] == ids
            y, x = _first_xy(r.json()["features"][0]["geometry"])
            assert abs(x - lon) < 1e-6 and abs(y - lat) < 1e-6
        gk = c.get(f"/items/{ids[0]}", params={"crs": "EPSG:4549"})
        n, e = _first_xy(gk.json()["geometry"])
        want_e, want_n = Transformer.from_crs(4326, 4549, always_xy=True).transform(lon, lat)
        assert abs(n - want_n) < 0.01 and abs(e - want_e) < 0.01 and n > 3e6
        merc = c.get(f"/items/{ids[0]}", params={"crs": f"{EPSG}3857"})
        x, y = _first_xy(merc.json()["geometry"])
        mx, _ = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
        assert abs(x - mx) < 0.01
        # a box in the Gauss-Kruger zone, northing first: PostGIS's answer in that CRS
        e0, n0 = want_e - 2000, want_n - 2000
        r = c.get("/items", params={"bbox": f"{n0},{e0},{n0 + 4000},{e0 + 4000}",
                                    "bbox-crs": f"{EPSG}4549", "limit": 1000})
        with engine.connect() as conn:
            truth = sorted(conn.execute(text(
                ACTIVE_FINEST.replace("SELECT count(*)", "SELECT u.code")
                + " AND ST_Intersects(ST_Transform(u.geom, 4549), "
                  "ST_MakeEnvelope(:e0, :n0, :e1, :n1, 4549))"),
                {"e0": e0, "n0": n0, "e1": e0 + 4000, "n1": n0 + 4000}).scalars())
        assert [f["id"] for f in r.json()["features"]] == truth and truth
        bad = c.get("/items", params={"crs": f"{EPSG}2000"})
        assert bad.status_code == 400 and "4490" in bad.json()["detail"]


def test_gdal_reads_the_grid_through_its_oapif_driver(ogc_server: tuple[str, Engine]) -> None:
    """GDAL's own OGC API Features driver (pyogrio's GDAL): the layers it lists, every
    finest unit with its code, and a bbox it pushes to the server."""
    import pyogrio

    base, engine = ogc_server
    names = {str(n) for n, _ in pyogrio.list_layers(f"OAPIF:{base}/ogc")}
    assert {GRID, "zones", "assets"} <= names
    df = pyogrio.read_dataframe(f"OAPIF:{base}/ogc", layer=GRID)
    assert len(df) == df["code"].nunique() == _count(engine, ACTIVE_FINEST)
    assert df.geometry.geom_type.isin(["MultiPolygon", "Polygon"]).all()
    part = pyogrio.read_dataframe(f"OAPIF:{base}/ogc", layer=GRID,
                                  bbox=(121.20, 31.00, 121.25, 31.04))
    assert 0 < len(part) < len(df)


QGIS_FILTER_CLASSES = [
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-operators"]


def test_cql2_filters_are_postgis_answers(ogc_server: tuple[str, Engine],
                                          owslib_headers: None) -> None:
    """Part 3: CQL2 text (in the forms QGIS writes) and JSON, pushed to PostGIS: each
    filter's features are exactly the rows the same condition selects in SQL; a filter that
    cannot be read, or names what is not a queryable, is a 400 that says where."""
    from owslib.ogcapi.features import Features

    base, engine = ogc_server
    w = Features(f"{base}/ogc")
    assert set(QGIS_FILTER_CLASSES) <= set(w.conformance()["conformsTo"])

    def ids(**kw: object) -> list[str]:
        page = w.collection_items(GRID, limit=2000, **kw)
        assert page["numberMatched"] == page["numberReturned"]
        return [f["id"] for f in page["features"]]

    def sql(where: str, **params: object) -> list[str]:
        with engine.connect() as c:
            return list(c.execute(text(ACTIVE_FINEST.replace("SELECT count(*)", "SELECT u.code")
                                       + f" AND {where} ORDER BY u.code"), params).scalars())

    box = "ST_MakeEnvelope(121.20, 31.00, 121.25, 31.04, 4326)"
    inside = sql(f"ST_Intersects(u.geom, {box})")
    assert ids(filter="S_INTERSECTS(geometry,BBOX(121.20,31.00,121.25,31.04))") == inside
    street = inside[0][:12]
    cases = [
        (f"(\"parent_code\" = '{street}')", "u.parent_code = :s"),
        (f"parent_code = '{street}' AND area_m2 > 200000", "u.parent_code = :s AND "
         "u.area_m2 > 200000"),
        (f"(NOT (parent_code = '{street}')) AND S_INTERSECTS(geom,BBOX(121.20,31.00,121.25,"
         "31.04))", f"u.parent_code <> :s AND ST_Intersects(u.geom, {box})"),
        (f"code IN ('{inside[0]}','{inside[-1]}')", "u.code IN (:a, :b)"),
        ("area_m2 BETWEEN 100000 AND 150000", "u.area_m2 BETWEEN 100000 AND 150000"),
        (f"code LIKE '{street}%' OR area_m2 IS NULL", "u.code LIKE :s || '%'"),
        ("( - (area_m2)) < -300000", "u.area_m2 > 300000"),
        ("area_m2 / 0 > 1", "false"),
        ("S_WITHIN(geometry,POLYGON((121.2 31.0,121.25 31.0,121.25 31.04,121.2 31.04,"
         "121.2 31.0)))", f"ST_Within(u.geom, {box})"),
    ]
    for cql, where in cases:
        want = sql(where, s=street, a=inside[0], b=inside[-1])
        assert ids(filter=cql) == want, cql
    as_json = ('{"op": "and", "args": [{"op": "=", "args": [{"property": "parent_code"}, '
               f'"{street}"]}}, {{"op": "s_intersects", "args": [{{"property": "geometry"}}, '
               '{"bbox": [121.20, 31.00, 121.25, 31.04]}]}]}')
    assert ids(filter=as_json, **{"filter-lang": "cql2-json"}) == sql(
        f"u.parent_code = :s AND ST_Intersects(u.geom, {box})", s=street)
    # a box in CGCS2000, latitude first
    assert ids(filter="S_INTERSECTS(geometry,BBOX(31.00,121.20,31.04,121.25))",
               **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4490"}) == inside

    with httpx.Client(base_url=f"{base}/ogc/collections/{GRID}") as c:
        for cql, where in [("code = 'a' AND (", "1:"), ("colour = 'red'", "queryable"),
                           ("code = 010101", "quote"), ("area_m2 ^ 1000 > 1", "filter"),
                           ("S_INTERSECTS(geometry, 3)", "geometries")]:
            r = c.get("/items", params={"filter": cql})
            assert r.status_code == 400, (cql, r.text)
            assert where in r.json()["detail"], (cql, r.json()["detail"])
