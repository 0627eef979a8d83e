"""HTTP: `gridops serve` on a loopback port, a bounded load on GET /resolve (wrk or httpx)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from .report import log

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on, on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _gridops_exe() -> str:
    exe = Path(sys.executable).parent / "gridops"
    if exe.exists():
        return str(exe)
    found = shutil.which("gridops")
    if not found:
        raise RuntimeError("the gridops command is not installed in this environment")
    return found


def _this_tree() -> str:
    """PYTHONPATH for a server: this repository first (then what was there)."""
    repo = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)


@contextmanager
def server(db_url: str, home: Path, workers: int = 2, ready_s: float = 180.0
           ) -> Iterator[str]:
    """`gridops serve --workers N` against a database; yields its base URL, stops it after."""
    port = free_port()
    env = {**os.environ, "GRIDOPS_DATABASE_URL": db_url, "GRIDOPS_HOME": str(home),
           "PYTHONPATH": _this_tree()}  # the code of this tree, whatever is installed
    logfile = home / f"serve-{port}.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [_gridops_exe(), "serve", "--host", HOST, "--port", str(port),
             "--workers", str(workers)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=home)
    base = f"http://{HOST}:{port}"
    try:
        _wait_ready(base, proc, logfile, workers, ready_s)
        yield base
    finally:
        _stop(proc)


@contextmanager
def baseline_server(kind: str, db_url: str, home: Path, workers: int = 2,
                    ready_s: float = 180.0) -> Iterator[str]:
    """A baseline of benchmarks/baseline_servers.py ("bare": shapely STRtree, "postgis":
    a query per request) under uvicorn with `workers` workers, as gridops serve runs;
    yields its base URL."""
    app = {"bare": "bare_app", "postgis": "postgis_app"}[kind]
    port = free_port()
    env = {**os.environ, "GRIDOPS_DATABASE_URL": db_url, "PYTHONPATH": _this_tree()}
    logfile = home / f"baseline-{kind}-{port}.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"benchmarks.baseline_servers:{app}",
             "--factory", "--host", HOST, "--port", str(port), "--workers", str(workers),
             "--no-access-log", "--log-level", "info"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=home)
    base = f"http://{HOST}:{port}"
    try:
        _wait_ready(base, proc, logfile, workers, ready_s, path="/ready")
        yield base
    finally:
        _stop(proc)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], logfile: Path, workers: int,
                timeout_s: float, path: str = "/health") -> None:
    """Until /health answers with an active generation (or `path` answers 200) and every
    worker has started."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, timeout=5.0) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = logfile.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{logfile.name}: the server exited with "
                                   f"{proc.returncode}:\n{tail}")
            started = logfile.read_text(errors="replace").count("Application startup complete")
            try:
                r = c.get(path)
                if (r.status_code == 200 and started >= workers
                        and (path != "/health" or r.json().get("active_generation"))):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s; see {logfile}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server we started, SIGKILL to its process group if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the session we started: its workers only
    proc.wait(timeout=10)


def check_answers(base: str, lon: np.ndarray, lat: np.ndarray, expected: list[str | None],
                  key: str | None = "grid") -> int:
    """Resolve points over HTTP; how many answers differ from the in-process codes (the
    code of the answer's `grid`, or with key=None its `code`: the baselines')."""
    bad = 0
    with httpx.Client(base_url=base, timeout=10.0) as c:
        for x, y, want in zip(lon.tolist(), lat.tolist(), expected, strict=True):
            r = c.get("/resolve", params={"lon": repr(x), "lat": repr(y)})
            r.raise_for_status()
            if key is None:
                got = r.json().get("code")
            else:
                grid = r.json().get(key)
                got = grid["code"] if grid else None
            bad += got != want
    return bad


@dataclass
class Load:
    """Outcome of a load run."""

    tool: str
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    connections: int

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


