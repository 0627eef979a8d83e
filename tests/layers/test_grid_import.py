"""Bring your own city: grids imported from real GIS files (written by GDAL), validated,
cleaned, and exported again, against the test suite's PostGIS."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely import MultiPolygon, Polygon, box
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from layers import grids
from layers.grid_export import export_grid
from layers.grid_import import ImportOptions, import_grid
from layers.models import Generation, GridUnit
from layers.settings import Settings
from spatial.errors import GridInvariantError, InvalidInput
from tests.support.gridfiles import X0, Y0, lattice_city, write_units


def _state(session: Session) -> tuple[int, int]:
    return (session.scalar(select(func.count()).select_from(GridUnit)) or 0,
            session.scalar(select(func.count()).select_from(Generation)) or 0)


def _import(session: Session, settings: Settings, paths: list[Path], **opts: object):
    with session.begin_nested():
        return import_grid(session, paths, ImportOptions(**opts), settings)  # type: ignore[arg-type]


def _refused(session: Session, settings: Settings, paths: list[Path],
             exc: type[Exception] = GridInvariantError, **opts: object) -> Exception:
    before = _state(session)
    with pytest.raises(exc) as info:
        _import(session, settings, paths, **opts)
    assert _state(session) == before, "a refused import must load nothing"
    return info.value


def _geoms(session: Session, gen: int) -> dict[str, MultiPolygon]:
    rows = session.execute(text(
        "SELECT code, ST_AsBinary(geom) AS wkb FROM grid_unit u WHERE "
        "u.generation_low <= :g AND (u.generation_high IS NULL OR u.generation_high >= :g)"),
        {"g": gen})
    return {r.code: shapely.from_wkb(bytes(r.wkb)) for r in rows}


def test_geopackage_in_gauss_kruger_loads_as_a_draft(session: Session, settings: Settings,
                                                     tmp_path: Path) -> None:
    city = lattice_city()
    path = write_units(tmp_path / "city.gpkg", city, driver="GPKG", crs="EPSG:4549")
    active_before = grids.active_generation(session)
    res = _import(session, settings, [path])
    assert res.counts == {"district": 1, "street": 2, "community": 6, "grid": 294}
    assert not res.activated and res.new_rows == 303
    gen = session.get(Generation, res.generation)
    assert gen is not None and not gen.active and gen.activated_at is None
    assert grids.active_generation(session) == active_before, "a draft stays invisible"
    got = _geoms(session, gen.id)
    for u in city[:40]:
        # EPSG:4549 and back: well under a millimetre
        assert shapely.hausdorff_distance(got[u.code], u.geometry) < 1e-8
    parents = dict(session.execute(text(
        "SELECT code, parent_code FROM grid_unit WHERE generation_low = :g"), {"g": gen.id}).all())
    assert parents["319998001001001"] == "319998001001" and parents["319998"] is None
    assert res.mapping["code"] == "GRIDCODE" and res.mapping["name"] == "名称"


def test_reimporting_an_unchanged_city_makes_no_new_rows(session: Session, settings: Settings,
                                                         tmp_path: Path) -> None:
    path = write_units(tmp_path / "city.gpkg", lattice_city(), driver="GPKG")
    first = _import(session, settings, [path], activate=True)
    assert first.activated
    n_rows = _state(session)[0]
    again = _import(session, settings, [path], activate=True)
    assert again.new_rows == 0 and again.carried_over == 303 and again.ended == 0
    assert _state(session)[0] == n_rows


def test_gbk_shapefile_in_a_zip_finest_level_only(session: Session, settings: Settings,
                                                  tmp_path: Path) -> None:
    grids_only = [u for u in lattice_city() if u.level == 4]
    shp_dir = tmp_path / "shp"
    shp_dir.mkdir()
    community_names = [f"第{u.code[6:9]}街道第{u.code[9:12]}社区" for u in grids_only]
    write_units(shp_dir / "wg.shp", grids_only, driver="ESRI Shapefile", encoding="GBK",
                fields={"code": "WGBM", "name": "WGMC"}, extra={"社区名称": community_names})
    (shp_dir / "wg.cpg").unlink()  # as GIS offices often send them: no .cpg
    raw = (shp_dir / "wg.dbf").read_bytes()
    assert "网格".encode("gbk") in raw and "网格".encode() not in raw
    zpath = tmp_path / "wg.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in shp_dir.iterdir():
            zf.write(f, arcname=f.name)
    res = _import(session, settings, [zpath])
    assert res.built_levels == ["community", "street", "district"]
    assert res.counts == {"district": 1, "street": 2, "community": 6, "grid": 294}
    names = dict(session.execute(text(
        "SELECT code, name FROM grid_unit WHERE generation_low = :g"), {"g": res.generation}).all())
    assert names["319998001001001"] == "1社区1号网格"
    assert names["319998002003"] == "第002街道第003社区"
    assert any("GB18030" in n for n in res.notes)
    # the built community is exactly the union of its grids
    got = _geoms(session, int(res.generation or 0))
    assert got["319998001001"].symmetric_difference(
        box(X0, Y0 + 0.02, X0 + 0.02, Y0 + 0.03)).area < 1e-14


def test_wrong_encoding_named(session: Session, settings: Settings, tmp_path: Path) -> None:
    grids_only = [u for u in lattice_city() if u.level == 4][:5]
    write_units(tmp_path / "wg.shp", grids_only, driver="ESRI Shapefile", encoding="GBK")
    (tmp_path / "wg.cpg").unlink()
    e = _refused(session, settings, [tmp_path / "wg.shp"], InvalidInput, encoding="UTF-8")
    assert "encoding" in str(e) and "UTF-8" in str(e)


def test_gcj02_geojson_and_flatgeobuf_per_level(session: Session, settings: Settings,
                                                tmp_path: Path) -> None:
    city = lattice_city()
    path = write_units(tmp_path / "amap.geojson", city, driver="GeoJSON", crs="GCJ-02")
    res = _import(session, settings, [path], crs="GCJ-02")
    got = _geoms(session, int(res.generation or 0))
    worst = max(shapely.hausdorff_distance(got[u.code], u.geometry) for u in city[:30])
    assert worst < 1e-7, f"GCJ-02 inverse off by {worst} degrees"
    session.rollback()
    # one FlatGeobuf per level, no parent field: parents found by code prefix
    files = []
    for lv in range(1, 5):
        files.append(write_units(tmp_path / f"level{lv}.fgb", [u for u in city if u.level == lv],
                                 driver="FlatGeobuf", fields={"code": "code", "name": "name"}))
    res = _import(session, settings, files)
    assert res.counts["grid"] == 294 and res.built_levels == []


def test_another_deployment_with_its_own_levels(settings: Settings, session: Session,
                                               tmp_path: Path) -> None:
    s3 = settings.model_copy(update={"levels": "city:市,ward:区,block:块",
                                     "code_lengths": "2,4,6"})
    units = []
    units.append(replace(lattice_city()[0], code="77", level=1))
    for i, x in enumerate((0.0, 0.02)):
        ward = f"77{i + 1:02d}"
        units.append(replace(lattice_city()[0], code=ward, name=f"ward {i}", level=2,
                             parent_code="77", geometry=box(X0 + x, Y0, X0 + x + 0.02, Y0 + 0.03)))
        for j in range(3):
            units.append(replace(lattice_city()[0], code=f"{ward}{j + 1:02d}", name=f"b{j}",
                                 level=3, parent_code=ward,
                                 geometry=box(X0 + x, Y0 + 0.01 * j, X0 + x + 0.02,
                                              Y0 + 0.01 * (j + 1))))
    path = write_units(tmp_path / "abroad.gpkg", units, driver="GPKG",
                       fields={"code": "code", "name": "name"})
    session.execute(text("SAVEPOINT levels"))
    grids.sync_levels(session, s3)
    res = _import(session, s3, [path])
    assert res.counts == {"city": 1, "ward": 2, "block": 6}
    assert not res.problems


def _dirty_city() -> list:
    city = lattice_city()
    by = {u.code: u for u in city}
    g1, g2, g9 = "319998001001001", "319998001001002", "319998001001009"
    a, b = by[g1].geometry, by[g2].geometry
    x1 = a.bounds[2]
    # g1 reaches 0.3 m (~3e-6 deg) into g2: an overlap sliver of ~ 300 m x 0.3 m... too big
    # to tolerate, small enough to snap at 1 m
    over = box(a.bounds[0], a.bounds[1], x1 + 3e-6, a.bounds[3])
    # g2 stops 0.3 m short of g3: a gap
    gap = box(b.bounds[0], b.bounds[1], b.bounds[2] - 3e-6, b.bounds[3])
    return [replace(u, geometry=over) if u.code == g1 else
            replace(u, geometry=gap) if u.code == g2 else u for u in city if u.code != g9] + [
        by[g9]]


def test_dirty_coverage_refused_with_each_problem_then_snapped(
        session: Session, settings: Settings, tmp_path: Path) -> None:
    path = write_units(tmp_path / "dirty.gpkg", _dirty_city(), driver="GPKG")
    e = _refused(session, settings, [path])
    assert isinstance(e, GridInvariantError)
    kinds = e.extra["problem_counts"]
    assert kinds.get("sibling_overlap") and kinds.get("gap_in_parent"), kinds
    assert "sibling_overlap" in str(e).split(".")[0]
    feats = e.extra["problems"]["features"]
    ov = next(f for f in feats if f["properties"]["kind"] == "sibling_overlap")
    assert ov["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert set(ov["properties"]["codes"]) == {"319998001001001", "319998001001002"}
    res = _import(session, settings, [path], snap_m=1.0)
    assert not res.problems
    changed = {c["code"] for c in res.changes}
    assert {"319998001001001", "319998001001002"} & changed
    for c in res.changes:
        if "area_before_m2" in c:
            assert c["area_before_m2"] != c["area_after_m2"] or c.get("vertices_moved")
    gen = int(res.generation or 0)
    assert grids.validate_generation(session, gen, settings) == []


def test_self_intersection_and_big_overlap_not_snapped(session: Session, settings: Settings,
                                                       tmp_path: Path) -> None:
    city = lattice_city()
    g = city[-1]
    x0, y0, x1, y1 = g.geometry.bounds
    bowtie = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])
    bad = [replace(u, geometry=bowtie) if u.code == g.code else u for u in city]
    path = write_units(tmp_path / "bowtie.gpkg", bad, driver="GPKG")
    e = _refused(session, settings, [path])
    assert "invalid_geometry" in str(e) and g.code in str(e)
    big = [replace(u, geometry=box(*city[20].geometry.buffer(0.002).bounds))
           if u.code == city[20].code else u for u in city]
    path = write_units(tmp_path / "big.gpkg", big, driver="GPKG")
    e = _refused(session, settings, [path], snap_m=1.0)
    assert "cannot clean" in str(e) or "too large" in str(e)


@pytest.mark.parametrize("fmt", ["gpkg", "shp", "geojson", "fgb", "csv"])
def test_export_import_round_trip_changes_no_row(fmt: str, session: Session, settings: Settings,
                                                 tmp_path: Path) -> None:
    path = write_units(tmp_path / "city.gpkg", lattice_city(), driver="GPKG")
    first = _import(session, settings, [path], activate=True)
    gen = int(first.generation or 0)
    suffix = {"shp": ".shp", "geojson": ".geojson", "fgb": ".fgb", "csv": ".csv",
              "gpkg": ".gpkg"}[fmt]
    out = tmp_path / f"export{suffix}"
    _, n = export_grid(session, gen, fmt, path=out)
    assert n == 303
    n_rows = _state(session)[0]
    again = _import(session, settings, [out], activate=True)
    assert (again.new_rows, again.ended) == (0, 0), again.as_dict()["notes"]
    assert _state(session)[0] == n_rows


def test_bad_files_each_refused_clearly(session: Session, settings: Settings,
                                        tmp_path: Path) -> None:
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"this is not a geopackage" * 10)
    e = _refused(session, settings, [junk], InvalidInput)
    assert "junk.gpkg: not a GIS file GDAL can read" in str(e) and "/tmp" not in str(e)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    e = _refused(session, settings, [empty], InvalidInput)
    assert "holds no features (an empty file)" in str(e)
    nogeom = tmp_path / "table.csv"
    nogeom.write_text("code,name\n319998,x\n", encoding="utf-8")
    assert "geometry" in str(_refused(session, settings, [nogeom], InvalidInput))
    lines = tmp_path / "lines.gpkg"
    city = lattice_city()[:5]
    write_units(lines, city, driver="GPKG",
                geometries=[shapely.LineString(u.geometry.exterior.coords) for u in city])
    e = _refused(session, settings, [lines], InvalidInput)
    assert "LineString" in str(e) and "polygon" in str(e)
    letters = tmp_path / "letters.gpkg"
    write_units(letters, [replace(u, code="GRID-" + u.code) for u in city], driver="GPKG")
    assert "must be 1 to 32 digits" in str(_refused(session, settings, [letters], InvalidInput))
    nocode = tmp_path / "nocode.gpkg"
    write_units(nocode, city, driver="GPKG", fields={"name": "label"})
    assert "no code field" in str(_refused(session, settings, [nocode], InvalidInput))


def test_level_from_a_field_and_parent_by_cover(session: Session, settings: Settings,
                                                tmp_path: Path) -> None:
    # a deployment whose codes do not nest (any length): levels from a field, parents found
    # by which unit of the level above covers each unit
    free = settings.model_copy(update={"code_lengths": "*,*,*,*"})
    city = lattice_city()
    renamed = {u.code: f"{7000 + i}" for i, u in enumerate(city)}
    units = [replace(u, code=renamed[u.code]) for u in city]
    path = write_units(tmp_path / "city.gpkg", units, driver="GPKG",
                       fields={"code": "code", "name": "name", "level": "层级"})
    session.execute(text("SAVEPOINT free"))
    grids.sync_levels(session, free)
    res = _import(session, free, [path])
    assert res.mapping["level"] == "层级" and not res.problems
    parents = dict(session.execute(text(
        "SELECT code, parent_code FROM grid_unit WHERE generation_low = :g"),
        {"g": res.generation}).all())
    for u in city:
        want = renamed[u.parent_code] if u.parent_code else None
        assert parents[renamed[u.code]] == want, u.code


def test_numeric_code_columns_keep_their_digits(session: Session, settings: Settings,
                                                tmp_path: Path) -> None:
    city = lattice_city()
    path = tmp_path / "real.gpkg"
    write_units(path, city, driver="GPKG", fields={"name": "name"},
                extra={"GRIDCODE": np.array([float(u.code) for u in city])})
    res = _import(session, settings, [path])
    assert res.counts["grid"] == 294


def test_a_discarded_draft_leaves_the_active_grid_as_it_was(
        session: Session, settings: Settings, tmp_path: Path) -> None:
    city = lattice_city()
    _import(session, settings, [write_units(tmp_path / "a.gpkg", city, driver="GPKG")],
            activate=True)

    def rows() -> list[tuple]:  # type: ignore[type-arg]
        return [tuple(r) for r in session.execute(text(
            "SELECT id, code, generation_low, generation_high FROM grid_unit ORDER BY id"))]

    before = rows()
    renamed = {u.code for u in city[-3:]}
    moved = [replace(u, name="改名") if u.code in renamed else u for u in city]
    draft = _import(session, settings, [write_units(tmp_path / "b.gpkg", moved, driver="GPKG")])
    assert draft.new_rows == 3 and draft.ended == 3
    done = grids.discard_generation(session, int(draft.generation or 0))
    assert done == {"removed_rows": 3, "restored_rows": 3}
    assert rows() == before
    active = grids.active_generation(session)
    assert active is not None
    with pytest.raises(Exception, match="cannot be discarded"):
        grids.discard_generation(session, active.id)
