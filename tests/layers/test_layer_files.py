"""Layers as GIS files, on a real PostGIS: every layer exported and imported back through
GeoPackage and Shapefile changes no row; files written by GDAL in other encodings and CRSs
land right; bad files are refused whole, naming what is wrong."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import pytest
import shapely
from pyproj import Transformer
from shapely import Point, box
from shapely.geometry import mapping
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import gisfile, layer_files
from layers import responsibility as resp
from spatial.errors import InvalidInput, TooLarge
from tests.support import ownerfixtures as fx

MAX = 64 * 1024 * 1024


@pytest.fixture()
def layers_loaded(session: Session, demo_loaded: int) -> dict[str, Any]:
    """The owner fixtures' layers around fx.P, and a zone layer of two zones."""
    grid = session.execute(text(
        "SELECT code FROM grid_unit WHERE level = 4 AND generation_high IS NULL AND "
        "ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) ORDER BY code LIMIT 1"),
        {"x": fx.P[0], "y": fx.P[1]}).scalar_one()
    street = grid[:9]
    out = fx.load(session, street, grid)
    rep = resp.import_rows(session, resp.layer("zones"), [
        (1, {"department_code": "CGZF", "layer": "cgzf_zones", "code": "W", "name": "西区"},
         mapping(box(121.20, 31.00, 121.23, 31.05))),
        (2, {"department_code": "CGZF", "layer": "cgzf_zones", "code": "E", "name": "东区"},
         mapping(box(121.23, 31.00, 121.26, 31.05)))])
    assert rep.created == 2
    return out | {"grid": grid}


def _versions(session: Session) -> dict[str, int]:
    return {n: int(session.execute(text(f"SELECT count(*) FROM {d.model.__tablename__}"))
                   .scalar_one()) for n, d in resp.LAYERS.items()}


@pytest.mark.parametrize("fmt", ["gpkg", "shp", "fgb", "geojson", "csv"])
def test_every_layer_round_trips_unchanged(session: Session, layers_loaded: dict[str, Any],
                                           fmt: str) -> None:
    before = _versions(session)
    assert all(before.values()), before
    for name, d in resp.LAYERS.items():
        data = layer_files.export_layer(session, d, fmt)
        table = layer_files.read_upload(d, data, name=f"{name}.{'zip' if fmt == 'shp' else fmt}",
                                        media_type=gisfile.MEDIA_TYPES[fmt], max_bytes=MAX)
        rep = layer_files.import_layer_file(session, d, table, actor="test")
        assert not rep.refused, (name, rep.refused)
        assert (rep.created, rep.updated) == (0, 0), (name, rep.as_dict())
        assert rep.unchanged == before[name] == len(table), name
    assert _versions(session) == before


def test_a_changed_row_is_a_new_version(session: Session, layers_loaded: dict[str, Any]
                                        ) -> None:
    d = resp.layer("areas")
    data = layer_files.export_layer(session, d, "gpkg")
    table = layer_files.read_upload(d, data, name="areas.gpkg", media_type=None, max_bytes=MAX)
    i = list(table.fields["code"]).index("CPD-1")
    table.fields["owner_department"][i] = "JT"
    table.geometry[i] = shapely.MultiPolygon([box(121.2, 31.0, 121.201, 31.001)])
    rep = layer_files.import_layer_file(session, d, table, actor="someone")
    assert (rep.created, rep.updated, rep.unchanged) == (0, 1, 1), rep.as_dict()
    hist = resp.history(session, d, ["CPD-1"])
    assert [h.owner_department for h in hist] == ["WY", "JT"]
    assert hist[0].valid_to == hist[1].valid_from
    ev = session.execute(text("SELECT actor, detail FROM layer_event WHERE layer = 'areas' "
                              "AND detail ? 'changed' ORDER BY id DESC LIMIT 1")).one()
    assert ev.actor == "someone"
    assert ev.detail["changed"] == {"CPD-1": ["owner_department", "geometry"]}


def _gbk_areas(tmp: Path, *, cpg: bool) -> bytes:
    names = ["code", "kind", "name", "owner_dp", "priority"]
    data = [np.array(["GBK-1", "GBK-2"], dtype=object),
            np.array(["park", "residential_compound"], dtype=object),
            np.array(["醉白池公园", "方塔园小区"], dtype=object),
            np.array(["LHSR", "WY"], dtype=object), np.array([10, 20])]
    geoms = shapely.to_wkb(np.array([box(121.22, 31.01, 121.221, 31.011),
                                     box(121.23, 31.02, 121.231, 31.021)], dtype=object))
    shp = tmp / "areas_gbk.shp"
    pyogrio.raw.write(str(shp), geoms, data, names, driver="ESRI Shapefile",
                      geometry_type="Polygon", crs="EPSG:4326", encoding="GBK")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(tmp.iterdir()):
            if f.suffix.lower() != ".cpg" or cpg:
                zf.write(f, arcname=f.name)
    assert "醉白池".encode("gbk") in (tmp / "areas_gbk.dbf").read_bytes()
    return buf.getvalue()


@pytest.mark.parametrize("given", ["GBK", None])
def test_gbk_shapefile_without_cpg(session: Session, layers_loaded: dict[str, Any],
                                   tmp_path: Path, given: str | None) -> None:
    d = resp.layer("areas")
    data = _gbk_areas(tmp_path, cpg=False)
    table = layer_files.read_upload(d, data, name="areas_gbk.zip", media_type=None,
                                    max_bytes=MAX, encoding=given)
    rep = layer_files.import_layer_file(session, d, table)
    assert rep.created == 2 and not rep.refused, rep.as_dict()
    assert resp.get(session, d, ["GBK-1"]).name == "醉白池公园"
    assert resp.get(session, d, ["GBK-2"]).owner_department == "WY"
    if given is None:
        assert any("GB18030" in n for n in rep.notes), rep.notes


