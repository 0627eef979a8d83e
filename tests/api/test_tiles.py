"""Vector tiles (layers/tiles.py, api/routers/tiles.py) on the demo city, real PostGIS: a
tile decoded (mapbox-vector-tile) holds exactly the units or rows whose geometry meets its
envelope (PostGIS's ST_Intersects with ST_TileEnvelope and the tile's buffer), with their
codes and names; the cache (a second read is a hit; a layer edit through the API
invalidates the tiles it touched and not a far one; an activation yields the new
generation's tiles and keeps the untouched ones warm); bad z/x/y are 4xx; a draft's tiles
are invisible to the public; no personal data in any tile."""

from __future__ import annotations

import math
from typing import Any

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import tiles
from layers.auth import create_token
from layers.settings import Settings
from layers.versioning import current
from tests.api.test_activation import bind_registries

SPOT = (121.2277, 31.0322)  # Songjiang's centre
FAR = (121.05, 30.93)  # the district's west, some 20 km away
URL = "/ogc/collections/{c}/tiles/WebMercatorQuad/{z}/{x}/{y}"


@pytest.fixture(autouse=True)
def _no_tiles_in_memory() -> None:
    """Each test starts with this process's memory of tiles empty (the tests' database
    changes are rolled back; a real server's published tiles never change)."""
    tiles.MEMORY.clear()


def _xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _get(c: TestClient, coll: str, z: int, lon_lat: tuple[float, float], **kw: Any) -> Any:
    x, y = _xy(*lon_lat, z)
    return c.get(URL.format(c=coll, z=z, x=x, y=y), **kw)


def _features(r: Any, layer: str) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == tiles.MVT
    if not r.content:
        return []
    return list(mapbox_vector_tile.decode(r.content).get(layer, {}).get("features", []))


def _meets(session: Session, sql: str, z: int, lon_lat: tuple[float, float],
           **params: Any) -> dict[str, str]:
    """code -> name of what meets the tile's envelope (and its buffer), by PostGIS."""
    x, y = _xy(*lon_lat, z)
    env = f"ST_Transform(ST_TileEnvelope({z}, {x}, {y}, margin => {tiles.BUFFER / tiles.EXTENT})" \
          ", 4326)"
    return dict(session.execute(text(sql.format(env=env)), params).all())


def _cached(session: Session, coll: str) -> int:
    return int(session.scalar(text("SELECT count(*) FROM tile_cache WHERE collection = :c"),
                              {"c": coll}) or 0)


def _h(session: Session, role: str) -> dict[str, str]:
    _, secret = create_token(session, f"tiles-{role}", role)
    return {"authorization": f"Bearer {secret}"}


@pytest.mark.parametrize(("coll", "level", "z"), [("grid-grid", 4, 14), ("grid-street", 2, 12),
                                                  ("grid-community", 3, 15)])
def test_a_grid_tile_holds_exactly_the_units_meeting_it(
        full_client: TestClient, full_session: Session, coll: str, level: int, z: int) -> None:
    got = {f["properties"]["code"]: f["properties"] for f in
           _features(_get(full_client, coll, z, SPOT), coll)}
    want = _meets(full_session, f"SELECT u.code, u.name FROM grid_unit u WHERE {current('u')} "
                  "AND u.level = :lvl AND ST_Intersects(u.geom, {env})", z, SPOT, lvl=level)
    assert want and set(got) == set(want)
    assert {k: p["name"] for k, p in got.items()} == want
    for p in got.values():
        assert set(p) == {"code", "name", "parent_code", "level"} and p["level"] == level
        assert p["parent_code"] and p["code"].startswith(p["parent_code"])


def test_layer_tiles_hold_their_rows_and_no_personal_data(
        full_client: TestClient, full_session: Session) -> None:
    zones = _features(_get(full_client, "zones", 13, SPOT), "zones")
    want = _meets(full_session, "SELECT z.layer || '~' || z.code, z.name FROM department_zone z "
                  "WHERE z.valid_to IS NULL AND ST_Intersects(z.geom, {env})", 13, SPOT)
    assert {f"{f['properties']['layer']}~{f['properties']['code']}": f["properties"]["name"]
            for f in zones} == want and want
    assert all(f["properties"]["department_name"] for f in zones)
    assets = _features(_get(full_client, "assets", 16, SPOT), "assets")
    want = _meets(full_session, "SELECT a.code, a.name FROM asset a WHERE a.valid_to IS NULL "
                  "AND ST_Intersects(a.geom, {env})", 16, SPOT)
    assert {f["properties"]["code"] for f in assets} == set(want) and want
    keys = set().union(*(f["properties"] for f in assets + zones))
    assert not keys & {"leader_name", "leader_phone", "phone", "members", "contact_name",
                       "contact_phone", "attributes"}
    # a collection without geometry has no tiles
    r = full_client.get(URL.format(c="departments", z=10, x=0, y=0))
    assert r.status_code == 404 and "no geometry" in r.json()["detail"]


