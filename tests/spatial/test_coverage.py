"""The in-memory nested-grid checks and the coverage cleaner (pure, no database)."""

from __future__ import annotations

import math

import pytest
import shapely
from shapely import Polygon, box

from spatial import coverage as cv

X0, Y0 = 121.0, 31.0
D = 0.01  # about 1 km
M = 1e-5  # about 1 m in longitude at 31°N (0.95 m), 1.1 m in latitude

CFG = cv.CoverageConfig(code_lengths={1: 6, 2: 9, 3: 12, 4: 15},
                        level_keys={1: "district", 2: "street", 3: "community", 4: "grid"})

Unit = tuple[str, int, str | None, object]


def city() -> list[Unit]:
    """District 319999 = two streets, each one community of two grids (north 001, south 002)."""
    units: list[Unit] = [("319999", 1, None, box(X0, Y0, X0 + 2 * D, Y0 + D))]
    for s in range(2):
        sx = X0 + s * D
        street = f"319999{s + 1:03d}"
        comm = f"{street}001"
        units.append((street, 2, "319999", box(sx, Y0, sx + D, Y0 + D)))
        units.append((comm, 3, street, box(sx, Y0, sx + D, Y0 + D)))
        units.append((f"{comm}001", 4, comm, box(sx, Y0 + D / 2, sx + D, Y0 + D)))
        units.append((f"{comm}002", 4, comm, box(sx, Y0, sx + D, Y0 + D / 2)))
    return units


def put(units: list[Unit], target: str, **kw: object) -> list[Unit]:
    out = []
    for c, lv, p, g in units:
        if c == target:
            c = str(kw.get("code", c))
            lv = int(kw.get("level", lv))  # type: ignore[call-overload]
            p = kw.get("parent", p)  # type: ignore[assignment]
            g = kw.get("geometry", g)
        out.append((c, lv, p, g))
    return out


def same(a: object, b: object) -> bool:
    """Equal up to floating-point noise (areas in degrees²)."""
    return bool(shapely.area(shapely.symmetric_difference(a, b)) < 1e-14)


def check(units: list[Unit], cfg: cv.CoverageConfig = CFG) -> list[cv.Problem]:
    codes, levels, parents, geoms = zip(*units, strict=True)
    return cv.validate_coverage(codes, levels, parents, geoms, cfg)


def kinds(problems: list[cv.Problem]) -> dict[str, list[cv.Problem]]:
    out: dict[str, list[cv.Problem]] = {}
    for p in problems:
        out.setdefault(p.kind, []).append(p)
    return out


def test_clean_city_has_no_problem() -> None:
    assert check(city()) == []


def test_overlap_has_its_geometry_and_area() -> None:
    units = put(city(), "319999001001001", geometry=box(X0, Y0 + D / 2 - 0.001, X0 + D, Y0 + D))
    found = kinds(check(units))
    assert set(found) == {"sibling_overlap"}
    (ov,) = found["sibling_overlap"]
    assert ov.codes == ("319999001001001", "319999001001002")
    assert ov.geometry is not None
    assert same(ov.geometry, box(X0, Y0 + D / 2 - 0.001, X0 + D, Y0 + D / 2))
    assert ov.area_m2 == pytest.approx(1000 * 111, rel=0.1)  # ~1 km x 110 m
    assert "m² overlap between siblings" in ov.detail and ov.detail.startswith(
        f"{ov.area_m2:.2f}")
    assert ov.lon is not None and ov.lat is not None
    assert ov.geometry.covers(shapely.Point(ov.lon, ov.lat))
    feat = ov.as_feature()
    assert feat["geometry"]["type"] == "Polygon"
    assert feat["properties"]["kind"] == "sibling_overlap"
    assert feat["properties"]["area_m2"] == ov.area_m2


