"""Tests of the deterministic synthetic nested grid (no database)."""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry

from etl import demo_city
from etl.demo_city import UnitSpec, build_city, megacity_source, songjiang_source, songjiang_units

CODE_LENGTH = {1: 6, 2: 9, 3: 12, 4: 15}


def _to_metric() -> Callable[[np.ndarray], np.ndarray]:
    """Return a vectorised lon/lat -> EPSG:4549 coordinate function."""
    tr = Transformer.from_crs("EPSG:4326", "EPSG:4549", always_xy=True)

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return fn


@pytest.fixture(scope="module")
def units() -> list[UnitSpec]:
    """The Songjiang demo grid, built once for the module."""
    return songjiang_units()


@pytest.fixture(scope="module")
def metric(units: list[UnitSpec]) -> dict[str, BaseGeometry]:
    """Unit geometries projected to EPSG:4549 (metres), by code."""
    geoms = shapely.transform(np.asarray([u.geometry for u in units], dtype=object), _to_metric())
    return {u.code: g for u, g in zip(units, geoms, strict=True)}


def test_counts_and_order(units: list[UnitSpec]) -> None:
    levels = [u.level for u in units]
    assert levels.count(1) == 1
    assert levels.count(2) == 20
    assert levels.count(3) == 386
    assert levels.count(4) == 1322
    assert levels == sorted(levels)
    for level in (2, 3, 4):
        codes = [u.code for u in units if u.level == level]
        assert codes == sorted(codes)
    assert units[0].code == "310117"
    assert units[0].name == "松江区"


def test_codes(units: list[UnitSpec]) -> None:
    by_code = {u.code: u for u in units}
    assert len(by_code) == len(units)
    for u in units:
        assert re.fullmatch(rf"\d{{{CODE_LENGTH[u.level]}}}", u.code), u.code
        if u.level == 1:
            assert u.parent_code is None
            continue
        assert u.parent_code is not None
        parent = by_code[u.parent_code]
        assert parent.level == u.level - 1
        assert u.code.startswith(parent.code)
    serials: dict[str, list[int]] = defaultdict(list)
    for u in units:
        if u.level == 4:
            assert u.parent_code is not None
            serials[u.parent_code].append(int(u.code[12:]))
    communities = [u.code for u in units if u.level == 3]
    assert set(serials) == set(communities)  # every community has at least one grid
    for code, got in serials.items():
        assert sorted(got) == list(range(1, len(got) + 1)), code


def test_names_people_and_kinds(units: list[UnitSpec]) -> None:
    by_code = {u.code: u for u in units}
    assert by_code["310117001001001"].name == "龙潭社区第1网格"
    for u in units:
        if u.level != 4:
            assert u.leader_name is None and u.leader_phone is None
            continue
        assert u.parent_code is not None
        community = by_code[u.parent_code]
        serial = int(u.code[12:])
        assert u.name.endswith(f"第{serial}网格")
        assert not re.search("(居委会|村委会|委员会)第", u.name)
        assert u.leader_name is not None and 2 <= len(u.leader_name) <= 3
        assert u.leader_phone is not None and re.fullmatch(r"1[358]\d{9}", u.leader_phone)
        urban = "居委会" in community.name or "社区" in community.name
        assert u.attributes == {"kind": "urban" if urban else "rural"}
    kinds = {u.attributes["kind"] for u in units if u.level == 3}
    assert kinds == {"residential", "village", "park"}


def test_geometries_valid_multipolygons(units: list[UnitSpec]) -> None:
    geoms = np.asarray([u.geometry for u in units], dtype=object)
    assert all(isinstance(g, MultiPolygon) for g in geoms)
    assert shapely.is_valid(geoms).all()
    assert not shapely.is_empty(geoms).any()
    minx, miny, maxx, maxy = units[0].geometry.bounds
    assert 120.8 < minx < maxx < 121.6 and 30.6 < miny < maxy < 31.3  # lon/lat order
    # Every unit is contiguous (stray pieces are repaired at build time).
    assert all(len(g.geoms) == 1 for g in geoms)


def test_children_union_equals_parent(units: list[UnitSpec], metric: dict) -> None:
    children: dict[str, list[str]] = defaultdict(list)
    for u in units:
        if u.parent_code is not None:
            children[u.parent_code].append(u.code)
    assert len(children) == 1 + 20 + 386
    for parent, kids in children.items():
        union = shapely.union_all([metric[k] for k in kids])
        assert shapely.symmetric_difference(union, metric[parent]).area < 1.0, parent


def test_units_of_a_level_do_not_overlap(units: list[UnitSpec], metric: dict) -> None:
    for level in (2, 3, 4):
        geoms = np.asarray([metric[u.code] for u in units if u.level == level], dtype=object)
        tree = shapely.STRtree(geoms)
        left, right = tree.query(geoms, predicate="intersects")
        pairs = left < right
        assert pairs.sum() > len(geoms)  # neighbours do touch
        areas = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
        assert float(areas.max()) < 0.01, level


