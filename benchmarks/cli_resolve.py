"""`python -m benchmarks.cli_resolve`: `gridops resolve IN.csv -o OUT.csv` end to end (process
start to written file) on a 1,000,000-row CSV of the demo city, about 43 % of it outside the
territory, against the named baseline in the same run: benchmarks/geopandas_resolve.py (the
script a GIS analyst would write: pandas read_csv, points_from_xy, the finest grids by
geopandas.read_postgis, sjoin "intersects", the code column written).

gridops answers more (every level, the grid's name, H3, the nearest grid and its distance
for points outside), streamed in blocks. Both run as subprocesses, alternately, `--repeats`
times; wall seconds, CPU seconds and peak RSS (the child's rusage) of each run are printed,
then the best of each and the ratio beside the target (gridops faster than the script). The
answers are checked to agree on the rows gridops finds inside (sjoin's duplicates on shared
edges deduped to the lowest code, gridops' tie rule). Peak RSS of gridops on a file a
quarter the size shows the memory is bounded (the same, whatever the file's length)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from etl.demo_city import songjiang_units
from layers.db import make_engine
from layers.settings import Settings

from . import points
from .env import create_database, load_grid, throwaway_cluster

REPO = Path(__file__).resolve().parent.parent
GROW = 0.025  # the bbox grown 2.5 % a side: ~43 % of uniform points fall outside
SEED = 17
TARGET_RATIO = 1.0  # gridops / geopandas script, wall seconds


@dataclass
class Run:
    """One subprocess: wall and CPU seconds, peak RSS, exit status, stdout/stderr."""

    wall: float
    cpu: float
    peak_mib: float
    status: int
    out: str
    err: str


def run(cmd: list[str], env: dict[str, str]) -> Run:
    """Start, wait, measure (os.wait4: the child's own rusage)."""
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=so, stderr=se, env=env, cwd=REPO)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, p.returncode,
                   so.read().decode(errors="replace"), se.read().decode(errors="replace"))


def write_points(path: Path, n: int, bounds: tuple[float, float, float, float]) -> None:
    """n points uniform over the grown bbox, as id,lon,lat (7 decimals, ~1 cm)."""
    lon, lat = points.uniform(points.expand(bounds, GROW), n, SEED)
    pd.DataFrame({"id": [f"p{i}" for i in range(n)], "lon": lon.round(7),
                  "lat": lat.round(7)}).to_csv(path, index=False)


def compare(gridops_csv: Path, script_csv: Path) -> dict[str, int]:
    """Agreement on the finest code: gridops' `grid` against the script's lowest code."""
    g = pd.read_csv(gridops_csv, usecols=["id", "inside", "grid"], dtype=str,
                    keep_default_na=False)
    s = pd.read_csv(script_csv, usecols=["id", "code"], dtype=str, keep_default_na=False)
    s = s[s["code"] != ""].groupby("id", sort=False)["code"].min()
    code = g["id"].map(s).fillna("").to_numpy()
    inside = (g["inside"] == "True").to_numpy()
    grid = g["grid"].to_numpy()
    return {"rows": len(g), "inside": int(inside.sum()), "outside": int((~inside).sum()),
            "inside_agree": int((inside & (grid == code)).sum()),
            "inside_disagree": int((inside & (grid != code)).sum()),
            "outside_but_script_found": int((~inside & (code != "")).sum())}


def main(argv: list[str] | None = None) -> None:
    """Run and print."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cli_resolve")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    specs = songjiang_units()
    bounds = tuple(specs[0].geometry.bounds)
    with throwaway_cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        url = create_database(cluster, "cli_resolve_bench")
        engine = make_engine(url)
        load_grid(engine, specs, Settings(database_url=url), "bench")
        engine.dispose()
        src, quarter = Path(tmp) / "points.csv", Path(tmp) / "quarter.csv"
        write_points(src, args.rows, bounds)  # type: ignore[arg-type]
        write_points(quarter, args.rows // 4, bounds)  # type: ignore[arg-type]
        out_g, out_s = Path(tmp) / "gridops.csv", Path(tmp) / "script.csv"
        env = dict(os.environ, GRIDOPS_DATABASE_URL=url, PYTHONPATH=str(REPO))
        gridops = [sys.executable, "-m", "etl.cli", "resolve", str(src), "-o", str(out_g)]
        script = [sys.executable, "-m", "benchmarks.geopandas_resolve", str(src), str(out_s),
                  "--db", url]
        # once each untimed: compiled code cached, the file in the page cache
        for cmd in (gridops, script):
            r = run(cmd, env)
            if r.status:
                raise SystemExit(f"{cmd[2]} failed:\n{r.err[-3000:]}")
        size = src.stat().st_size / 2**20
        print(f"gridops resolve, {args.rows:,} rows ({size:.0f} MiB CSV, the demo city's "
              f"bbox grown {GROW:.1%} a side), {args.repeats} alternating runs")
        runs: dict[str, list[Run]] = {"gridops": [], "script": []}
        for i in range(args.repeats):
            for name, cmd in (("gridops", gridops), ("script", script)):
                r = run(cmd, env)
                if r.status:
                    raise SystemExit(f"{name} failed:\n{r.err[-3000:]}")
                runs[name].append(r)
                print(f"  run {i + 1} {name:8s} {r.wall:6.2f} s wall {r.cpu:6.2f} s CPU "
                      f"{r.peak_mib:6.0f} MiB peak RSS", flush=True)
        q = run([*gridops[:4], str(quarter), "-o", str(Path(tmp) / "q.csv")], env)
        agree = compare(out_g, out_s)
    best = {k: min(v, key=lambda r: r.wall) for k, v in runs.items()}
    g, s = best["gridops"], best["script"]
    print(f"  {runs['gridops'][-1].out.strip().splitlines()[0]}")
    print(f"  gridops resolve (every level, name, H3, nearest grid outside)  "
          f"{g.wall:6.2f} s  {args.rows / g.wall:10,.0f} rows/s  peak RSS {g.peak_mib:5.0f} MiB"
          f"  (CPU {g.cpu:.2f} s)")
    print(f"  baseline: geopandas read_csv + read_postgis + sjoin + to_csv   "
          f"{s.wall:6.2f} s  {args.rows / s.wall:10,.0f} rows/s  peak RSS {s.peak_mib:5.0f} MiB"
          f"  (CPU {s.cpu:.2f} s)")
    ratio = g.wall / s.wall
    print(f"  ratio gridops / baseline {ratio:6.2f} x   target < {TARGET_RATIO:.1f} x: "
          f"{'met' if ratio < TARGET_RATIO else 'MISSED'}   (CPU {g.cpu / s.cpu:.2f} x)")
    print(f"  memory bounded: gridops peak RSS {q.peak_mib:.0f} MiB on {args.rows // 4:,} rows,"
          f" {g.peak_mib:.0f} MiB on {args.rows:,}")
    ok = agree["inside_disagree"] == 0 and agree["outside_but_script_found"] == 0
    print(f"  answers: {agree['inside']:,} inside, {agree['inside_agree']:,} agree with the "
          f"script's lowest code, {agree['inside_disagree']:,} differ; "
          f"{agree['outside_but_script_found']:,} outside for gridops but in a grid for the "
          f"script: {'agree' if ok else 'DISAGREE'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