def test_gap_and_sliver() -> None:
    # grid 002 of community 2 ends half-way: a 0.5 km x 0.5 km gap
    units = put(city(), "319999002001002", geometry=box(X0 + D, Y0, X0 + 1.5 * D, Y0 + D / 2))
    (gap,) = kinds(check(units))["gap_in_parent"]
    assert gap.codes == ("319999002001",)
    assert gap.geometry is not None
    assert same(gap.geometry, box(X0 + 1.5 * D, Y0, X0 + 2 * D, Y0 + D / 2))
    assert "covered by none of its 2 children" in gap.detail
    assert gap.lon is not None and gap.lon > X0 + 1.5 * D
    # a sliver 1 km long and ~1 m wide (> 1 m²) is a gap; 1 km x 0.1 mm is tolerated
    wide = put(city(), "319999001001002", geometry=box(X0, Y0, X0 + D, Y0 + D / 2 - M))
    (sl,) = kinds(check(wide))["gap_in_parent"]
    assert sl.area_m2 == pytest.approx(1000 * 1.1, rel=0.1)
    thin = put(city(), "319999001001002", geometry=box(X0, Y0, X0 + D, Y0 + D / 2 - 1e-9))
    assert check(thin) == []


def test_bow_tie_is_invalid_and_left_out_of_the_area_checks() -> None:
    bowtie = Polygon([(X0, Y0), (X0 + D, Y0 + D / 2), (X0 + D, Y0), (X0, Y0 + D / 2)])
    found = kinds(check(put(city(), "319999001001002", geometry=bowtie)))
    (bad,) = found["invalid_geometry"]
    assert bad.codes == ("319999001001002",) and "Self-intersection" in bad.detail
    assert bad.lon == pytest.approx(X0 + D / 2) and bad.lat == pytest.approx(Y0 + D / 4)
    assert "sibling_overlap" not in found and "outside_parent" not in found
    # the invalid child counts for nothing: its half of the community is a gap
    (gap,) = found["gap_in_parent"]
    assert gap.codes == ("319999001001",) and "of its 1 children" in gap.detail


def test_unit_outside_its_parent() -> None:
    units = put(city(), "319999001001002", geometry=box(X0, Y0 - 0.002, X0 + D, Y0 + D / 2))
    found = kinds(check(units))
    (out,) = found["outside_parent"]
    assert out.codes == ("319999001001002", "319999001001")
    assert out.geometry is not None and same(out.geometry, box(X0, Y0 - 0.002, X0 + D, Y0))
    assert out.lat is not None and out.lat < Y0
    assert "m² of the unit lie outside its parent" in out.detail


def test_bad_codes_and_parents() -> None:
    found = kinds(check(put(city(), "319999002001002", code="31999900200102")))
    (bad,) = found["bad_code"]
    assert bad.detail == "a grid code has 15 digits, this one has 14"
    found = kinds(check(put(city(), "319999002001002", code="319999001001003")))
    assert [p.detail for p in found["bad_code"]] == [
        "code does not start with its parent's code 319999002001"]
    found = kinds(check(put(city(), "319999002001002", code="319999002001000")))
    assert [p.detail for p in found["bad_code"]] == ["a grid serial must be 001-999"]
    found = kinds(check(put(city(), "319999002001002", parent="319999002009")))
    assert [p.detail for p in found["bad_parent"]] == [
        "parent 319999002009 does not exist in this generation"]
    found = kinds(check(put(city(), "319999002001002", parent="319999002")))
    assert any(p.detail == "parent 319999002 is at level 2, expected 3"
               for p in found["bad_parent"])
    found = kinds(check(put(city(), "319999", parent="31")))
    assert [p.detail for p in found["bad_parent"]] == ["a top-level unit cannot have a parent"]
    units = [*city(), city()[-1]]
    assert [p.detail for p in kinds(check(units))["duplicate_code"]] == [
        "2 units share this code"]


def test_three_levels_with_lengths_2_4_6() -> None:
    cfg = cv.CoverageConfig(code_lengths={1: 2, 2: 4, 3: 6})
    units: list[Unit] = [("31", 1, None, box(X0, Y0, X0 + D, Y0 + D)),
                         ("3101", 2, "31", box(X0, Y0, X0 + D, Y0 + D)),
                         ("310101", 3, "3101", box(X0, Y0, X0 + D, Y0 + D / 2)),
                         ("310102", 3, "3101", box(X0, Y0 + D / 2, X0 + D, Y0 + D))]
    assert check(units, cfg) == []
    # a "000" serial is fine when the finest level is not 15 digits long
    assert check(put(units, "310102", code="310100"), cfg) == []
    bad = check(put(units, "310102", code="31010"), cfg)
    assert [p.detail for p in bad] == ["a level 3 code has 6 digits, this one has 5"]
    anylen = cv.CoverageConfig(code_lengths={1: 2, 2: None, 3: None})
    assert check(put(units, "310102", code="31010299"), anylen) == []