@pytest.mark.skipif(not hasattr(shapely, "coverage_is_valid"), reason="shapely < 2.1")
def test_grids_share_edges_exactly(units: list[UnitSpec]) -> None:
    for level in (2, 3, 4):
        geoms = np.asarray([u.geometry for u in units if u.level == level], dtype=object)
        assert shapely.coverage_is_valid(geoms), level


def test_district_matches_outline(units: list[UnitSpec], metric: dict) -> None:
    outline = shapely.transform(songjiang_source().outline, _to_metric())
    district = metric["310117"]
    assert math.isclose(district.area, outline.area, rel_tol=0.01)
    assert shapely.symmetric_difference(district, outline).area < 0.001 * outline.area
    # Songjiang is 604.65 km²; the public outline is close to that.
    assert 550e6 < outline.area < 660e6


def test_deterministic(units: list[UnitSpec]) -> None:
    again = build_city(songjiang_source())
    assert [u.code for u in again] == [u.code for u in units]
    for i in (0, 1, 25, 400, 407, 1000, len(units) - 1):
        assert again[i].geometry.wkb == units[i].geometry.wkb
        assert again[i].leader_phone == units[i].leader_phone
    other = build_city(songjiang_source(), seed=1)
    assert other[-1].geometry.wkb != units[-1].geometry.wkb


def test_grid_numbering_rule(units: list[UnitSpec], metric: dict) -> None:
    grids: dict[str, list[UnitSpec]] = defaultdict(list)
    for u in units:
        if u.level == 4 and u.parent_code is not None:
            grids[u.parent_code].append(u)
    checked = 0
    for community, members in grids.items():
        if len(members) < 2:
            continue
        cgeom = metric[community]
        h = math.sqrt(cgeom.area / len(members))
        ymax = cgeom.bounds[3]
        rp = shapely.get_coordinates(
            shapely.point_on_surface(np.asarray([metric[m.code] for m in members], dtype=object))
        )
        rows = np.floor((ymax - rp[:, 1]) / h)
        serial = np.array([int(m.code[12:]) for m in members])
        order = np.argsort(serial)
        keys = list(zip(rows[order], rp[order, 0], strict=True))
        assert keys == sorted(keys), community  # row by row, west to east
        first = order[0]
        assert rows[first] == rows.min()
        assert rp[first, 0] == rp[rows == rows.min(), 0].min()
        checked += 1
    assert checked > 300


def test_urban_grids_are_smaller(units: list[UnitSpec], metric: dict) -> None:
    area: dict[str, list[float]] = {"urban": [], "rural": []}
    for u in units:
        if u.level == 4:
            area[u.attributes["kind"]].append(metric[u.code].area)
    assert np.median(area["urban"]) < 0.5 * np.median(area["rural"])


def test_shipped_data() -> None:
    data = demo_city.DATA_DIR
    collection = json.loads((data / "songjiang_district.geojson").read_text(encoding="utf-8"))
    assert len(collection["features"]) == 1
    assert collection["features"][0]["properties"] == {
        "code": "310117",
        "name": "松江区",
        "gb": "156310117",
        "source_crs": "EPSG:4490",
    }
    with (data / "songjiang_streets.csv").open(encoding="utf-8", newline="") as fh:
        streets = list(csv.DictReader(fh))
    with (data / "songjiang_communities.csv").open(encoding="utf-8", newline="") as fh:
        communities = list(csv.DictReader(fh))
    assert len(streets) == 20 and list(streets[0]) == ["code", "name"]
    assert len(communities) == 386 and list(communities[0]) == ["code", "name", "street_code"]
    assert (data / "PROVENANCE.md").exists()
    src = songjiang_source()
    assert src.n_grids == 1322
    assert set(src.street_anchors) == {s[0] for s in src.streets}


def test_small_megacity() -> None:
    src = megacity_source(3000, seed=3)
    assert src.district_code == "319901"
    assert src.street_anchors == {}
    assert all(len(c) == 9 and c.startswith("319901") for c, _ in src.streets)
    assert all(len(c) == 12 and c.startswith(s) for c, _, s in src.communities)
    assert src.outline.is_valid
    built = build_city(src, seed=5)
    levels = [u.level for u in built]
    assert levels.count(1) == 1
    assert levels.count(2) == len(src.streets)
    assert levels.count(3) == len(src.communities)
    assert levels.count(4) == 3000
    geoms = np.asarray([u.geometry for u in built], dtype=object)
    assert shapely.is_valid(geoms).all()
    grids = geoms[np.array(levels) == 4]
    total = shapely.area(grids).sum()
    assert math.isclose(total, built[0].geometry.area, rel_tol=1e-9)
