"""The soak: a district's peak several times over, mixed, for minutes, against a 2-worker
server on the demo city (with a year of history): resolves, owner and dispute lookups,
intake, the wall's counts (twenty screens), and a bare answer (GET /, no database) as the
baseline the others are measured against. Open loop: every request is sent when it is due,
latency counts from then. Figures: errors (goal 0), p50/p99 per endpoint, each worker's
RSS at start and end (goal: flat).

    python -m benchmarks.soak [--minutes 10] [--scale 1.0] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import orjson
from sqlalchemy.orm import Session

from benchmarks.env import create_database, throwaway_cluster
from benchmarks.intake import prepare
from benchmarks.openloop import _read_response
from benchmarks.report import Report, Target, log
from benchmarks.serve_load import server
from layers import grids
from layers.resolver import build_index
from layers.settings import Settings

# requests per second at scale 1: several times a district's peak (Songjiang's year of
# 200,000 cases is ~1 report a minute at its peak hour; twenty wall screens every 5 s)
WARMUP_S = 20.0
RATES = {"GET /resolve": 100.0, "GET /owner": 10.0, "GET /lookup": 5.0,
         "POST /cases": 10.0, "GET /map/wall/counts.json": 4.0, "GET / (bare)": 5.0}


@dataclass
class Kind:
    """One endpoint's answers."""

    latencies_ms: list[float] = field(default_factory=list)
    status: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def failed(self) -> int:
        return self.errors + sum(n for s, n in self.status.items() if s >= 400)


def _requests(kind: str, n: int, host: str, points: np.ndarray, token: str,
              run: str) -> list[bytes]:
    """n raw HTTP/1.1 requests of one kind over the demo's points."""
    out = []
    for i in range(n):
        lon, lat = (float(v) for v in points[i % len(points)])
        q = f"lon={lon:.6f}&lat={lat:.6f}"
        if kind == "GET /resolve":
            target = f"/resolve?{q}"
        elif kind == "GET /owner":
            target = f"/owner?{q}&category={'C0101' if i % 2 else 'E0501'}"
        elif kind == "GET /lookup":
            target = f"/lookup?{q}"
        elif kind == "GET /map/wall/counts.json":
            target = "/map/wall/counts.json"
        elif kind == "GET / (bare)":
            target = "/"
        else:
            body = orjson.dumps({"channel": "patrol_app", "category": "E0501", "lon": lon,
                                 "lat": lat, "description": f"soak {run} {i}"})
            out.append((f"POST /cases HTTP/1.1\r\nHost: {host}\r\n"
                        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            continue
        out.append(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return out


async def _soak(base: str, schedule: list[tuple[float, str, bytes]], connections: int,
                timeout_s: float) -> dict[str, Kind]:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    kinds = {k: Kind() for k in RATES}
    queue: asyncio.Queue[tuple[float, str, bytes] | None] = asyncio.Queue()

    async def worker() -> None:
        reader = writer = None
        while (job := await queue.get()) is not None:
            due, kind, raw = job
            k = kinds[kind]
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(raw)
                code, _ = await asyncio.wait_for(_read_response(reader), timeout_s)
                k.latencies_ms.append((time.perf_counter() - due) * 1000)
                k.status[code] = k.status.get(code, 0) + 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                k.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.1)
    t0 = time.perf_counter() + 0.05
    for offset, kind, raw in schedule:
        due = t0 + offset
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((due, kind, raw))
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return kinds


def _proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pids(port: int) -> list[int]:
    """The server's worker processes: children of the `gridops serve --port N` process."""
    master = None
    procs: dict[int, tuple[int, str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        procs[int(d.name)] = (ppid, cmd)
        if "serve" in cmd and f"--port {port}" in cmd:
            master = int(d.name)
    return sorted(p for p, (pp, _) in procs.items() if pp == master) if master else []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--scale", type=float, default=1.0, help="times the rates above")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="1 minute, no year of history")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the table, write the JSON."""
    args = parse_args(argv)
    minutes = 1.0 if args.quick else args.minutes
    seconds = minutes * 60
    rep = Report()
    rep.meta = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "argv": sys.argv[1:], "cpus": os.cpu_count()}
    run = f"soak-{int(time.time())}"
    with throwaway_cluster() as cluster:
        home = cluster.datadir.parent
        url = create_database(cluster, "soak")
        settings = Settings(database_url=url, home=home)
        log("loading the demo city" + ("" if args.quick else " and a year of history"))
        engine, tokens = prepare(url, settings, not args.quick, rep)
        with Session(engine) as s:
            gen = grids.active_generation(s)
            assert gen is not None
            idx = build_index(s, gen, settings)
        engine.dispose()
        rng = np.random.default_rng(7)
        x0, y0, x1, y1 = idx.meta.get("bounds", (121.0, 30.8, 121.4, 31.2))
        pts = np.column_stack([rng.uniform(x0, x1, 50_000), rng.uniform(y0, y1, 50_000)])
        with server(url, home, workers=2) as base:
            port = int(urlsplit(base).port or 0)
            host = f"127.0.0.1:{port}"
            schedule: list[tuple[float, str, bytes]] = []
            for kind, rate in RATES.items():
                r = rate * args.scale
                n = int(r * seconds)
                for i, raw in enumerate(_requests(kind, n, host, pts, tokens["centre"], run)):
                    schedule.append((i / r, kind, raw))
            schedule.sort(key=lambda t: t[0])
            pids = worker_pids(port)
            # warm-up at the same rates (JIT-compiled lookups, caches, pools), then start
            warm = [(t, k, r) for t, k, r in schedule if t < WARMUP_S]
            log(f"warm-up: {len(warm):,} requests over {WARMUP_S:g} s")
            asyncio.run(_soak(base, warm, args.connections, 10.0))
            rss0 = {p: _proc_rss_kb(p) for p in pids}
            log(f"soak: {len(schedule):,} requests over {minutes:g} min against workers "
                f"{pids} ({sum(rss0.values()) / 1024:.0f} MB)")
            kinds = asyncio.run(_soak(base, schedule, args.connections, 10.0))
            rss1 = {p: _proc_rss_kb(p) for p in pids}
    sec = f"soak ({minutes:g} min, x{args.scale:g} the rates)"
    bare = kinds["GET / (bare)"]
    total_failed = sum(k.failed for k in kinds.values())
    rep.add(sec, "requests that failed (errors or 4xx/5xx)", total_failed, "",
            target=Target("<=", 0),
            note=f"of {sum(len(k.latencies_ms) + k.errors for k in kinds.values()):,}")
    for name, k in kinds.items():
        rate = RATES[name] * args.scale
        rep.add(sec, f"{name} p50", k.pct(50), "ms", note=f"{rate:g}/s, {k.failed} failed, "
                f"statuses {dict(sorted(k.status.items()))}")
        rep.add(sec, f"{name} p99", k.pct(99), "ms", target=Target("<=", 100.0),
                note=f"bare server p99 {bare.pct(99):.1f} ms: x{k.pct(99) / bare.pct(99):.1f}")
    for p in pids:
        rep.add(sec, f"worker {p} RSS start -> end", rss1.get(p, 0) / 1024, "MB",
                target=Target("<=", rss0.get(p, 0) / 1024 * 1.15 + 20),
                note=f"from {rss0.get(p, 0) / 1024:.0f} MB")
    rep.finish(f"gridops soak, {rep.meta['started']}", Path("/tmp/gridops-soak.json"))
    return 0 if total_failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