def test_the_cache_hits_and_an_edit_invalidates_only_where_it_touched(
        full_client: TestClient, full_session: Session) -> None:
    s, c = full_session, full_client
    first = _get(c, "grid-grid", 14, SPOT)
    assert first.headers["x-tile-cache"] == "miss"
    again = _get(c, "grid-grid", 14, SPOT)
    assert again.headers["x-tile-cache"] == "hit" and again.content == first.content
    assert c.get(URL.format(c="grid-grid", z=14, x=_xy(*SPOT, 14)[0], y=_xy(*SPOT, 14)[1]),
                 headers={"if-none-match": again.headers["etag"]}).status_code == 304

    # a zone at the spot, and the tiles of the zones layer near and far
    zone = s.execute(text(
        "SELECT layer, code, name FROM department_zone WHERE valid_to IS NULL AND "
        "ST_Intersects(geom, ST_SetSRID(ST_Point(:x, :y), 4326)) ORDER BY layer, code LIMIT 1"),
        {"x": SPOT[0], "y": SPOT[1]}).one()
    far_zone = s.scalar(text(
        "SELECT count(*) FROM department_zone WHERE valid_to IS NULL AND "
        "ST_Intersects(geom, ST_SetSRID(ST_Point(:x, :y), 4326)) AND NOT ST_DWithin(geom, "
        "ST_SetSRID(ST_Point(:a, :b), 4326), 0.02)"),
        {"x": FAR[0], "y": FAR[1], "a": SPOT[0], "b": SPOT[1]})
    assert far_zone, "a zone in the far tile that does not reach the spot"
    for where in (SPOT, FAR):
        assert _get(c, "zones", 15, where).headers["x-tile-cache"] == "miss"
        assert _get(c, "zones", 15, where).headers["x-tile-cache"] == "hit"
    planner = _h(s, "planner")
    r = c.put(f"/layers/zones/{zone.layer}/{zone.code}", json={"name": "renamed by the test"},
              headers=planner)
    assert r.status_code == 200, r.text
    near = _get(c, "zones", 15, SPOT)
    assert near.headers["x-tile-cache"] == "miss"  # rebuilt, with the new name
    names = {f["properties"]["code"]: f["properties"]["name"]
             for f in _features(near, "zones") if f["properties"]["layer"] == zone.layer}
    assert names[zone.code] == "renamed by the test"
    assert _get(c, "zones", 15, FAR).headers["x-tile-cache"] == "hit"  # untouched
    assert _get(c, "grid-grid", 14, SPOT).headers["x-tile-cache"] == "hit"  # another layer
    # retiring it: gone from the tile
    r = c.delete(f"/layers/zones/{zone.layer}/{zone.code}", headers=planner)
    assert r.status_code == 200, r.text
    near = _get(c, "zones", 15, SPOT)
    assert near.headers["x-tile-cache"] == "miss"
    assert (zone.layer, zone.code) not in {(f["properties"]["layer"], f["properties"]["code"])
                                           for f in _features(near, "zones")}


def test_bad_addresses_are_4xx_that_say_why(full_client: TestClient) -> None:
    for path, status, words in [
            (URL.format(c="grid-grid", z=23, x=0, y=0), 404, "zoom levels 0 to 22"),
            (URL.format(c="grid-grid", z=3, x=8, y=0), 404, "x and y are 0 to 7"),
            (URL.format(c="grid-grid", z=3, x=0, y=99), 404, "outside WebMercatorQuad"),
            (URL.format(c="grid-grid", z="a", x=0, y=0), 400, "'a' is not a whole number"),
            (URL.format(c="grid-grid", z=3, x=-1, y=0), 400, "not a whole number"),
            (URL.format(c="nowhere", z=3, x=0, y=0), 404, "no collection 'nowhere'"),
            ("/ogc/collections/grid-grid/tiles/WorldCRS84Quad/3/0/0", 404, "Not Found")]:
        r = full_client.get(path)
        assert r.status_code == status, (path, r.text)
        assert words in r.text, (path, r.text)
    # an empty tile (the ocean) is a 200 with an empty body
    r = full_client.get(URL.format(c="grid-grid", z=14, x=0, y=0))
    assert r.status_code == 200 and r.content == b""


def test_tilesets_and_the_tile_matrix_set(full_client: TestClient) -> None:
    doc = full_client.get("/ogc/collections/grid-grid/tiles").json()
    (ts,) = doc["tilesets"]
    tmpl = next(lk["href"] for lk in ts["links"] if lk["rel"] == "item")
    assert tmpl.endswith("/ogc/collections/grid-grid/tiles/WebMercatorQuad/{tileMatrix}/"
                         "{tileCol}/{tileRow}")
    tms = full_client.get("/ogc/tileMatrixSets/WebMercatorQuad").json()
    assert len(tms["tileMatrices"]) == 23 and tms["tileMatrices"][3]["matrixWidth"] == 8
    assert full_client.get("/ogc/collections/roles/tiles").status_code == 404


