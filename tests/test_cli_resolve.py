"""`gridops resolve` end to end on the test database: CSV in, CSV and GeoJSON out."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_float_fields_are_written_as_repr() -> None:
    """The compiled encoder writes every float as Python's repr (what to_csv wrote)."""
    from layers.batch_io import _EMPTY, _REPR, _float_codes, _write_float

    rng = np.random.default_rng(7)
    v = np.concatenate([
        rng.uniform(-180, 180, 20_000), np.round(rng.uniform(-180, 180, 20_000), 7),
        np.round(rng.uniform(0, 2e7, 20_000), 2), 10.0 ** rng.uniform(-6, 17, 20_000),
        np.round(10.0 ** rng.uniform(-4, 15, 20_000), 3),
        [0.0, -0.0, 1e-4, 9.99e-5, 1e15, 1e16, 0.1, 0.5, 5e-324, 1.0, 100.0, 123456789.0,
         np.inf, -np.inf, np.nan]])
    codes = _float_codes(v)
    buf = np.empty(40, dtype=np.uint8)
    fast = 0
    for x, c in zip(v.tolist(), codes.tolist(), strict=True):
        if c == _EMPTY:
            assert x != x
        elif c != _REPR:
            fast += 1
            assert bytes(buf[:_write_float(buf, 0, x, c)]).decode() == repr(x)
    assert fast > 60_000  # rounded values (the usual input) never need repr


def test_csv_blocks_read_as_pandas_reads_the_whole_file() -> None:
    """Blocks cut anywhere (quoted newlines, CRLF, blank lines, bad values) read as one
    pandas read of the whole file; ids kept as bytes where a block is plain."""
    import io

    import pandas as pd

    from layers.batch_io import read_csv_points

    rng = np.random.default_rng(3)
    lines = ["id,lon,lat,note"]
    for i in range(3000):
        kind = rng.integers(0, 400)
        ident = {0: f'"a,{i}"', 1: f'"q""{i}"', 2: f'"multi\nline {i}"', 3: f"中文{i}"}.get(
            int(kind), f"r{i}")
        lon = {4: "abc", 5: "", 6: "nan"}.get(int(kind), f"{rng.uniform(121, 121.4):.7f}")
        lines.append(f"{ident},{lon},{rng.uniform(30.9, 31.2):.7f},n{i}")
        if kind == 7:
            lines.append("")
    for eol in ("\n", "\r\n"):
        raw = eol.join(lines).encode() + eol.encode()
        ref = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
        for raw_ids in (False, True):
            got = list(read_csv_points(io.BytesIO(raw), "lon", "lat", "id", block=2048,
                                       raw_ids=raw_ids))
            assert len(got) > 20
            x = np.concatenate([p.x for p in got])
            ids: list[str] = []
            errors: dict[int, str] = {}
            off = 0
            for p in got:
                if p.id_frags is not None:
                    f = p.id_frags
                    ids += [bytes(f.data[a:b]).decode() for a, b in zip(f.start, f.end,
                                                                         strict=True)]
                else:
                    assert p.ids is not None
                    ids += list(p.ids)
                errors.update({off + k: v for k, v in p.errors.items()})
                off += len(p)
            assert ids == list(ref["id"])
            want = pd.to_numeric(ref["lon"], errors="coerce").to_numpy()
            assert np.array_equal(x, want, equal_nan=True)
            bad = [i for i, s in enumerate(ref["lon"]) if s in ("abc", "")]
            assert sorted(errors) == bad
            assert all(errors[i].startswith(f"line {i + 2}: ") for i in bad)
            if raw_ids:
                assert any(p.id_frags is not None for p in got)
                assert any(p.id_frags is None for p in got)


def test_compiled_csv_equals_the_column_encoder(tmp_path: Path, settings: Settings,
                                                engine: Any, demo_loaded: int) -> None:
    """`resolve_file`'s CSV is byte for byte what resolve_columns + encode_csv (pandas
    to_csv) write, inside, outside and bad rows, ids quoted or not, and without ids."""
    from sqlalchemy.orm import Session

    from etl.resolve_file import resolve_file
    from layers import grids
    from layers.batch_io import encode_csv, read_csv_points
    from layers.resolver import build_index, resolve_columns

    with Session(engine) as s:
        idx = build_index(s, grids.generation_at(s, generation=demo_loaded), settings)
    rng = np.random.default_rng(5)
    n = 20_000
    lon = rng.uniform(120.9, 121.5, n)
    lat = rng.uniform(30.8, 31.25, n)
    for with_id in (True, False):
        src = tmp_path / "in.csv"
        with src.open("w") as f:
            f.write("id,lon,lat\n" if with_id else "lon,lat\n")
            for i in range(n):
                ident = (f'"x,{i}",' if i % 997 == 0 else f"p{i},") if with_id else ""
                a = f"{lon[i]:.7f}" if i % 1009 else ("abc" if i % 2 else "200")
                b = f"{lat[i]:.6f}" if i % 7 else repr(float(lat[i]))
                f.write(f"{ident}{a},{b}\n")
        dst = tmp_path / "out.csv"
        counts = resolve_file(idx, src, dst, lon_col="lon", lat_col="lat", id_col="id",
                              crs="EPSG:4326", settings=settings)
        want = []
        off = 0
        with src.open("rb") as fh:
            for pts in read_csv_points(fh, "lon", "lat", "id"):
                ids = pts.ids if pts.ids is not None else np.arange(off + 2,
                                                                   off + 2 + len(pts))
                for cols in resolve_columns(idx, pts.x, pts.y, ids, pts.errors,
                                            "EPSG:4326", settings, first_row=off + 1):
                    want.append(encode_csv(cols, header=not want))
                off += len(pts)
        assert dst.read_bytes() == b"".join(want)
        assert counts["points"] == n and counts["errors"] == sum(
            1 for i in range(n) if i % 1009 == 0)
        assert counts["outside"] > 1000 and counts["inside"] > 1000