def _level4(units: list[Unit]) -> tuple[list[str], list[int], list[str | None], list[object]]:
    codes, levels, parents, geoms = (list(x) for x in zip(*units, strict=True))
    return codes, levels, parents, geoms


def test_clean_fixes_a_half_metre_misfit_and_keeps_unchanged_units() -> None:
    # grid 001 of community 1 has its south-east corner 0.5 m north of where 002 has it
    # (a ~240 m² sliver of gap) and 002 of community 2 its north-east corner 0.5 m north of
    # 001's (a ~240 m² sliver of overlap)
    half = 0.5 * 0.9e-5
    y = Y0 + D / 2
    units = put(city(), "319999001001001", geometry=Polygon(
        [(X0, y), (X0 + D, y + half), (X0 + D, Y0 + D), (X0, Y0 + D)]))
    units = put(units, "319999002001002", geometry=Polygon(
        [(X0 + D, Y0), (X0 + 2 * D, Y0), (X0 + 2 * D, y + half), (X0 + D, y)]))
    codes, levels, parents, geoms = _level4(units)
    assert {p.kind for p in cv.validate_coverage(codes, levels, parents, geoms, CFG)} == {
        "gap_in_parent", "sibling_overlap"}
    res = cv.clean_coverage(codes, levels, parents, geoms, CFG, snap_m=1.0,
                            max_area_m2=300)
    assert res.ok, res.problems
    assert cv.validate_coverage(codes, levels, parents, res.geometries, CFG) == []
    changed = {c.code: c for c in res.changes}
    assert set(changed) <= {"319999001001001", "319999001001002", "319999002001001",
                            "319999002001002"}
    assert changed, "something must have moved"
    for code, before, after in zip(codes, geoms, res.geometries, strict=True):
        if code not in changed:
            assert after is before  # the very object: no round trip through the metric CRS
            assert shapely.to_wkb(after) == shapely.to_wkb(before)
    # the gap went to a grid of community 1, the overlap to one grid of community 2
    assert {c[:12] for c in changed} == {"319999001001", "319999002001"}
    gained = [c for c in res.changes if c.gap_taken_m2 > 200]
    assert gained and gained[0].code.startswith("319999001001")
    swapped = [c for c in res.changes if c.given]
    assert swapped and swapped[0].given[0][1] > 100
    assert "gave" in swapped[0].detail and swapped[0].neighbours
    for c in res.changes:
        assert c.detail and math.isfinite(c.area_before_m2) and math.isfinite(c.area_after_m2)
        assert c.as_dict()["code"] == c.code
    # snapping only moves vertices onto other vertices, and those keep their exact lon/lat
    before = {tuple(xy) for xy in shapely.get_coordinates(geoms).tolist()}
    after = {tuple(xy) for xy in shapely.get_coordinates(res.geometries).tolist()}
    assert after <= before


def test_clean_leaves_an_exact_coverage_alone() -> None:
    # two vertices 0.3 m apart would collapse under a 1 m snap: nothing to clean, no snap
    y = Y0 + D / 2
    units = put(city(), "319999001001001", geometry=Polygon(
        [(X0, y), (X0 + 0.001, y), (X0 + 0.001 + 3e-6, y), (X0 + D, y), (X0 + D, Y0 + D),
         (X0, Y0 + D)]))
    units = put(units, "319999001001002", geometry=Polygon(
        [(X0, Y0), (X0 + D, Y0), (X0 + D, y), (X0 + 0.001 + 3e-6, y), (X0 + 0.001, y),
         (X0, y)]))
    codes, levels, parents, geoms = _level4(units)
    res = cv.clean_coverage(codes, levels, parents, geoms, CFG, snap_m=1.0)
    assert res.ok and res.changes == []
    assert all(a is b for a, b in zip(res.geometries, geoms, strict=True))