_LUA = """
local pts = {
%s
}
local n_threads = 0
function setup(thread)
  thread:set("offset", n_threads * 7919)
  n_threads = n_threads + 1
end
local i = 0
function init(args)
  i = (offset or 0) %% #pts
end
function request()
  i = i + 1
  if i > #pts then i = 1 end
  return wrk.format("GET", "/resolve?" .. pts[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'GRIDOPS_WRK {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p95_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,' ..
    '"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _queries(lon: np.ndarray, lat: np.ndarray) -> list[str]:
    return [f"lon={x!r}&lat={y!r}" for x, y in zip(lon.tolist(), lat.tolist(), strict=True)]


def resolve_script(lon: np.ndarray, lat: np.ndarray) -> str:
    """The wrk Lua script cycling GET /resolve through the points (each thread from its own
    offset); done() prints the figures as one GRIDOPS_WRK JSON line."""
    return _LUA % ",\n".join(f'"{q}"' for q in _queries(lon, lat))


def wrk_load(base: str, lon: np.ndarray, lat: np.ndarray, workdir: Path, *, threads: int = 2,
             connections: int = 32, seconds: int = 15) -> Load:
    """wrk with a Lua script cycling through the points; its own latency percentiles."""
    wrk = shutil.which("wrk")
    assert wrk
    script = workdir / "resolve.lua"
    script.write_text(resolve_script(lon, lat))
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
           "-s", str(script), base]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          timeout=seconds + 60)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("GRIDOPS_WRK "))
    d = json.loads(line.split(" ", 1)[1])
    errors = sum(int(d[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return Load("wrk", d["duration_us"] / 1e6, int(d["requests"]), errors,
                d["p50_us"] / 1000, d["p99_us"] / 1000, connections)


def httpx_load(base: str, lon: np.ndarray, lat: np.ndarray, *, connections: int = 32,
               seconds: float = 15.0) -> Load:
    """An asyncio httpx client with bounded concurrency for a fixed time (no wrk here)."""
    paths = [f"/resolve?{q}" for q in _queries(lon, lat)]

    async def go() -> tuple[float, list[float], int]:
        lat_s: list[float] = []
        errors = 0
        counter = 0
        limits = httpx.Limits(max_connections=connections,
                              max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
            t_start = time.perf_counter()
            deadline = t_start + seconds

            async def worker() -> None:
                nonlocal counter, errors
                while time.perf_counter() < deadline:
                    p = paths[counter % len(paths)]
                    counter += 1
                    t0 = time.perf_counter()
                    try:
                        r = await client.get(p)
                        ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    lat_s.append(time.perf_counter() - t0)
                    errors += not ok

            await asyncio.gather(*(worker() for _ in range(connections)))
            return time.perf_counter() - t_start, lat_s, errors

    wall, lat_s, errors = asyncio.run(go())
    arr = np.asarray(lat_s) * 1000
    return Load("httpx (python)", wall, len(lat_s), errors, float(np.percentile(arr, 50)),
                float(np.percentile(arr, 99)), connections)


def load(base: str, lon: np.ndarray, lat: np.ndarray, workdir: Path, seconds: int) -> Load:
    """wrk when installed, else the httpx client; a short warm-up first."""
    if shutil.which("wrk"):
        wrk_load(base, lon, lat, workdir, seconds=2)
        return wrk_load(base, lon, lat, workdir, seconds=seconds)
    log("    wrk is not installed: using the Python httpx client (it is the bottleneck)")
    httpx_load(base, lon, lat, seconds=2)
    return httpx_load(base, lon, lat, seconds=seconds)


@dataclass
class SideBySide:
    """wrk runs on several servers under the same load, alternated round by round."""

    runs: dict[str, list[Load]]

    def rps(self, name: str) -> float:
        """Median throughput of a server over the rounds."""
        return float(np.median([r.rps for r in self.runs[name]]))

    def p99(self, name: str) -> float:
        """Median p99 latency (ms) of a server over the rounds."""
        return float(np.median([r.p99_ms for r in self.runs[name]]))

    def errors(self, name: str) -> int:
        """Failed requests (non-2xx, socket errors) of a server, all rounds."""
        return sum(r.errors for r in self.runs[name])

    def ratio(self, a: str, b: str) -> float:
        """Median over the rounds of a's throughput / b's in the same round."""
        return float(np.median([x.rps / y.rps if y.rps else 0.0 for x, y in
                                zip(self.runs[a], self.runs[b], strict=True)]))

    def ratios(self, a: str, b: str) -> list[float]:
        """a's throughput / b's, round by round."""
        return [x.rps / y.rps if y.rps else 0.0
                for x, y in zip(self.runs[a], self.runs[b], strict=True)]


def side_by_side(servers: dict[str, str], lon: np.ndarray, lat: np.ndarray, workdir: Path,
                 *, rounds: int = 3, seconds: int = 5, connections: int = 8) -> SideBySide:
    """wrk (the same Lua script) on each server in turn, `rounds` times, the order rotated
    each round so none always runs first; a 1 s warm-up per server before."""
    names = list(servers)
    for name in names:
        wrk_load(servers[name], lon, lat, workdir, connections=connections, seconds=1)
    runs: dict[str, list[Load]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            ld = wrk_load(servers[name], lon, lat, workdir, connections=connections,
                          seconds=seconds)
            runs[name].append(ld)
            log(f"    round {r + 1}: {name}: {ld.rps:,.0f} req/s, p99 {ld.p99_ms:.2f} ms"
                + (f", {ld.errors} errors" if ld.errors else ""))
    return SideBySide(runs)