def _adjacent(session: Session) -> tuple[str, str]:
    """Two finest grids of one community sharing an edge, at the spot."""
    row = session.execute(text(f"""
        SELECT a.code, b.code FROM grid_unit a JOIN grid_unit b
            ON b.parent_code = a.parent_code AND b.code > a.code AND b.level = a.level
           AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) > 0.001
         WHERE a.level = 4 AND {current('a')} AND {current('b')}
         ORDER BY ST_Distance(a.geom, ST_SetSRID(ST_Point(:x, :y), 4326)) LIMIT 1"""),
        {"x": SPOT[0], "y": SPOT[1]}).one()
    return row[0], row[1]


def test_a_draft_is_invisible_and_an_activation_yields_its_tiles(
        full_client: TestClient, full_session: Session, settings: Settings) -> None:
    s, c = full_session, full_client
    bind_registries(c, s, settings)
    planner = _h(s, "planner")
    public = {"authorization": ""}
    a, b = _adjacent(s)
    for where in (SPOT, FAR):  # the active generation's tiles, cached
        _get(c, "grid-grid", 15, where)
    r = c.post("/generations", json={"label": "tiles"}, headers=planner)
    assert r.status_code == 201, r.text
    draft = r.json()["id"]
    r = c.post(f"/generations/{draft}/merge", json={"codes": [a, b], "keep": a},
               headers=planner)
    assert r.status_code == 200, r.text

    # the draft's tiles: a planner's, never cached; the public's answer: not published
    r = _get(c, "grid-grid", 15, SPOT, params={"generation": draft}, headers=planner)
    codes = {f["properties"]["code"] for f in _features(r, "grid-grid")}
    assert r.headers["x-tile-cache"] == "bypass" and a in codes and b not in codes
    assert r.headers["cache-control"] == "private, no-store"
    r = _get(c, "grid-grid", 15, SPOT, params={"generation": draft}, headers=public)
    assert r.status_code == 404 and "not published" in r.text
    active = _get(c, "grid-grid", 15, SPOT)
    assert b in {f["properties"]["code"] for f in _features(active, "grid-grid")}
    assert _cached(s, "grid-grid") == 2

    r = c.post(f"/generations/{draft}/activate",
               json={"open_cases": "keep", "confirm_unpatrolled": True}, headers=planner)
    assert r.status_code == 200, r.text
    new = _get(c, "grid-grid", 15, SPOT)  # the active generation is now the draft
    assert new.headers["x-tile-cache"] == "miss"
    codes = {f["properties"]["code"] for f in _features(new, "grid-grid")}
    assert a in codes and b not in codes
    assert _get(c, "grid-grid", 15, FAR).headers["x-tile-cache"] == "hit"  # carried over
    # the old generation's tiles stay for history
    old = _get(c, "grid-grid", 15, SPOT, params={"generation": r.json()["previous"]})
    assert old.headers["x-tile-cache"] == "hit" and old.content == active.content


def test_prewarm_builds_the_walls_first_view(full_session: Session) -> None:
    """prewarm(): every tile of every grid level that the wall's first view (the territory
    fitted on a 1600 x 900 screen) and the next zoom show, stored and in memory; a second
    pass reads them back; a worker's memory then answers without the database."""
    from layers import ogc

    s = full_session
    gen, n = tiles.prewarm_active(s)
    assert gen is not None and n > 0
    levels = [c for c in ogc.catalogue(s) if c.kind == "grid"]
    box = ogc.extent(s, levels[0], gen)
    assert box is not None
    bounds = (box[0], box[1], box[2], box[3])
    z0 = tiles.fit_zoom(bounds)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    # the whole fitted screen and one zoom out, the territory one zoom in
    addrs = {*tiles.view_tiles(centre, z0 - 1), *tiles.view_tiles(centre, z0),
             *tiles.box_tiles(bounds, z0 + 1)}
    assert set(tiles.box_tiles(bounds, z0)) < set(tiles.view_tiles(centre, z0))
    want = {(c.id, z, x, y) for c in levels for z, x, y in addrs}
    assert n == len(want)
    got = {tuple(r) for r in s.execute(text(
        "SELECT collection, z, x, y FROM tile_cache WHERE generation = :g"), {"g": gen})}
    assert got == want
    assert len(tiles.MEMORY) == len(want)
    c, (_, x, y) = levels[-1], tiles.box_tiles(bounds, z0)[0]
    s.execute(text("DELETE FROM tile_cache WHERE generation = :g"), {"g": gen})
    kept = tiles.tile(s, c, z0, x, y, gen_id=gen)  # from memory: the rows are gone
    assert kept.hit and kept.data == bytes(s.execute(text(tiles._tile_sql(c)),
                                                     tiles._params(c, gen, z0, x, y)).scalar_one())
