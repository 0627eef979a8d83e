"""`gridops grids import|export` end to end as a GIS office runs them: a dirty file refused
with its problems written out, cleaned with --snap, exported and imported back unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyogrio

from layers.db import upgrade
from tests.layers.test_grid_import import _dirty_city
from tests.support.gridfiles import write_units

GRIDOPS = [sys.executable, "-m", "etl.cli"]


def test_import_snap_export_round_trip(scratch_db: str, tmp_path: Path) -> None:
    upgrade(scratch_db)
    env = {**os.environ, "GRIDOPS_DATABASE_URL": scratch_db, "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GRIDOPS, "grids", *args], capture_output=True, text=True,
                              env=env, timeout=300, check=False)

    dirty = write_units(tmp_path / "dirty.gpkg", _dirty_city(), driver="GPKG",
                        crs="EPSG:4549")
    problems = tmp_path / "problems.geojson"
    r = run("import", str(dirty), "--problems", str(problems))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nothing was loaded" in r.stderr and "sibling_overlap" in r.stderr
    fc = orjson.loads(problems.read_bytes())
    assert fc["type"] == "FeatureCollection" and fc["features"]
    assert {f["properties"]["kind"] for f in fc["features"]} >= {"sibling_overlap",
                                                                 "gap_in_parent"}
    r = run("import", str(dirty), "--snap", "1", "--activate", "--label", "cleaned")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "changed: " in r.stdout and "area_before_m2=" in r.stdout
    assert "generation 1 (active)" in r.stdout and "294 grid" in r.stdout
    out = tmp_path / "export.gpkg"
    r = run("export", str(out))
    assert r.returncode == 0, r.stderr
    assert pyogrio.read_info(out)["features"] == 303
    r = run("import", str(out), "--activate")
    assert r.returncode == 0, r.stderr
    assert "0 new row(s), 303 unchanged carried over, 0 ended" in r.stdout
    shp = tmp_path / "grids.zip"
    r = run("export", str(shp), "--format", "shp", "--level", "grid", "--crs", "EPSG:4549")
    assert r.returncode == 0, r.stderr
    assert pyogrio.read_info(f"/vsizip/{shp}/grids.shp")["crs"] == "EPSG:4549"
    r = run("export", str(tmp_path / "x.kml"))
    assert r.returncode == 1 and "cannot tell the format" in r.stderr
