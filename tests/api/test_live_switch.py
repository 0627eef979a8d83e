"""A running server (2 workers) follows the database by LISTEN/NOTIFY: a newly activated
generation, a revoked token."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from sqlalchemy.orm import Session

from layers import grids
from layers.cluster import free_port
from layers.db import make_engine, upgrade
from layers.settings import Settings
from tests.support.servers import wait_ready, watch_switch
from tests.support.tinycity import X0, Y0, D, line_moved_north, tiny_city

# inside community 1, 100 m north of the line between its two grids
P = (X0 + D / 2, Y0 + D / 2 + 0.001)


def test_activation_reaches_every_worker(scratch_db: str, settings: Settings) -> None:
    upgrade(scratch_db)
    eng = make_engine(scratch_db)
    with Session(eng) as s, s.begin():
        grids.load_generation(s, tiny_city(), settings, label="v1")
    port = free_port(0)
    env = dict(os.environ, GRIDOPS_DATABASE_URL=scratch_db)
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", "serve", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        with httpx.Client(base_url=url, timeout=5) as c:
            for _ in range(10):
                a = c.get("/resolve", params={"lon": P[0], "lat": P[1]}).json()
                assert a["grid"]["code"] == "319999001001001"
            # planners move the line 200 m north: P now lies in grid 002
            moved = line_moved_north()
            with Session(eng) as s, s.begin():
                g2 = grids.load_generation(s, moved, settings, label="v2").id
            t0 = time.monotonic()
            streak, _, elapsed = watch_switch(
                lambda: c.get("/resolve", params={"lon": P[0], "lat": P[1]}).json(),
                g2, "319999001001002", "319999001001001", t0=t0)
            assert streak >= 20, "both workers must answer with the new generation"
            print(f"all workers switched within {elapsed:.2f} s")
            assert elapsed < 1.0
            # the old generation stays answerable by name
            old = c.get("/resolve", params={"lon": P[0], "lat": P[1], "generation": 1}).json()
            assert old["grid"]["code"] == "319999001001001"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        eng.dispose()


def test_a_revoked_token_is_refused_by_every_worker(scratch_db: str) -> None:
    """Workers keep verified tokens for GRIDOPS_TOKEN_CACHE_S (30 s); a revocation reaches
    them all by NOTIFY at once."""
    from layers.auth import create_token, revoke

    upgrade(scratch_db)
    eng = make_engine(scratch_db)
    with Session(eng) as s, s.begin():
        tok, secret = create_token(s, "soon-revoked", "centre")
        token_id = tok.id
    port = free_port(0)
    env = dict(os.environ, GRIDOPS_DATABASE_URL=scratch_db, GRIDOPS_TOKEN_CACHE_S="30")
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", "serve", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {secret}"}

    def status() -> int:  # a new connection each time: either worker may answer
        return httpx.get(url + "/cases", headers=auth, timeout=5).status_code

    try:
        wait_ready(url, proc)
        assert [status() for _ in range(20)] == [200] * 20  # both workers know it now
        with Session(eng) as s, s.begin():
            revoke(s, token_id)
        t0 = time.monotonic()
        streak = 0
        while time.monotonic() - t0 < 5 and streak < 20:
            streak = streak + 1 if status() == 401 else 0
        assert streak >= 20, "every worker must refuse the revoked token"
        assert time.monotonic() - t0 < 3.0  # by NOTIFY, not by the cache's 30 s
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        eng.dispose()
