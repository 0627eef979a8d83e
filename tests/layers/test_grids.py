"""Loading, validating, versioning and reading generations against a real PostGIS."""

from __future__ import annotations

from dataclasses import replace as dc_replace
from datetime import UTC, datetime, timedelta

import pytest
import shapely
from shapely import Polygon, box
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from layers import grids
from layers.models import Generation, GridPiece, GridUnit
from layers.settings import Settings
from spatial.errors import GridInvariantError, InvalidGeometry, InvalidInput, NotFound
from tests.support.tinycity import X0, Y0, D, replace, tiny_city


def _state(session: Session) -> tuple[int, int, int, int | None]:
    return (
        session.scalar(select(func.count()).select_from(GridUnit)) or 0,
        session.scalar(select(func.count()).select_from(Generation)) or 0,
        session.scalar(select(func.count()).select_from(GridPiece)) or 0,
        session.scalar(select(Generation.id).where(Generation.active)),
    )


def _refused(session: Session, settings: Settings, units: list[grids.UnitInput],
             exc: type[Exception] = GridInvariantError) -> Exception:
    """Load inside a savepoint; it must fail and leave the database exactly as it was."""
    before = _state(session)
    with pytest.raises(exc) as info, session.begin_nested():
        grids.load_generation(session, units, settings, label="broken")
    assert _state(session) == before
    return info.value


def test_tiny_city_loads_and_activates(session: Session, settings: Settings) -> None:
    gen = grids.load_generation(session, tiny_city(), settings, label="tiny")
    assert gen.active and gen.activated_at is not None
    assert grids.counts_per_level(session, gen.id) == {
        "district": 1, "street": 2, "community": 2, "grid": 4}
    assert grids.validate_generation(session, gen.id, settings) == []
    row = grids.get_unit(session, gen.id, "319999001001001")
    assert row.leader_name == "张伟"
    assert row.area_m2 == pytest.approx(D / 2 * 111_000 * D * 95_000, rel=0.1)
    pieces = session.scalar(text("SELECT count(*) FROM grid_piece p JOIN grid_unit u "
                                 "ON u.id = p.unit_id WHERE u.generation_low = :g"),
                            {"g": gen.id})
    assert pieces >= 9


def test_overlapping_siblings_refused_with_codes_and_location(
        session: Session, settings: Settings) -> None:
    # grid 001 reaches 100 m into grid 002 (still inside its parent)
    units = replace(tiny_city(), "319999001001001",
                    geometry=box(X0, Y0 + D / 2 - 0.001, X0 + D, Y0 + D))
    err = _refused(session, settings, units)
    kinds = {v["kind"] for v in err.extra["violations"]}
    assert "sibling_overlap" in kinds
    ov = next(v for v in err.extra["violations"] if v["kind"] == "sibling_overlap")
    assert ov["codes"] == ["319999001001001", "319999001001002"]
    lon, lat = ov["location"]
    assert X0 <= lon <= X0 + D and Y0 + D / 2 - 0.001 <= lat <= Y0 + D / 2
    assert "m² overlap" in ov["detail"]


def test_gap_refused(session: Session, settings: Settings) -> None:
    units = replace(tiny_city(), "319999002001002",
                    geometry=box(X0 + D, Y0, X0 + 1.5 * D, Y0 + D / 2))
    err = _refused(session, settings, units)
    gap = next(v for v in err.extra["violations"] if v["kind"] == "gap_in_parent")
    assert gap["codes"] == ["319999002001"]
    assert gap["location"][0] > X0 + 1.5 * D


def test_child_outside_parent_refused(session: Session, settings: Settings) -> None:
    units = replace(tiny_city(), "319999001001002",
                    geometry=box(X0, Y0 - 0.002, X0 + D, Y0 + D / 2))
    err = _refused(session, settings, units)
    out = [v for v in err.extra["violations"] if v["kind"] == "outside_parent"]
    assert out and out[0]["codes"] == ["319999001001002", "319999001001"]
    assert out[0]["location"][1] < Y0


def test_self_intersection_refused_before_the_database(
        session: Session, settings: Settings) -> None:
    bowtie = Polygon([(X0, Y0), (X0 + D, Y0 + D / 2), (X0 + D, Y0), (X0, Y0 + D / 2)])
    units = replace(tiny_city(), "319999001001002", geometry=bowtie)
    err = _refused(session, settings, units, InvalidGeometry)
    assert "319999001001002" in str(err) and "Self-intersection" in str(err)


