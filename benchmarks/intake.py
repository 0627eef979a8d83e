"""`python -m benchmarks.intake`: case intake over HTTP, the whole real path (token, CRS,
grid chain, owner with its trail, duplicate check, write with its events, commit), by wrk
against `gridops serve --workers 2` on a throw-away PostGIS with the whole demo city and its
layers (and a year of demo history). Printed against baselines measured in the same run:
GET /resolve under the same load (the floor: the same workers and points, in memory, no
database) and the intake's resolution done in PostGIS (ST_Covers grid chain + KNN asset
query + covering areas per case) against the in-process resolver. Afterwards the database
is checked: every 201 answer is a stored case (and every stored case was answered, but for
the requests wrk left in flight when it stopped), and a sample of stored resolutions agrees
with the in-process resolver and with PostGIS."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from etl.demo import load_demo_all
from layers import grids
from layers.auth import create_token
from layers.db import make_engine, upgrade
from layers.ownership import Snapshot, resolve_owner
from layers.ownership_store import load_snapshot
from layers.resolver import build_index, resolve_sql
from layers.settings import Settings
from spatial.index import GridIndex

from . import points
from .env import create_database, throwaway_cluster
from .openloop import OpenLoopResult, open_loop
from .report import Report, Target, log
from .serve_load import resolve_script, server

SEED = 20261124
CHANNELS = [("patrol_app", 0.5), ("hotline_12345", 0.25), ("camera", 0.1), ("web", 0.05),
            ("hotline_12319", 0.03), ("hotline_962121", 0.03), ("open311", 0.02),
            ("media", 0.01), ("letter", 0.01)]
CITIZEN = {"hotline_12345", "hotline_12319", "hotline_962121", "web", "open311", "media",
           "letter"}
HOTSPOT_SHARE = 0.05  # of reports: within ~15 m of one of a few dozen spots (duplicates)
OUTSIDE_SHARE = 0.01  # of reports: just outside the district (kept and flagged)
TARGET_RATE = 500.0  # cases/s
TARGET_P99_MS = 50.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.intake", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: no demo history, 5 s of load, one load level, small "
                        "samples (~2 min, most of it loading the demo city)")
    p.add_argument("--seconds", type=int, default=None,
                   help="duration of each intake load (default 60; 5 with --quick)")
    p.add_argument("--connections", type=int, nargs="+", default=None,
                   help="wrk connections, one intake run per value (default 8 32; 8 with "
                        "--quick)")
    p.add_argument("--rate", type=float, default=TARGET_RATE,
                   help="reports per second of the open-loop run (default the target, 500)")
    p.add_argument("--open-seconds", type=int, default=None,
                   help="duration of the open-loop run (default 30; 5 with --quick)")
    p.add_argument("--no-history", action="store_true",
                   help="without the year of demo history (200,000 cases) in the database")
    p.add_argument("--sample", type=int, default=None,
                   help="stored cases compared with the in-process resolver (default 500)")
    p.add_argument("--database-url", default=None,
                   help="use this database instead of a throw-away cluster (what of the demo "
                        "city is missing gets loaded; the run adds its cases to it)")
    p.add_argument("--json", type=Path, default=Path("/tmp/gridops-bench-intake.json"),
                   help="where to write the figures as JSON")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (5 if args.quick else 60)
    args.open_seconds = args.open_seconds or (5 if args.quick else 30)
    args.connections = args.connections or ([8] if args.quick else [8, 32])
    args.sample = args.sample or (100 if args.quick else 500)
    args.history = not (args.quick or args.no_history)
    return args


# ------------------------------------------------------------------ the reports sent


@dataclass
class Reports:
    """What the load generator sends: points, categories and channels, one report each."""

    lon: np.ndarray
    lat: np.ndarray
    category: list[str]
    channel: list[str]
    categories: list[str]  # distinct, as indexed by the Lua table
    channels: list[str]

    def part(self, a: int, b: int) -> Reports:
        """Reports a to b (each load level sends its own)."""
        return Reports(self.lon[a:b], self.lat[a:b], self.category[a:b], self.channel[a:b],
                       self.categories, self.channels)


def make_reports(idx: GridIndex, snap: Snapshot, n: int, seed: int) -> Reports:
    """n reports: most uniform over the district, some clustered on a few dozen spots (so
    the duplicate check finds open cases), a few just outside (kept and flagged)."""
    rng = np.random.default_rng(seed)
    bounds = tuple(shapely.total_bounds(idx.geoms))
    lon, lat = points.inside(bounds, n, seed, idx.lookup)
    kind = rng.random(n)
    spots_x, spots_y = points.inside(bounds, 40, seed + 1, idx.lookup)
    hot = kind < HOTSPOT_SHARE
    s = rng.integers(0, len(spots_x), int(hot.sum()))
    lon[hot] = spots_x[s] + rng.normal(0, 15, len(s)) / (111_320 * np.cos(np.radians(31.0)))
    lat[hot] = spots_y[s] + rng.normal(0, 15, len(s)) / 111_320
    out = (kind >= HOTSPOT_SHARE) & (kind < HOTSPOT_SHARE + OUTSIDE_SHARE)
    lon[out] = bounds[2] + rng.uniform(0.001, 0.02, int(out.sum()))  # east of the district
    categories = sorted(snap.categories)
    common = [c for c in ("E0501", "E0503", "E0101", "E0201") if c in snap.categories]
    cat_idx = rng.integers(0, len(categories), n)
    if common:
        pick = rng.integers(0, len(common), int(hot.sum()))
        cat_idx[hot] = [categories.index(common[k]) for k in pick]
    names = [c for c, _ in CHANNELS]
    w = np.array([x for _, x in CHANNELS])
    ch_idx = rng.choice(len(names), n, p=w / w.sum())
    return Reports(lon, lat, [categories[i] for i in cat_idx], [names[i] for i in ch_idx],
                   categories, names)


_LUA = r"""
-- intake load: POST /cases with varied bodies, a unique Idempotency-Key per request
local data = [[
%(reports)s
]]
local reports = {}
for x, y, c, h in string.gmatch(data, "([%%d.-]+),([%%d.-]+),(%%d+),(%%d+)") do
  reports[#reports + 1] = {tonumber(x), tonumber(y), tonumber(c), tonumber(h)}
end
data = nil
local categories = {%(categories)s}
local channels = {%(channels)s}
local citizen = {%(citizen)s}
local tokens = {patrol = "%(patrol)s", centre = "%(centre)s"}
local run = "%(run)s"
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  answered = 0
  created = 0
  replayed = 0
  merged = 0
  other = 0
  refs = {}
  i = (tid * math.floor(#reports / %(threads)d)) %% #reports
end

function request()
  i = i + 1
  if i > #reports then i = 1 end
  n = n + 1
  local r = reports[i]
  local channel = channels[r[4]]
  local reporter = ""
  if citizen[channel] then
    reporter = string.format(',"reporter":{"name":"市民%%d","phone":"139%%08d"}', i, i)
  end
  local body = string.format(
    '{"channel":"%%s","category":"%%s","lon":%%.7f,"lat":%%.7f,' ..
    '"description":"benchmark report %%d (%%s)"%%s}',
    channel, categories[r[3]], r[1], r[2], n, channel, reporter)
  local who = tokens.centre
  if channel == "patrol_app" then who = tokens.patrol end
  return wrk.format("POST", "/cases", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. who,
    ["Idempotency-Key"] = string.format("%%s-%%d-%%d", run, tid, n)}, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status == 201 then
    created = created + 1
    refs[#refs + 1] = string.match(body, '"ref":"([^"]+)"')
    if string.find(body, '"status":"merged"', 1, true) then merged = merged + 1 end
  elseif status == 200 then
    replayed = replayed + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local sent, ans, c, rp, m, o = 0, 0, 0, 0, 0, 0
  local f = io.open("%(refs_file)s", "w")
  for _, t in ipairs(threads) do
    sent = sent + t:get("n")
    ans = ans + t:get("answered")
    c = c + t:get("created")
    rp = rp + t:get("replayed")
    m = m + t:get("merged")
    o = o + t:get("other")
    for _, ref in ipairs(t:get("refs")) do f:write(ref, "\n") end
  end
  f:close()
  local e = summary.errors
  io.write(string.format(
    'GRIDOPS_WRK {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p95_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"sent":%%d,"answered":%%d,"created":%%d,"replayed":%%d,' ..
    '"merged":%%d,"other_status":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,' ..
    '"timeout":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, sent, ans, c, rp, m, o,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def floor_script(rep: Reports) -> str:
    """The wrk Lua script of the floor: GET /resolve for the same points."""
    return resolve_script(rep.lon, rep.lat)


def intake_script(rep: Reports, tokens: dict[str, str], run: str, refs_file: Path,
                  threads: int) -> str:
    """The wrk Lua script: the reports as a compact table, bodies built per request."""
    rows = "\n".join(f"{x:.7f},{y:.7f},{rep.categories.index(c) + 1},"
                     f"{rep.channels.index(h) + 1}"
                      for x, y, c, h in zip(rep.lon.tolist(), rep.lat.tolist(), rep.category,
                                            rep.channel, strict=True))
    return _LUA % {
        "reports": rows, "categories": ",".join(f'"{c}"' for c in rep.categories),
        "channels": ",".join(f'"{c}"' for c in rep.channels),
        "citizen": ",".join(f"{c} = true" for c in sorted(CITIZEN)),
        "patrol": tokens["patrol"], "centre": tokens["centre"], "run": run,
        "refs_file": str(refs_file), "threads": threads}


def intake_requests(rep: Reports, tokens: dict[str, str], run: str, host: str
                    ) -> Callable[[int], bytes]:
    """Request i of the open-loop run as raw HTTP/1.1 bytes: the same bodies, headers and
    tokens as the wrk script's."""
    def make(i: int) -> bytes:
        channel = rep.channel[i]
        body: dict[str, object] = {
            "channel": channel, "category": rep.category[i], "lon": round(float(rep.lon[i]), 7),
            "lat": round(float(rep.lat[i]), 7), "description": f"benchmark report {i} ({channel})"}
        if channel in CITIZEN:
            body["reporter"] = {"name": f"市民{i}", "phone": f"139{i % 10**8:08d}"}
        data = json.dumps(body, ensure_ascii=False).encode()
        who = tokens["patrol" if channel == "patrol_app" else "centre"]
        head = (f"POST /cases HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nAuthorization: Bearer {who}\r\n"
                f"Idempotency-Key: {run}-{i}\r\nContent-Length: {len(data)}\r\n\r\n")
        return head.encode() + data
    return make


def resolve_requests(rep: Reports, host: str) -> Callable[[int], bytes]:
    """Request i of the open-loop floor: GET /resolve for the point of report i (the query
    the wrk floor sends)."""
    def make(i: int) -> bytes:
        q = f"lon={float(rep.lon[i])!r}&lat={float(rep.lat[i])!r}"
        return f"GET /resolve?{q} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    return make


@dataclass
class Run:
    """One wrk run."""

    path: str
    connections: int
    seconds: float
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    non_2xx: int
    extra: dict[str, int]

    @property
    def rate(self) -> float:
        """Answers per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(base: str, script: Path, connections: int, seconds: int, path: str) -> Run:
    """wrk -t2 with a Lua script; the figures its done() printed."""
    wrk = shutil.which("wrk")
    assert wrk
    threads = min(2, connections)
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(script), base + path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          timeout=seconds + 120)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("GRIDOPS_WRK "))
    d = json.loads(line.split(" ", 1)[1])
    sock = sum(int(d[k]) for k in ("connect", "read", "write", "timeout"))
    extra = {k: int(d[k]) for k in ("sent", "answered", "created", "replayed", "merged",
                                    "other_status") if k in d}
    return Run(path, connections, d["duration_us"] / 1e6, int(d["requests"]),
               d["p50_us"] / 1000, d["p95_us"] / 1000, d["p99_us"] / 1000,
               d["max_us"] / 1000, sock, int(d["status"]), extra)


# ------------------------------------------------------------------ baselines


@dataclass
class Resolution:
    """Per-case resolution time in process and in PostGIS, on the same reports."""

    inproc_us: np.ndarray
    postgis_ms: np.ndarray


_PG_CHAIN = text("""
    WITH g AS (SELECT u.code FROM grid_unit u
                WHERE u.level = :lvl AND u.generation_high IS NULL
                  AND ST_Covers(u.geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))
                ORDER BY u.code LIMIT 1)
    SELECT p.code, p.name, p.level FROM g JOIN grid_unit p
        ON p.generation_high IS NULL
       AND p.code IN (left(g.code, 6), left(g.code, 9), left(g.code, 12), g.code)
     ORDER BY p.level""")
_PG_ASSETS = text("""
    SELECT code, owner_department,
           ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography) AS d
      FROM asset WHERE kind = :k AND valid_to IS NULL
     ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:x, :y), 4326) LIMIT 4""")
_PG_AREAS = text("""
    SELECT code, owner_department, priority, applies_to FROM ownership_area
     WHERE valid_to IS NULL AND ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))
     ORDER BY priority DESC""")


def resolution_baseline(engine: Engine, idx: GridIndex, snap: Snapshot, settings: Settings,
                        rep: Reports, n: int) -> Resolution:
    """The intake's resolution per case: in process (index lookup, chain, owner rules) and
    as plain PostGIS queries on one connection (grid chain by ST_Covers, the category's
    assets by KNN, the covering ownership areas: the queries, not yet the rules)."""
    inproc = np.empty(n)
    for i in range(n):
        x, y, c = float(rep.lon[i]), float(rep.lat[i]), rep.category[i]
        t = time.perf_counter_ns()
        g, _ = idx.lookup_one(x, y)
        resolve_owner(snap, x, y, c, idx.chain(g) if g >= 0 else [], settings)
        inproc[i] = time.perf_counter_ns() - t
    pg = np.empty(n)
    with Session(engine) as s:
        lvl = int(s.scalar(text("SELECT max(level) FROM grid_unit")) or 4)
        for i in range(n):
            x, y = float(rep.lon[i]), float(rep.lat[i])
            kind = snap.categories[rep.category[i]].get("asset_kind")
            t = time.perf_counter_ns()
            s.execute(_PG_CHAIN, {"x": x, "y": y, "lvl": lvl}).all()
            if kind:
                s.execute(_PG_ASSETS, {"x": x, "y": y, "k": kind}).all()
            s.execute(_PG_AREAS, {"x": x, "y": y}).all()
            pg[i] = time.perf_counter_ns() - t
        s.rollback()
    return Resolution(inproc / 1000, pg / 1e6)


# ------------------------------------------------------------------ checks afterwards


@dataclass
class Checked:
    """What the database holds after the load, against what the load generator was told."""

    stored: int
    answered_201: int
    answered_not_stored: int
    stored_not_answered: int
    sampled: int
    grid_differs: int
    owner_differs: int
    postgis_grid_differs: int
    merged: int
    merges_wrong: int
    outside: int
    merges_why: str


def check_database(engine: Engine, run: str, refs: set[str], idx: GridIndex, snap: Snapshot,
                   settings: Settings, sample: int, seed: int) -> Checked:
    """Cases of the run (by their idempotency keys) against the 201 answers; a sample of
    stored resolutions recomputed in process and in PostGIS; merges within the rules."""
    with Session(engine) as s:
        stored = set(s.scalars(text('SELECT ref FROM "case" WHERE idempotency_key LIKE :k'),
                               {"k": run + "-%"}))
        rows = s.execute(text("""
            SELECT ref, ST_X(geom) AS x, ST_Y(geom) AS y, category_code, grid_code,
                   owner_department, inside
              FROM "case" WHERE idempotency_key LIKE :k
             ORDER BY md5(ref || :seed) LIMIT :n"""),
            {"k": run + "-%", "seed": str(seed), "n": sample}).all()
        grid_bad = owner_bad = 0
        for r in rows:
            g, _ = idx.lookup_one(r.x, r.y)
            code = str(idx.codes[g]) if g >= 0 else None
            grid_bad += code != r.grid_code
            ans = resolve_owner(snap, r.x, r.y, r.category_code,
                                idx.chain(g) if g >= 0 else [], settings)
            owner_bad += (ans.get("owner") or {}).get("code") != r.owner_department
        gen = grids.active_generation(s)
        assert gen is not None
        pg_codes = resolve_sql(s, gen.id, np.array([r.x for r in rows]),
                               np.array([r.y for r in rows])) if rows else []
        pg_bad = sum(a != r.grid_code for a, r in zip(pg_codes, rows, strict=True))
        merged, no_original, category, later, far, old = s.execute(text("""
            SELECT count(*), count(*) FILTER (WHERE o.id IS NULL),
                   count(*) FILTER (WHERE o.category_code <> d.category_code),
                   count(*) FILTER (WHERE o.created_at > d.created_at),
                   count(*) FILTER (WHERE NOT ST_DWithin(o.geom::geography,
                                                         d.geom::geography, rule.r + 0.01)
                                      AND o.resolution->'owner'->'asset'->>'code'
                                          IS DISTINCT FROM
                                          d.resolution->'owner'->'asset'->>'code'),
                   count(*) FILTER (WHERE o.created_at < d.created_at
                                                         - rule.h * interval '1 hour')
              FROM "case" d LEFT JOIN "case" o ON o.id = d.duplicate_of
             CROSS JOIN LATERAL (SELECT
                 COALESCE(CAST(d.resolution#>>'{owner,category,duplicate,radius_m}'
                               AS float8), :r) AS r,
                 COALESCE(CAST(d.resolution#>>'{owner,category,duplicate,window_h}'
                               AS float8), :h) AS h) rule
             WHERE d.idempotency_key LIKE :k AND d.status = 'merged'"""),
            {"k": run + "-%", "r": settings.duplicate_radius_m,
             "h": settings.duplicate_window_h}).one()
        wrong = no_original + category + later + far + old
        why = (f"{no_original} without an original, {category} of another category, {later} "
               f"reported before their original, {far} too far (the category's radius) and "
               f"on another asset, {old} older than the category's window")
        outside = s.scalar(text("""SELECT count(*) FROM "case"
            WHERE idempotency_key LIKE :k AND NOT inside"""), {"k": run + "-%"}) or 0
    return Checked(len(stored), len(refs), len(refs - stored), len(stored - refs), len(rows),
                   grid_bad, owner_bad, pg_bad, int(merged), int(wrong), int(outside), why)


# ------------------------------------------------------------------ the run


def prepare(url: str, settings: Settings, history: bool, rep: Report
            ) -> tuple[Engine, dict[str, str]]:
    """The demo city, its layers (and history) loaded by the real loaders; two tokens."""
    engine = make_engine(url)
    t0 = time.perf_counter()
    with Session(engine) as s, s.begin():
        load_demo_all(s, settings, history=history)
    with Session(engine) as s, s.begin():
        n_assets = s.scalar(text("SELECT count(*) FROM asset")) or 0
        n_cases = s.scalar(text('SELECT count(*) FROM "case"')) or 0
        _, patrol = create_token(s, "bench-patrol", "patrol")
        _, centre = create_token(s, "bench-centre", "centre")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text('VACUUM ANALYZE "case", case_event'))
    rep.add("setup", "demo city, layers" + (", a year of history" if history else ""),
            time.perf_counter() - t0, "s",
            note=f"{n_assets:,} assets, {n_cases:,} cases already in the database")
    return engine, {"patrol": patrol, "centre": centre}


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write the JSON."""
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk; `make bench` does it)",
              file=sys.stderr)
        return 2
    rep = Report()
    started = dt.datetime.now(dt.UTC)
    rep.meta = {"started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:],
                "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    run = "bench-" + secrets.token_hex(4)
    failed: BaseException | None = None
    try:
        with ExitStack() as stack:
            if args.database_url:
                url = args.database_url
                upgrade(url)
                home = Path(tempfile.mkdtemp(prefix="gridops-intake-"))
                stack.callback(shutil.rmtree, home, True)
            else:
                cluster = stack.enter_context(throwaway_cluster())
                home = cluster.datadir.parent
                url = create_database(cluster, "intake_bench")
            settings = Settings(database_url=url, home=home)
            log(f"loading the demo city into {url.rsplit('@', 1)[-1]}")
            engine, tokens = prepare(url, settings, args.history, rep)
            with Session(engine) as s:
                gen = grids.active_generation(s)
                assert gen is not None
                idx = build_index(s, gen, settings)
                snap = load_snapshot(s, settings)
            n = max(20_000, args.seconds * 1500)
            seed = int(run[-8:], 16)  # new points every run: no duplicates of an earlier run
            n_open = int(args.rate * args.open_seconds)
            n_all = n * len(args.connections) + n_open + 5_000
            reports = make_reports(idx, snap, n_all, seed)
            log("resolution baselines: in process and in PostGIS")
            res = resolution_baseline(engine, idx, snap, settings, reports,
                                      300 if args.quick else 2000)
            sec = "resolution"
            ip50, ip99 = np.percentile(res.inproc_us, [50, 99])
            pg50, pg99 = np.percentile(res.postgis_ms, [50, 99])
            rep.add(sec, "in process (index + chain + owner rules) p50", ip50, "µs",
                    note=f"p99 {ip99:.0f} µs, {len(res.inproc_us):,} of the reports")
            rep.add(sec, "PostGIS (ST_Covers chain + asset KNN + areas) p50", pg50, "ms",
                    note=f"p99 {pg99:.2f} ms; one connection; the queries only, no rules")
            rep.add(sec, "PostGIS / in process, p50", pg50 * 1000 / ip50, "x")
            rep.add(sec, "PostGIS resolution alone, one connection", 1000 / res.postgis_ms.mean(),
                    "cases/s", note="what one database connection resolves per second")

            work = home / "wrk"
            work.mkdir(exist_ok=True)
            floor_lua = work / "floor.lua"
            floor_lua.write_text(floor_script(reports.part(0, 20_000)))
            log("starting gridops serve --workers 2")
            t0 = time.perf_counter()
            with server(url, home, workers=2) as base:
                rep.add("http", "server start-up to ready (2 workers)",
                        time.perf_counter() - t0, "s",
                        note="each worker builds its index and owner snapshot")
                run_wrk(base, floor_lua, 8, 2, "/")  # warm-up
                warm = work / "warm.lua"  # each worker's connections and statements
                warm.write_text(intake_script(reports.part(n_all - 5_000, n_all), tokens,
                                              f"{run}w", work / "refs-w.txt", 2))
                run_wrk(base, warm, 8, 3, "/cases")
                for k, conns in enumerate(args.connections):
                    floor = run_wrk(base, floor_lua, conns, min(args.seconds, 15), "/")
                    refs_file = work / f"refs-{conns}.txt"
                    script = work / f"intake-{conns}.lua"
                    script.write_text(intake_script(reports.part(k * n, (k + 1) * n), tokens,
                                                    f"{run}c{conns}", refs_file, min(2, conns)))
                    log(f"POST /cases with {conns} connections for {args.seconds} s")
                    load = run_wrk(base, script, conns, args.seconds, "/cases")
                    refs = set(refs_file.read_text().split())
                    _intake_rows(rep, load, floor, conns, args.seconds)
                    chk = check_database(engine, f"{run}c{conns}", refs, idx, snap, settings,
                                         args.sample, SEED + conns)
                    _check_rows(rep, f"check ({conns} conn.)", load, chk)
                k0 = len(args.connections) * n
                open_part = reports.part(k0, k0 + n_open)
                host = base.split("//")[1]
                log(f"GET /resolve open loop at {args.rate:.0f}/s for {args.open_seconds} s "
                    f"(the floor of the intake's, same points)")
                ol_floor = open_loop(base, resolve_requests(open_part, host), args.rate,
                                     args.open_seconds)
                log(f"POST /cases open loop at {args.rate:.0f}/s for {args.open_seconds} s")
                ol = open_loop(base, intake_requests(open_part, tokens, f"{run}o", host),
                               args.rate, args.open_seconds, keep_bodies=True)
                refs = {json.loads(b)["ref"] for b in ol.bodies if b.startswith(b'{"ref"')}
                _open_rows(rep, ol, ol_floor, args.open_seconds)
                chk = check_database(engine, f"{run}o", refs, idx, snap, settings,
                                     args.sample, SEED + 1)
                _check_rows(rep, f"check (open loop {args.rate:.0f}/s)", None, chk)
            engine.dispose()
    except KeyboardInterrupt as e:
        failed = e
    except Exception as e:  # the figures so far are still worth printing
        failed = e
        log(f"failed: {type(e).__name__}: {e}")
    if failed is not None:
        rep.note(f"the run stopped early: {type(failed).__name__}: {failed}")
    rep.meta.update({"seconds": round(time.perf_counter() - rep.t0, 1),
                     "load_avg_end": os.getloadavg()})
    rep.finish(f"gridops intake benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} "
               f"cores shared by wrk, 2 server workers and PostgreSQL; load average "
               f"{rep.meta['load_avg_start'][0]:.2f} at start, "
               f"{rep.meta['load_avg_end'][0]:.2f} at end; {rep.meta['seconds']:.0f} s",
               args.json)
    return 1 if failed is not None else 0


def _intake_rows(rep: Report, load: Run, floor: Run, conns: int, seconds: int) -> None:
    sec = f"intake ({conns} conn.)"
    created = load.extra.get("created", 0)
    rate = created / load.seconds if load.seconds else 0.0
    rep.add(sec, "POST /cases: cases created per second", rate, "cases/s",
            Target(">=", TARGET_RATE),
            note=f"wrk, {conns} connections, {load.seconds:.1f} s, {created:,} cases "
                 f"({load.extra.get('merged', 0):,} linked to an open case as duplicates)")
    rep.add(sec, "POST /cases latency p50", load.p50_ms, "ms")
    rep.add(sec, "POST /cases latency p95", load.p95_ms, "ms")
    rep.add(sec, "POST /cases latency p99", load.p99_ms, "ms",
            note=f"max {load.max_ms:.0f} ms; wrk keeps {conns} requests in flight (closed "
                 f"loop: the mean latency is {conns} / the rate); the latency target is "
                 "checked at a fixed rate below")
    rep.add(sec, "POST /cases errors (socket errors + non-2xx)",
            load.socket_errors + load.non_2xx, "", Target("<=", 0),
            note=f"{load.extra.get('replayed', 0)} answered 200 (an idempotent replay)")
    rep.add(sec, "baseline GET /resolve, same connections", floor.rate, "req/s",
            note=f"p50 {floor.p50_ms:.1f} ms, p99 {floor.p99_ms:.1f} ms, "
                 f"{floor.socket_errors + floor.non_2xx} errors: the floor, the same workers "
                 "and points resolved in memory without the database, the owner or a write")
    rep.add(sec, "intake / GET /resolve throughput",
            rate / floor.rate if floor.rate else None, "x")


def _open_rows(rep: Report, ol: OpenLoopResult, floor: OpenLoopResult, seconds: int
               ) -> None:
    sec = f"intake (open loop, {ol.rate:.0f}/s)"
    created = ol.status.get(201, 0)
    other = sum(v for k, v in ol.status.items() if k != 201)
    rep.add(sec, "POST /cases: cases created per second", created / seconds, "cases/s",
            Target(">=", TARGET_RATE),
            note=f"{ol.sent:,} reports sent on a fixed schedule for {seconds} s, {created:,} "
                 f"created; last answer {ol.seconds - seconds:.2f} s after the schedule's end")
    rep.add(sec, "POST /cases latency p50", ol.pct(50), "ms")
    rep.add(sec, "POST /cases latency p95", ol.pct(95), "ms")
    rep.add(sec, "POST /cases latency p99", ol.pct(99), "ms", Target("<=", TARGET_P99_MS),
            note=f"max {ol.pct(100):.0f} ms; from the time each request was due (queueing "
                 f"for a connection included); the client lagged its schedule by at most "
                 f"{ol.late_ms:.1f} ms")
    rep.add(sec, "POST /cases errors (socket errors + non-201)", ol.errors + other, "",
            Target("<=", 0), note=f"statuses {dict(sorted(ol.status.items()))}")
    # issue #17: the intake as a ratio to GET /resolve, same rate, points, client and run
    f99 = floor.pct(99)
    floor_bad = floor.errors + sum(v for k, v in floor.status.items() if k != 200)
    rep.add(sec, "baseline GET /resolve latency p99, same rate and points", f99, "ms",
            note=f"p50 {floor.pct(50):.1f} ms, {floor.answered:,} of {floor.sent:,} answered, "
                 f"{floor_bad} errors; run just before the intake's, the same open-loop "
                 "client: in memory, no database, owner or write")
    ratio = ol.pct(99) / f99 if f99 > 0 else None
    rep.add(sec, "POST /cases p99 / GET /resolve p99 (same run)", ratio, "x",
            Target("<=", TARGET_P99_MS / f99) if f99 > 0 else None,
            note=f"bound: the {TARGET_P99_MS:.0f} ms budget in units of this run's GET /resolve "
                 f"p99 ({f99:.1f} ms), so it passes exactly when the p99 above does; p50 "
                 f"{ol.pct(50) / floor.pct(50):.1f}x" if f99 > 0 else "")


def _check_rows(rep: Report, sec: str, load: Run | None, chk: Checked) -> None:
    inflight = (load.extra.get("sent", 0) - load.extra.get("answered", 0)) if load else 0
    rep.add(sec, "201 answers that are not a stored case", chk.answered_not_stored, "",
            Target("<=", 0), note=f"{chk.answered_201:,} answers, {chk.stored:,} cases of the "
                                  "run in the database")
    rep.add(sec, "stored cases not answered 201, beyond those in flight",
            max(0, chk.stored_not_answered - inflight), "", Target("<=", 0),
            note=f"{chk.stored_not_answered} stored cases whose answer was not read: wrk "
                 f"stopped with {inflight} requests in flight")
    rep.add(sec, "sampled grids differing from the in-process resolver", chk.grid_differs,
            f"of {chk.sampled}", Target("<=", 0),
            note=f"and from PostGIS ST_Covers: {chk.postgis_grid_differs}; "
                 f"{chk.outside} cases of the run outside the district, kept and flagged")
    rep.add(sec, "sampled owners differing from the in-process resolver", chk.owner_differs,
            f"of {chk.sampled}", Target("<=", 0))
    rep.add(sec, "merged cases breaking the duplicate rules", chk.merges_wrong,
            f"of {chk.merged}", Target("<=", 0),
            note="same category, earlier, within the radius or on the same asset: "
                 + chk.merges_why)


if __name__ == "__main__":
    sys.exit(main())