def test_clean_refuses_a_500_m2_overlap_and_leaves_the_level_alone() -> None:
    # ~5 m x 100 m of grid 001 reach into 002
    units = put(city(), "319999001001001",
                geometry=Polygon([(X0, Y0 + D / 2), (X0 + 0.001, Y0 + D / 2),
                                  (X0 + 0.001, Y0 + D / 2 - 5 * 0.9e-5),
                                  (X0 + 0.002, Y0 + D / 2 - 5 * 0.9e-5),
                                  (X0 + 0.002, Y0 + D / 2), (X0 + D, Y0 + D / 2),
                                  (X0 + D, Y0 + D), (X0, Y0 + D)]))
    codes, levels, parents, geoms = _level4(units)
    res = cv.clean_coverage(codes, levels, parents, geoms, CFG, snap_m=1.0, max_area_m2=100)
    assert not res.ok
    (p,) = res.problems
    assert p.kind == "sibling_overlap" and p.codes == ("319999001001001", "319999001001002")
    assert p.area_m2 is not None and 400 < p.area_m2 < 600
    assert all(a is b for a, b in zip(res.geometries, geoms, strict=True))
    assert res.changes == []


def test_rebuild_parents_unions_children() -> None:
    units = put(city(), "319999001001", geometry=box(X0, Y0, X0 + D, Y0 + D * 1.1))
    codes, levels, parents, geoms = _level4(units)
    assert any(p.kind == "gap_in_parent" for p in cv.validate_coverage(
        codes, levels, parents, geoms, CFG))
    rebuilt = cv.rebuild_parents(codes, levels, parents, geoms)
    assert cv.validate_coverage(codes, levels, parents, rebuilt, CFG) == []
    i = codes.index("319999001001")
    assert same(rebuilt[i], box(X0, Y0, X0 + D, Y0 + D))
    j = codes.index("319999002001")
    assert rebuilt[j] is geoms[j]


def test_transform_round_trip_and_area() -> None:
    g = box(X0, Y0, X0 + D, Y0 + D)
    (m,) = cv.to_metric([g])
    (back,) = cv.to_lonlat([m])
    assert shapely.equals_exact(back, g, tolerance=1e-9)
    assert cv.metric_area([g, None])[0] == pytest.approx(m.area)
    assert cv.metric_area([g, None])[1] == 0.0


# a MultiPolygon of a 6,568 m² part and a degenerate one, from a redraw on the megacity:
# GEOS's densifier returned the degenerate part alone, and the overlap measured 0 m²
_TWO_PARTS = (
    "01060000000200000001030000000100000015000000990D6CBC28655E4043A944C135513E407641"
    "33D427655E4059D34C7422513E40DC396BA727655E40A109949322513E40C4BA713027655E4093F3"
    "D21723513E40167C48BD26655E407F4514CA23513E4079690B4F26655E401886A0A824513E40B94B"
    "CAE625655E40D90853B125513E40B72A868525655E40B4369FE126513E40B8D32E2C25655E4004D7"
    "963628513E40338AA0DB24655E401F49F1AC29513E405D46C26412655E40B32F038688513E40EAA4"
    "C31D12655E407383251A8A513E40A3B303E111655E409F5C2BC88B513E40973818AF11655E405D8B"
    "F08B8D513E4092467C8811655E4005421B618F513E40A70D8F6D11655E4019CF264391513E4085F0"
    "925E11655E4007C16E2D93513E40CFE0AC5B11655E4026583A1B95513E406F4ED55F11655E40A118"
    "77F995513E40C3C98D4516655E40D78F569A94513E40990D6CBC28655E4043A944C135513E400103"
    "0000000100000004000000C3C98D4516655E40D78F569A94513E4088FF7B1F17655E407FC2318B97"
    "513E408C4E54782C655E406D8EE249E1513E40C3C98D4516655E40D78F569A94513E40"
)


def test_metric_area_of_a_multipolygon_with_a_degenerate_part() -> None:
    g = shapely.from_wkb(bytes.fromhex("".join(_TWO_PARTS)))
    whole = cv.metric_area([g], 4549)[0]
    parts = cv.metric_area(list(g.geoms), 4549)
    assert whole == pytest.approx(parts.sum()) and whole == pytest.approx(6567.84, abs=0.1)