def test_bad_codes_refused(session: Session, settings: Settings) -> None:
    units = replace(tiny_city(), "319999002001002", code="31999900200102")
    err = _refused(session, settings, units)
    bad = [v for v in err.extra["violations"] if v["kind"] == "bad_code"]
    assert bad and "15 digits" in bad[0]["detail"]
    units = replace(tiny_city(), "319999002001002", code="319999001001003")
    err = _refused(session, settings, units)
    assert any("does not start with its parent" in v["detail"]
               for v in err.extra["violations"])
    units = [*tiny_city(), tiny_city()[-1]]
    err = _refused(session, settings, units, InvalidInput)
    assert "code '319999002001002' repeats unit #9" in str(err)


def test_projected_coordinates_refused(session: Session, settings: Settings) -> None:
    units = replace(tiny_city(), "319999001001002",
                    geometry=box(340_000, 3_430_000, 341_000, 3_431_000))
    err = _refused(session, settings, units, InvalidGeometry)
    assert "EPSG:4326" in str(err)


def test_new_generation_versions_changed_units_and_keeps_history(
        session: Session, settings: Settings) -> None:
    g1 = grids.load_generation(session, tiny_city(), settings, label="v1")
    t1 = g1.activated_at
    assert t1 is not None
    # planners move the line between the two grids of community 1 by 200 m
    moved = replace(tiny_city(), "319999001001001",
                    geometry=box(X0, Y0 + D / 2 + 0.002, X0 + D, Y0 + D))
    moved = replace(moved, "319999001001002", geometry=box(X0, Y0, X0 + D, Y0 + D / 2 + 0.002))
    g2 = grids.load_generation(session, moved, settings, label="v2")
    assert g2.id > g1.id and g2.active and not session.get(Generation, g1.id).active  # type: ignore[union-attr]
    # unchanged units are the same rows; changed ones have two versions
    hist = grids.history(session, "319999001001001")
    assert [(h.generation_low, h.generation_high) for h in hist][-2:] == [
        (g1.id, g1.id), (g2.id, None)]
    assert len(grids.history(session, "319999002001001")) >= 1
    assert grids.history(session, "319999002001001")[-1].generation_high is None
    # reads name a generation or a time
    old = grids.get_unit(session, g1.id, "319999001001001")
    new = grids.get_unit(session, g2.id, "319999001001001")
    assert new.area_m2 < old.area_m2
    assert grids.generation_at(session, at=t1 + timedelta(microseconds=1)).id in (g1.id, g2.id)
    assert grids.generation_at(session, at=t1).id == g1.id
    assert grids.generation_at(session).id == g2.id
    assert grids.validate_generation(session, g1.id, settings) == []


