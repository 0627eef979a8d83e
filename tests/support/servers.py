"""Helpers for tests that run the real server in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from layers.cluster import free_port


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait until GET /health answers 200; fail if the server exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not start")


@contextmanager
def serving(db_url: str, log: Path | None = None, **env: str) -> Iterator[str]:
    """`gridops serve` (one worker) on a free port against a database; its base URL. With
    `log`, the server's output (its access log when GRIDOPS_ACCESS_LOG=1) goes to that file.
    The wall's tiles are not built in the background (GRIDOPS_TILES_PREWARM=true to): a
    server on the suite's shared database would commit them under the other tests."""
    port = free_port(0)
    out = open(log, "wb") if log is not None else None  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", "serve", "--port", str(port)],
                            env={**os.environ, "GRIDOPS_DATABASE_URL": db_url,
                                 "GRIDOPS_TILES_PREWARM": "false", **env},
                            stdout=out or subprocess.DEVNULL, stderr=out or subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if out is not None:
            out.close()


def watch_switch(answer: Callable[[], dict[str, Any]], new_gen: int, new_grid: str,
                 old_grid: str, *, t0: float, limit_s: float = 10.0, streak_of: int = 20
                 ) -> tuple[int, float | None, float]:
    """Ask until `streak_of` answers in a row come from generation new_gen (with new_grid)
    or limit_s passes; an answer from another generation must still name old_grid (never a
    half-built index). Returns (streak, first switched answer's time, switch time), times
    from t0 (time.monotonic()). The switch time is when the last answer from the old
    generation was sent (the moment every worker had switched, as far as the watch saw;
    the streak's own requests are not counted in it), or the first switched answer's
    time when none came after t0."""
    streak, switched, last_old = 0, None, None
    while time.monotonic() - t0 < limit_s and streak < streak_of:
        a = answer()
        if a["generation"]["id"] == new_gen:
            assert a["grid"]["code"] == new_grid
            switched = switched or time.monotonic() - t0
            streak += 1
        else:
            assert a["grid"]["code"] == old_grid  # never a half index
            last_old = time.monotonic() - t0  # an upper bound: sent before it came
            streak = 0
    done = last_old if last_old is not None else (switched or time.monotonic() - t0)
    return streak, switched, done