def test_flatgeobuf_of_assets_in_cgcs2000_gk(session: Session, layers_loaded: dict[str, Any],
                                              tmp_path: Path) -> None:
    lonlat = [fx.offset(fx.P, 5, 5), fx.offset(fx.P, -30, 12)]
    to_gk = Transformer.from_crs("EPSG:4326", "EPSG:4549", always_xy=True)
    pts = [Point(*to_gk.transform(*p)) for p in lonlat]
    assert 300_000 < pts[0].x < 700_000  # metres, not degrees
    names = ["code", "category_code", "kind", "supervising_department", "owner_department",
             "maintainer_department"]
    codes = ["3101170101000901", "3101170101000902"]
    data = [np.array(codes, dtype=object)] + [np.array([v, v], dtype=object) for v in
                                              ["C0101", "manhole_water", "SW-GS", "SW-GS",
                                               "SW-GS"]]
    path = tmp_path / "assets.fgb"
    pyogrio.raw.write(str(path), shapely.to_wkb(np.array(pts, dtype=object)), data, names,
                      driver="FlatGeobuf", geometry_type="Point", crs="EPSG:4549")
    d = resp.layer("assets")
    table = layer_files.read_file(d, path)
    rep = layer_files.import_layer_file(session, d, table)
    assert rep.created == 2, rep.as_dict()
    for code, (lon, lat) in zip(codes, lonlat, strict=True):
        x, y, grid = session.execute(text(
            "SELECT ST_X(geom), ST_Y(geom), grid_code FROM asset WHERE code = :c AND "
            "valid_to IS NULL"), {"c": code}).one()
        assert abs(x - lon) < 1e-8 and abs(y - lat) < 1e-8
        assert grid == layers_loaded["grid"] or grid  # resolved on load


def _gpkg(tmp: Path, geoms: list[Any] | None, **fields: list[Any]) -> bytes:
    path = tmp / "t.gpkg"
    names = list(fields)
    data = [np.array(v, dtype=object) for v in fields.values()]
    wkb = None if geoms is None else shapely.to_wkb(np.array(geoms, dtype=object))
    gtype = None if geoms is None else (geoms[0].geom_type if geoms else "Polygon")
    pyogrio.raw.write(str(path), wkb, data, names, driver="GPKG", geometry_type=gtype,
                      crs=None if geoms is None else "EPSG:4326", layer="t")
    return path.read_bytes()


def test_bad_files_are_refused_whole(session: Session, layers_loaded: dict[str, Any],
                                     tmp_path: Path) -> None:
    d = resp.layer("areas")
    before = _versions(session)

    def refused(data: bytes, media: str | None = "application/geopackage+sqlite3",
                **kw: Any) -> str:
        with pytest.raises(InvalidInput) as e:
            t = layer_files.read_upload(d, data, name=None, media_type=media, max_bytes=MAX,
                                        **kw)
            layer_files.import_layer_file(session, d, t)
        return str(e.value.detail)

    assert "not a GIS file" in refused(b"this is not a geopackage at all" * 10)
    assert "empty" in refused(b"")
    assert "not a zip" in refused(b"PK\x03\x04garbage", "application/zip")
    props = dict(code=["L1"], kind=["park"], owner_department=["LHSR"])
    line = shapely.LineString([(121.2, 31.0), (121.21, 31.01)])
    assert "LineString" in refused(_gpkg(tmp_path, [line], **props))
    assert "no geometry" in refused(_gpkg(tmp_path, None, **props))
    assert "no features" in refused(_gpkg(tmp_path, [], code=[], kind=[],
                                          owner_department=[]))
    assert "colour" in refused(_gpkg(tmp_path, [box(121.2, 31, 121.21, 31.01)], **props,
                                     colour=["red"]))
    assert "owner_department" in refused(_gpkg(tmp_path, [box(121.2, 31, 121.21, 31.01)],
                                               code=["X"], kind=["park"]))
    assert "encoding" in refused(b"PK\x03\x04", "application/zip", encoding="nope")
    gbk_csv = "code,kind,name,owner_department,WKT\nA,park,醉白池,LHSR,\"POINT (1 1)\"\n"
    assert "not valid" in refused(gbk_csv.encode("gbk"), "text/csv", encoding="UTF-8")
    with pytest.raises(TooLarge):
        layer_files.read_upload(d, b"x" * 101, name="a.gpkg", media_type=None, max_bytes=100)
    assert _versions(session) == before


def test_mixed_assets_as_shapefile_name_gpkg(session: Session, layers_loaded: dict[str, Any]
                                             ) -> None:
    d = resp.layer("assets")
    line = shapely.LineString([fx.offset(fx.P, 0, 0), fx.offset(fx.P, 10, 0)])
    rep = resp.import_rows(session, d, [(1, dict(
        code="3101170101000950", category_code="C0101", kind="manhole_water",
        supervising_department="SW-GS", owner_department="SW-GS",
        maintainer_department="SW-GS"), line)])
    assert rep.created == 1, rep.as_dict()
    with pytest.raises(InvalidInput, match="gpkg"):
        layer_files.export_layer(session, d, "shp")
    data = layer_files.export_layer(session, d, "gpkg")
    t = layer_files.read_upload(d, data, name="a.gpkg", media_type=None, max_bytes=MAX)
    assert layer_files.import_layer_file(session, d, t).unchanged == len(t) == 4
