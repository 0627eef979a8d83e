"""Stored means stored: PostgreSQL killed with SIGKILL while reports stream in; after the
restart every report that was answered 201 is in the database with its events, and while
the database was down intake answered 503 (never 500) and stored nothing by halves."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from layers.auth import create_token
from layers.cluster import Cluster
from layers.db import make_engine, upgrade
from layers.settings import Settings
from tests.support.clusters import throwaway_cluster
from tests.support.servers import serving

CLIENTS = 8
BEFORE_KILL = 300  # reports acknowledged before the kill (at most 60 s of streaming)...
AFTER_KILL_S = 1.5  # ...and the stream goes on this long after it (the database down)
POINTS = [(121.2277, 31.0322), (121.2322, 31.0299), (121.19, 31.05), (121.30, 30.98)]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    """A cluster of this test's own: it is killed, so no other test may share it."""
    with throwaway_cluster("gridops-crash-") as cluster:
        yield cluster


def _stat(pid: str) -> list[str]:
    """A process's /proc stat fields after its name: state, ppid, pgrp, ..."""
    return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()


def _postgres_pids(master: int) -> list[int]:
    """Every live process of the cluster: pg_ctl starts the postmaster in a session of its
    own, so its process group is the cluster (a backend forked at the moment of the kill
    included); its children by parent too, for safety."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                state, ppid, pgrp = _stat(d.name)[:3]
            except (OSError, IndexError):
                continue
            if state != "Z" and master in (int(d.name), int(ppid), int(pgrp)):
                pids.append(int(d.name))
    return pids


def _kill_cluster(datadir: Path) -> None:
    """SIGKILL to the postmaster's whole process group; back when none of it is left."""
    master = int((datadir / "postmaster.pid").read_text().split()[0])
    deadline = time.monotonic() + 20
    while pids := _postgres_pids(master):
        assert time.monotonic() < deadline, f"PostgreSQL processes outlived SIGKILL: {pids}"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    # and until the postmaster is reaped: a zombie still answers kill(pid, 0), so pg_ctl
    # would take the cluster for running and PostgreSQL would refuse its lock file
    while Path(f"/proc/{master}").exists():
        assert time.monotonic() < deadline + 30, f"the postmaster {master} was never reaped"
        time.sleep(0.05)


def _stream(url: str, token: str, stop: threading.Event, answers: list[tuple[int, str | None]],
            k: int) -> None:
    """One client posting reports back to back; every answer is kept (status, ref)."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=10) as c:
        i = 0
        while not stop.is_set():
            lon, lat = POINTS[(k + i) % len(POINTS)]
            body = {"channel": "patrol_app", "category": "E0501",
                    "lon": lon + 1e-5 * (i % 97), "lat": lat, "description": f"crash {k}-{i}"}
            try:
                r = c.post("/cases", json=body, headers=headers)
                ref = r.json().get("ref") if r.status_code in (200, 201) else None
                answers.append((r.status_code, ref))
            except httpx.HTTPError:
                answers.append((0, None))  # no answer at all: nothing was acknowledged
                time.sleep(0.01)
            i += 1


@pytest.mark.slow
def test_no_acknowledged_report_is_lost_when_postgres_is_killed(own_cluster: Cluster,
                                                                 settings: Settings) -> None:
    from etl.demo import load_demo_all

    url = own_cluster.url()
    upgrade(url)
    engine: Engine = make_engine(url)
    with Session(engine) as s, s.begin():
        load_demo_all(s, settings.model_copy(update={"database_url": url}))
        _, token = create_token(s, "crash-centre", "centre")
    engine.dispose()

    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()
    with serving(url, GRIDOPS_SCHEDULER_INTERVAL_S="0") as base:
        threads = [threading.Thread(target=_stream, args=(base, token, stop, answers, k))
                   for k in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while (sum(1 for st, _ in answers if st == 201) < BEFORE_KILL
               and time.monotonic() < deadline):
            time.sleep(0.05)
        acked_before = sum(1 for st, _ in answers if st == 201)
        statuses = {st for st, _ in answers}
        _kill_cluster(own_cluster.datadir)
        time.sleep(AFTER_KILL_S)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert own_cluster.start(), "the killed cluster was taken for running"  # WAL replayed

    acked = [ref for st, ref in answers if st == 201]
    assert acked_before >= BEFORE_KILL, (f"only {acked_before} reports before the kill: too few to "
                                f"test; answers {sorted(statuses)}")
    statuses = {st for st, _ in answers}
    assert 500 not in statuses, "a report was answered 500"
    assert statuses <= {0, 201, 503}, statuses
    engine = make_engine(url)
    with engine.connect() as c:
        stored = {r.ref: r.events for r in c.execute(text(
            'SELECT c.ref, (SELECT count(*) FROM case_event e WHERE e.case_id = c.id) AS events '
            'FROM "case" c WHERE c.description LIKE \'crash %\''))}
    engine.dispose()
    lost = [ref for ref in acked if ref not in stored]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged reports lost: {lost[:5]}"
    assert all(n >= 1 for n in stored.values()), "a case was stored without its events"
