"""Helpers for tests that run the real server in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
def serving(db_url: str, **env: str) -> Iterator[str]:
    """`gridops serve` (one worker) on a free port against a database; its base URL."""
    port = free_port(0)
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", "serve", "--port", str(port)],
                            env={**os.environ, "GRIDOPS_DATABASE_URL": db_url, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