def test_generation_lookup_errors(session: Session) -> None:
    with pytest.raises(NotFound):
        grids.generation_at(session, generation=999_999)
    with pytest.raises(NotFound):
        grids.generation_at(session, at=datetime(1990, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInput):
        grids.level_rank(session, "province")
    with pytest.raises(NotFound):
        grids.history(session, "000000000")


def test_levels_are_configurable(session: Session, settings: Settings) -> None:
    names = "district:区,street:街道,community:社区,grid:单元网格"
    custom = settings.model_copy(update={"levels": names})
    lv = grids.sync_levels(session, custom)
    assert [x.name for x in lv] == ["区", "街道", "社区", "单元网格"]
    assert grids.level_rank(session, "单元网格") == 4


def _dirty_city() -> list[grids.UnitInput]:
    """Every kind of broken invariant but the invalid geometry (added in SQL)."""
    units = replace(tiny_city(), "319999001001001",  # overlaps 002 by ~110 m
                    geometry=box(X0, Y0 + D / 2 - 0.001, X0 + D, Y0 + D))
    units = replace(units, "319999002001002",  # leaves a gap in community 2
                    geometry=box(X0 + D, Y0, X0 + 1.5 * D, Y0 + D / 2))
    units = replace(units, "319999001001002",  # reaches out of its parent to the south
                    geometry=box(X0, Y0 - 0.002, X0 + D, Y0 + D / 2))
    units = replace(units, "319999002001001", code="319999002001000")  # serial 000
    units.append(grids.UnitInput("31999900100", "短码", 3, "319999001",  # 11 digits
                                 box(X0, Y0, X0 + D / 10, Y0 + D / 10)))
    units.append(grids.UnitInput("319999009001", "孤儿", 3, "319999009",  # no such parent
                                 box(X0 + D, Y0 + D / 2, X0 + 1.1 * D, Y0 + 0.6 * D)))
    return units


def test_in_memory_checks_agree_with_the_sql_reference(
        session: Session, settings: Settings) -> None:
    gen = grids.create_generation(session, "dirty")
    grids.insert_units(session, gen.id, _dirty_city(), settings)
    session.execute(text(
        "UPDATE grid_unit SET geom = ST_Multi(ST_GeomFromText("
        "'POLYGON((121.01 31.005, 121.02 31.01, 121.02 31.005, 121.01 31.01, 121.01 31.005))',"
        " 4326)) WHERE code = '319999002001000' AND generation_low = :g"), {"g": gen.id})
    new = grids.validate_generation(session, gen.id, settings)
    old = grids.validate_generation_sql(session, gen.id, settings)
    assert {v.kind for v in old} == {"invalid_geometry", "bad_code", "bad_parent",
                                     "outside_parent", "sibling_overlap", "gap_in_parent"}

    def key(v: grids.Violation) -> tuple[str, tuple[str, ...]]:
        return v.kind, v.codes

    assert sorted(map(key, new)) == sorted(map(key, old))
    by_key = {key(v): v for v in new}
    for o in old:
        n = by_key[key(o)]
        if o.kind in ("outside_parent", "sibling_overlap", "gap_in_parent"):
            area_old = float(o.detail.split(" ", 1)[0])
            # the engine measures lon/lat edges densified (spatial.coverage.DENSIFY_DEG),
            # PostGIS by their ends: ~1e-5 apart on a 1 km edge
            assert n.area_m2 == pytest.approx(area_old, rel=2e-5, abs=0.02), o
            assert n.detail.split(" ", 1)[1] == o.detail.split(" ", 1)[1]
            assert n.geometry is not None and n.geometry.area > 0
        else:
            assert n.detail == o.detail
        if o.lon is None:
            assert n.lon is None
        else:
            assert n.lon == pytest.approx(o.lon, abs=1e-6)
            assert n.lat == pytest.approx(o.lat, abs=1e-6)
        feat = n.as_feature()
        assert feat["type"] == "Feature" and feat["geometry"] is not None
        assert feat["properties"] == n.as_dict()
    # validate_units finds the same before anything is written (bar the SQL-made bow-tie)
    pre = grids.validate_units(_dirty_city(), settings)
    assert sorted(map(key, pre)) == sorted(key(v) for v in new if v.kind != "invalid_geometry")


def test_reoriented_rings_carry_over(session: Session, settings: Settings) -> None:
    g1 = grids.load_generation(session, tiny_city(), settings, label="v1")
    # a Shapefile round trip: rings clockwise, starting at another vertex
    def turned(u: grids.UnitInput) -> grids.UnitInput:
        coords = list(shapely.reverse(u.geometry).exterior.coords)[:-1]
        coords = coords[2:] + coords[:2]
        return dc_replace(u, geometry=Polygon(coords), attributes={})

    units = [turned(u) for u in tiny_city()]
    assert all(not shapely.equals_exact(a.geometry, b.geometry, 0)
               for a, b in zip(units, tiny_city(), strict=True))
    before = session.scalar(select(func.count()).select_from(GridUnit))
    g2 = grids.load_generation(session, units, settings, label="v2")
    assert session.scalar(select(func.count()).select_from(GridUnit)) == before
    assert g2.active
    assert grids.history(session, "319999001001001")[-1].generation_low == g1.id


def test_three_level_deployment_with_short_codes(settings: Settings) -> None:
    three = settings.model_copy(update={"levels": "city:市,ward:区,block:块",
                                        "code_lengths": "2,4,6"})
    assert three.code_length_map() == {1: 2, 2: 4, 3: 6}
    units = [grids.UnitInput("31", "市", 1, None, box(X0, Y0, X0 + D, Y0 + D)),
             grids.UnitInput("3101", "区", 2, "31", box(X0, Y0, X0 + D, Y0 + D)),
             grids.UnitInput("310100", "块1", 3, "3101", box(X0, Y0, X0 + D, Y0 + D / 2)),
             grids.UnitInput("310102", "块2", 3, "3101", box(X0, Y0 + D / 2, X0 + D, Y0 + D))]
    assert grids.validate_units(units, three) == []
    bad = grids.validate_units(replace(units, "310102", code="3101020"), three)
    assert [v.detail for v in bad] == ["a block code has 6 digits, this one has 7"]
    with pytest.raises(ValueError, match="GRIDOPS_CODE_LENGTHS"):
        settings.model_copy(update={"code_lengths": "2,4,6"}).code_length_map()
