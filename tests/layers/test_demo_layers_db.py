"""The demo city's responsibility layers in PostGIS: loaded through the validating importer,
resolvable, disputes where they were planted, misaligned zone layers, OSM import."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from etl.osm_assets import helsinki_pbf, load_config
from etl.osm_import import import_osm_assets


def test_counts_and_assets_located(full_session: Session) -> None:
    q = full_session.execute
    assert q(text("SELECT count(*) FROM asset WHERE valid_to IS NULL")).scalar_one() >= 50_000
    assert q(text("SELECT count(*) FROM department")).scalar_one() >= 40
    assert q(text("SELECT count(DISTINCT tier) FROM department")).scalar_one() == 3
    kinds = {r[0] for r in q(text("SELECT DISTINCT kind FROM asset"))}
    assert {"manhole_water", "manhole_sewage", "manhole_storm", "manhole_power",
            "manhole_telecom", "manhole_gas", "street_light", "hydrant", "tree"} <= kinds
    # every asset inside the district got its grid, by the same rule as the resolver
    unlocated = q(text("""SELECT count(*) FROM asset a WHERE a.grid_code IS NULL AND EXISTS (
        SELECT 1 FROM grid_unit u WHERE u.level = 4 AND ST_Covers(u.geom, a.geom))""")
                  ).scalar_one()
    assert unlocated == 0
    wrong = q(text("""SELECT count(*) FROM asset a JOIN grid_unit u ON u.code = a.grid_code
                       WHERE NOT ST_Covers(u.geom, ST_PointOnSurface(a.geom))""")).scalar_one()
    assert wrong == 0
    no_day = q(text("""SELECT count(*) FROM grid_unit u WHERE u.level = 4 AND NOT EXISTS (
        SELECT 1 FROM patrol_assignment s WHERE s.grid_code = u.code AND s.shift = 'day')
        OR u.level = 4 AND NOT EXISTS (SELECT 1 FROM patrol_assignment s
        WHERE s.grid_code = u.code AND s.shift = 'night')""")).scalar_one()
    assert no_day == 0


def test_planted_near_duplicates_are_disputed(full_client: TestClient,
                                              full_session: Session) -> None:
    rows = full_session.execute(text("""
        SELECT a.code, a.category_code,
               (ST_X(a.geom) + ST_X(b.geom)) / 2 AS lon, (ST_Y(a.geom) + ST_Y(b.geom)) / 2 AS lat,
               b.owner_department AS other_owner, a.owner_department
          FROM asset a JOIN asset b ON b.code = a.attributes->>'near_duplicate_of'
         WHERE a.kind = b.kind AND a.owner_department <> b.owner_department
         ORDER BY a.code LIMIT 5""")).all()
    assert rows, "the demo plants covers of different owners side by side"
    disputed = 0
    for r in rows:  # a report half-way between the two covers
        a = full_client.get("/owner", params={"lon": r.lon, "lat": r.lat,
                                              "category": r.category_code}).json()
        assert a["trail"][0]["rule"] == "asset"
        if a["disputed"]:
            disputed += 1
            assert a["owner"]["code"].startswith("JD")  # the street takes it first
            assert {r.owner_department, r.other_owner} <= {
                c["department"]["code"] for c in a["candidates"]}
    assert disputed == len(rows)
    # right on top of one cover, it is that cover's owner
    lon, lat, owner, cat = full_session.execute(text(
        "SELECT ST_X(a.geom), ST_Y(a.geom), a.owner_department, a.category_code FROM asset a "
        "WHERE a.code = :c"), {"c": rows[0].code}).one()
    on = full_client.get("/owner", params={"lon": lon, "lat": lat, "category": cat}).json()
    assert on["disputed"] is False and on["owner"]["code"] == owner


def test_lookup_on_the_demo(full_client: TestClient, full_session: Session) -> None:
    lon, lat = full_session.execute(text(
        "SELECT ST_X(geom), ST_Y(geom) FROM asset WHERE kind = 'manhole_water' "
        "AND grid_code IS NOT NULL ORDER BY code LIMIT 1")).one()
    lk = full_client.get("/lookup", params={"lon": lon, "lat": lat, "radius": 30}).json()
    assert lk["inside"] and len(lk["chain"]) == 4
    assert {z["layer"] for z in lk["zones"]} == {"police_beats", "cgzf_zones", "market_zones"}
    assert lk["assets"] and lk["assets"][0]["distance_m"] < 0.01
    assert any(o["category"]["code"] == "C0101" for o in lk["owners"])


def test_zone_layers_are_misaligned_and_ranked(full_client: TestClient) -> None:
    rank = full_client.get("/alignment").json()["ranking"]
    assert len(rank) == 3
    for r in rank:
        assert r["grids"] == 1322 and 0 < r["grids_split"] < 1322
        assert 0 < r["score"] < 1
    assert [r["score"] for r in rank] == sorted((r["score"] for r in rank), reverse=True)


def test_osm_import_of_the_helsinki_extract(full_session: Session) -> None:
    import dataclasses

    cfg = dataclasses.replace(load_config(), district_code="999901")
    read, stored = import_osm_assets(full_session, helsinki_pbf(), cfg)
    assert stored is not None
    assert read.imported > 1000 and stored["created"] == read.imported
    assert stored["refused_count"] == 0
    kinds = dict(full_session.execute(text(
        "SELECT kind, count(*) FROM asset WHERE source = 'osm' GROUP BY kind")).all())
    assert kinds["street_light"] > 100 and kinds["hydrant"] > 10 and kinds["manhole_water"] > 50
    # Helsinki lies in no grid of Songjiang: kept, not located
    assert full_session.execute(text(
        "SELECT count(*) FROM asset WHERE source = 'osm' AND grid_code IS NOT NULL")
    ).scalar_one() == 0
