"""The demo city in PostGIS: counts and the nested-grid invariants, checked by independent
queries (not the loader's own validation code)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import grids
from layers.settings import Settings

CURRENT = "generation_low <= :g AND (generation_high IS NULL OR generation_high >= :g)"


def cur(alias: str) -> str:
    """The validity condition for a table alias."""
    return (f"{alias}.generation_low <= :g AND ({alias}.generation_high IS NULL "
            f"OR {alias}.generation_high >= :g)")


def q(session: Session, sql: str, g: int) -> list:  # type: ignore[type-arg]
    return list(session.execute(text(sql.replace("{CURRENT}", CURRENT)), {"g": g}))


def test_counts_1_20_386_1322(session: Session, demo_loaded: int) -> None:
    rows = q(session, "SELECT level, count(*) FROM grid_unit WHERE {CURRENT} GROUP BY level "
                      "ORDER BY level", demo_loaded)
    assert [tuple(r) for r in rows] == [(1, 1), (2, 20), (3, 386), (4, 1322)]
    assert grids.active_generation(session).id == demo_loaded  # type: ignore[union-attr]


def test_all_valid_and_codes_well_formed(session: Session, demo_loaded: int) -> None:
    assert q(session, "SELECT code FROM grid_unit WHERE {CURRENT} AND NOT ST_IsValid(geom)",
             demo_loaded) == []
    bad = q(session, """
        SELECT code FROM grid_unit WHERE {CURRENT} AND NOT (
            (level = 1 AND code ~ '^[0-9]{6}$' AND parent_code IS NULL) OR
            (level = 2 AND code ~ '^[0-9]{9}$') OR (level = 3 AND code ~ '^[0-9]{12}$') OR
            (level = 4 AND code ~ '^[0-9]{15}$' AND right(code, 3) <> '000'))
           OR (level > 1 AND left(code, length(parent_code)) <> parent_code)""", demo_loaded)
    assert bad == []
    assert q(session, "SELECT code FROM grid_unit WHERE {CURRENT} GROUP BY code "
                      "HAVING count(*) > 1", demo_loaded) == []
    assert q(session, "SELECT code FROM grid_unit WHERE code = '310117' AND {CURRENT}",
             demo_loaded)


def test_children_tile_their_parent(session: Session, demo_loaded: int) -> None:
    # every unit lies inside its parent (1 m² slack for floating point) ...
    outside = q(session, f"""
        SELECT c.code FROM grid_unit c JOIN grid_unit p ON p.code = c.parent_code
         WHERE {cur("c")} AND {cur("p")}
           AND ST_Area(ST_Difference(c.geom, p.geom)::geography) > 1""", demo_loaded)
    assert outside == []
    # ... and the children's areas add up to the parent's with no gap or overlap
    sums = q(session, """
        SELECT p.code, p.area_m2, sum(c.area_m2) AS children, ST_Area(ST_SymDifference(
               p.geom, ST_Union(c.geom))::geography) AS diff
          FROM grid_unit p JOIN grid_unit c ON c.parent_code = p.code
         WHERE p.generation_low <= :g AND (p.generation_high IS NULL OR p.generation_high >= :g)
           AND c.generation_low <= :g AND (c.generation_high IS NULL OR c.generation_high >= :g)
         GROUP BY p.code, p.area_m2, p.geom""", demo_loaded)
    assert len(sums) == 1 + 20 + 386
    for code, area, children, diff in sums:
        assert abs(area - children) < 1.0, code
        assert diff < 1.0, code


def test_siblings_do_not_overlap(session: Session, demo_loaded: int) -> None:
    overlaps = q(session, """
        SELECT a.code, b.code FROM grid_unit a JOIN grid_unit b
            ON a.level = b.level AND a.code < b.code AND a.geom && b.geom
         WHERE a.generation_low <= :g AND (a.generation_high IS NULL OR a.generation_high >= :g)
           AND b.generation_low <= :g AND (b.generation_high IS NULL OR b.generation_high >= :g)
           AND ST_Area(ST_Intersection(a.geom, b.geom)::geography) > 0.01""", demo_loaded)
    assert overlaps == []


def test_district_area_is_songjiang(session: Session, demo_loaded: int) -> None:
    (area,) = q(session, "SELECT area_m2 FROM grid_unit WHERE code = '310117' AND {CURRENT}",
                demo_loaded)[0]
    # the article gives 604.65 km²; the simplified Tianditu outline is within a few percent
    assert 570e6 < area < 640e6


def test_loader_validation_agrees(session: Session, settings: Settings, demo_loaded: int) -> None:
    assert grids.validate_generation(session, demo_loaded, settings) == []


def test_demo_loads_once(session: Session, settings: Settings, demo_loaded: int) -> None:
    from etl.demo import load_demo

    assert load_demo(session, settings) is None
