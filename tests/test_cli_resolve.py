"""`gridops resolve` end to end on the test database: CSV in, CSV and GeoJSON out."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from layers.settings import Settings


def test_resolve_csv_to_csv_and_geojson(tmp_path: Path, settings: Settings,
                                        demo_loaded: int) -> None:
    rng = np.random.default_rng(2)
    src = tmp_path / "in.csv"
    n = 5000
    lon = rng.uniform(121.0, 121.5, n)
    lat = rng.uniform(30.85, 31.2, n)
    with src.open("w") as f:
        f.write("ref,x,y\n")
        for i, (a, b) in enumerate(zip(lon, lat, strict=True)):
            f.write(f"r{i},{a},{b}\n")
        f.write("bad,abc,31\n")
    env = dict(os.environ, GRIDOPS_DATABASE_URL=settings.database_url or "")
    out_csv = tmp_path / "out.csv"
    r = subprocess.run([sys.executable, "-m", "etl.cli", "resolve", str(src), "-o", str(out_csv),
                        "--lon-col", "x", "--lat-col", "y", "--id-col", "ref"],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert f"{n + 1:,} points" in r.stdout and "1 with errors" in r.stdout
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == n + 1 and rows[0]["id"] == "r0"
    assert rows[-1]["error"] and "line" in rows[-1]["error"]
    inside = [x for x in rows if x["inside"] == "True"]
    assert inside and all(x["grid"].startswith(x["community"]) for x in inside)
    outside = [x for x in rows if x["inside"] == "False"]
    assert outside and all(float(x["distance_m"]) > 0 for x in outside)
    out_geo = tmp_path / "out.geojson"
    r = subprocess.run([sys.executable, "-m", "etl.cli", "resolve", str(src), "-o", str(out_geo),
                        "--lon-col", "x", "--lat-col", "y", "--id-col", "ref"],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    fc = json.loads(out_geo.read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == n + 1
    assert [f["properties"]["grid"] or "" for f in fc["features"][:-1]] == [
        x["grid"] for x in rows[:-1]]
    r = subprocess.run([sys.executable, "-m", "etl.cli", "resolve", str(src), "-o",
                        str(tmp_path / "o.csv"), "--crs", "mars"],
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 1 and "crs" in r.stderr
    assert not (tmp_path / "o.csv").exists()
