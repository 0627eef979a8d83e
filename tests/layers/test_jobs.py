"""Durable jobs on a real PostGIS: a job runs to done; two workers never take the same job;
a GridopsError fails the job with its fields and rolls its writes back; other errors are
retried; a job whose worker died (an old heartbeat, or a worker process killed with SIGKILL
mid-job) is taken again and finished; progress is readable while a job runs; the worker
thread is woken by NOTIFY. Jobs are committed and read across connections, so these tests
use a database of their own, emptied before each test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from layers import jobs
from layers.cluster import Cluster
from layers.db import make_engine, make_sessionmaker, upgrade
from layers.settings import Settings
from spatial.errors import InvalidInput, NotFound

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def jobs_url(pg_cluster: Cluster) -> Iterator[str]:
    admin = make_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("DROP DATABASE IF EXISTS gridops_jobs WITH (FORCE)"))
        c.execute(text("CREATE DATABASE gridops_jobs"))
    url = pg_cluster.url().rsplit("/", 1)[0] + "/gridops_jobs"
    upgrade(url)
    eng = make_engine(url)
    with eng.begin() as c:  # what handlers write, to see it kept or rolled back
        c.execute(text("CREATE TABLE job_test_write (job_id bigint, attempt int, note text)"))
    eng.dispose()
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text("DROP DATABASE IF EXISTS gridops_jobs WITH (FORCE)"))
        admin.dispose()


@pytest.fixture()
def engine_j(jobs_url: str) -> Iterator[Engine]:
    eng = make_engine(jobs_url)
    with eng.begin() as c:
        c.execute(text("TRUNCATE job, job_blob, job_test_write"))
    yield eng
    eng.dispose()


@pytest.fixture()
def factory(engine_j: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine_j)


_n = 0


def kind(fn: Callable[..., Any]) -> str:
    """Register fn under a kind of its own (handlers are process-wide); the kind."""
    global _n
    _n += 1
    name = f"test_{fn.__name__}_{_n}"
    jobs.register(name, fn)
    return name


def submit(factory: sessionmaker[Session], kind: str, payload: dict[str, Any] | None = None,
           blob: bytes | None = None, **kw: Any) -> int:
    with factory() as s, s.begin():
        return jobs.submit(s, kind, payload or {}, blob, "tester", **kw)


def job(factory: sessionmaker[Session], job_id: int) -> dict[str, Any]:
    with factory() as s:
        return jobs.get(s, job_id)


def written(factory: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with factory() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT job_id, attempt, note FROM job_test_write ORDER BY job_id, attempt"))]


def write(session: Session, run: jobs.JobRun, note: str) -> None:
    session.execute(text("INSERT INTO job_test_write VALUES (:j, :a, :n)"),
                    {"j": run.id, "a": run.attempt, "n": note})


def test_states_agree_with_the_migration() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "m0013", ROOT / "alembic" / "versions" / "0013_jobs.py")
    assert spec and spec.loader
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert tuple(m.STATES) == jobs.STATES


def test_a_job_runs_and_is_done(factory: sessionmaker[Session]) -> None:
    def echo(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> dict[str, Any]:
        write(session, run, "ran")
        progress(1, 1, "all")
        return {"payload": run.payload, "bytes": len(run.blob or b""), "by": run.created_by}

    k = kind(echo)
    jid = submit(factory, k, {"generation": 7}, b"x" * 1000)
    queued = job(factory, jid)
    assert queued["state"] == "queued" and queued["attempts"] == 0
    assert queued["blob_bytes"] == 1000 and "blob" not in queued
    assert jobs.run_pending(factory) == 1
    done = job(factory, jid)
    assert done["state"] == "done"
    assert done["result"] == {"payload": {"generation": 7}, "bytes": 1000, "by": "tester"}
    assert done["error"] is None and done["attempts"] == 1
    assert done["progress"] == {"done": 1, "total": 1, "message": "all"}
    assert done["worker"] == jobs.worker_name()
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert written(factory) == [(jid, 1, "ran")]
    assert jobs.run_pending(factory) == 0  # nothing is run twice
    with factory() as s:
        listed = jobs.list_jobs(s, kind=k)
        assert [j["id"] for j in listed] == [jid] and listed[0]["blob_bytes"] == 1000
        assert jobs.list_jobs(s, kind=k, state="queued") == []
        with pytest.raises(NotFound):
            jobs.get(s, jid + 1000)
        with pytest.raises(InvalidInput):
            jobs.list_jobs(s, state="sleeping")


def test_submit_refuses_what_cannot_be_stored(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        with pytest.raises(InvalidInput):
            jobs.submit(s, "", {}, None, "tester")
        with pytest.raises(InvalidInput):
            jobs.submit(s, "k", {"x": float("nan")}, None, "tester")
        with pytest.raises(InvalidInput):
            jobs.submit(s, "k", {"x": object()}, None, "tester")
    with pytest.raises(ValueError, match="already has a handler"):
        k = kind(lambda s, r, p: None)
        jobs.register(k, lambda s, r, p: 1)


def test_two_workers_never_take_the_same_job(factory: sessionmaker[Session]) -> None:
    runs: list[tuple[int, str]] = []

    def slow(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> None:
        write(session, run, threading.current_thread().name)
        runs.append((run.id, threading.current_thread().name))
        time.sleep(0.01)

    k = kind(slow)
    ids = [submit(factory, k, {"i": i}) for i in range(60)]
    start = threading.Barrier(2)
    ran: dict[str, int] = {}

    def worker(name: str) -> None:
        start.wait()
        ran[name] = jobs.run_pending(factory, worker=name)

    threads = [threading.Thread(target=worker, args=(n,), name=n) for n in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    taken = Counter(i for i, _ in runs)
    assert sorted(taken) == ids and set(taken.values()) == {1}, "a job ran twice"
    assert ran["w1"] + ran["w2"] == 60 and ran["w1"] > 0 and ran["w2"] > 0
    assert len(written(factory)) == 60
    with factory() as s:
        done = jobs.list_jobs(s, kind=k, state="done", limit=100)
    assert len(done) == 60 and all(j["attempts"] == 1 for j in done)
    assert {j["worker"] for j in done} == {"w1", "w2"}


def test_a_gridops_error_fails_the_job_and_rolls_back(factory: sessionmaker[Session]) -> None:
    def refuse(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> None:
        write(session, run, "half")
        progress(3, 10, "line 3")
        raise InvalidInput("line 3: the geometry is not closed", extra={"line": 3})

    jid = submit(factory, kind(refuse))
    assert jobs.run_pending(factory) == 1
    failed = job(factory, jid)
    assert failed["state"] == "failed" and failed["attempts"] == 1  # a 4xx is not retried
    assert failed["error"] == {"status": 422, "code": "invalid_input",
                               "message": "line 3: the geometry is not closed",
                               "extra": {"line": 3}}
    assert failed["result"] is None and failed["finished_at"] is not None
    assert failed["progress"]["done"] == 3  # where it stopped
    assert written(factory) == []  # the handler's writes are rolled back


def test_other_errors_are_retried_then_fail(factory: sessionmaker[Session]) -> None:
    calls: Counter[int] = Counter()

    def flaky(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> str:
        calls[run.id] += 1
        write(session, run, "try")
        if run.payload["fail"] > calls[run.id] - 1:
            raise RuntimeError("connection reset by a secret host")
        return "ok"

    k = kind(flaky)
    recovers = submit(factory, k, {"fail": 1})
    never = submit(factory, k, {"fail": 99})
    assert jobs.run_pending(factory, retry_backoff_s=0) == 5  # 2 + 3 runs
    ok = job(factory, recovers)
    assert ok["state"] == "done" and ok["attempts"] == 2 and ok["result"] == "ok"
    assert ok["error"] is None
    bad = job(factory, never)
    assert bad["state"] == "failed" and bad["attempts"] == 3 and calls[never] == 3
    assert bad["error"]["status"] == 500 and bad["error"]["code"] == "internal_error"
    assert "secret host" not in bad["error"]["message"]  # internals stay in the log
    assert written(factory) == [(recovers, 2, "try")]


def test_a_retry_backs_off(factory: sessionmaker[Session]) -> None:
    def boom(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> None:
        raise RuntimeError("boom")

    jid = submit(factory, kind(boom))
    assert jobs.run_pending(factory, retry_backoff_s=30) == 1
    assert job(factory, jid)["state"] == "queued"  # waits 30 s before the next try
    assert jobs.run_pending(factory, retry_backoff_s=30) == 0


def test_an_unknown_kind_fails_clearly(factory: sessionmaker[Session]) -> None:
    jid = submit(factory, "no_such_kind")
    assert jobs.run_pending(factory) == 1
    j = job(factory, jid)
    assert j["state"] == "failed" and j["error"]["code"] == "unknown_job_kind"
    assert "no_such_kind" in j["error"]["message"]


def test_a_job_whose_worker_died_is_taken_again(factory: sessionmaker[Session]) -> None:
    def finish(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> int:
        write(session, run, "finished")
        return run.attempt

    k = kind(finish)
    dead, alive = submit(factory, k), submit(factory, k)
    with factory() as s, s.begin():  # both taken by a worker; one worker died a minute ago
        s.execute(text("UPDATE job SET state = 'running', attempts = 1, worker = 'gone:1', "
                       "heartbeat_at = now() - CASE WHEN id = :d THEN interval '1 minute' "
                       "ELSE interval '1 second' END"), {"d": dead})
    assert jobs.run_pending(factory) == 1  # the live one keeps its lease
    assert job(factory, alive)["state"] == "running"
    j = job(factory, dead)
    assert j["state"] == "done" and j["attempts"] == 2 and j["result"] == 2
    assert j["worker"] == jobs.worker_name()
    # a job that killed its worker every time is not taken a fourth time
    with factory() as s, s.begin():
        s.execute(text("UPDATE job SET attempts = 3, heartbeat_at = now() - interval '1 hour' "
                       "WHERE id = :a"), {"a": alive})
    assert jobs.run_pending(factory) == 0
    j = job(factory, alive)
    assert j["state"] == "failed" and j["error"]["code"] == "worker_lost"


def test_a_worker_taken_over_keeps_nothing(factory: sessionmaker[Session]) -> None:
    """A run whose lease another worker took (its heartbeats did not reach the database)
    finds the job no longer its own at the end and rolls its work back."""
    go = threading.Event()

    def stalls(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> str:
        write(session, run, "stale")
        go.wait(10)
        return "stale"

    jid = submit(factory, kind(stalls))
    t = threading.Thread(target=jobs.run_pending, args=(factory,))
    t.start()
    deadline = time.monotonic() + 10
    while job(factory, jid)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    with factory() as s, s.begin():  # another worker takes it over (attempt 2)
        s.execute(text("UPDATE job SET attempts = 2, worker = 'other:2' WHERE id = :j"),
                  {"j": jid})
    go.set()
    t.join(10)
    j = job(factory, jid)
    assert j["state"] == "running" and j["worker"] == "other:2" and j["result"] is None
    assert written(factory) == []


def test_progress_is_readable_while_a_job_runs(factory: sessionmaker[Session]) -> None:
    step = threading.Event()
    finish = threading.Event()

    def stepwise(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> None:
        progress(1, 3, "imported street 1 of 3")
        step.wait(10)
        progress(2)
        finish.wait(10)

    jid = submit(factory, kind(stepwise))
    t = threading.Thread(target=jobs.run_pending, args=(factory,),
                         kwargs={"heartbeat_s": 0.2})
    t.start()
    try:
        def seen(want: dict[str, Any]) -> dict[str, Any]:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                j = job(factory, jid)
                if j["progress"] == want:
                    return j
                time.sleep(0.02)
            raise AssertionError(f"progress {want} never seen: {job(factory, jid)}")

        first = seen({"done": 1, "total": 3, "message": "imported street 1 of 3"})
        assert first["state"] == "running"
        step.set()
        second = seen({"done": 2, "total": 3, "message": "imported street 1 of 3"})
        time.sleep(0.5)  # the heartbeat goes on while the handler works
        assert job(factory, jid)["heartbeat_at"] > second["heartbeat_at"]
    finally:
        step.set()
        finish.set()
        t.join(10)
    assert job(factory, jid)["state"] == "done"


# a worker process on its own: takes the job, writes, reports progress, then hangs
_CHILD = """
import sys, time
from layers import jobs
from layers.db import make_engine, make_sessionmaker
from sqlalchemy import text

def hang(session, run, progress):
    session.execute(text("INSERT INTO job_test_write VALUES (:j, :a, 'killed')"),
                    {"j": run.id, "a": run.attempt})
    session.flush()
    progress(1, 2, "half way")
    time.sleep(600)

jobs.register(sys.argv[2], hang)
jobs.run_pending(make_sessionmaker(make_engine(sys.argv[1])), heartbeat_s=0.2)
"""


def test_a_worker_killed_mid_job_leaves_nothing_and_the_job_is_finished(
        factory: sessionmaker[Session], jobs_url: str) -> None:
    def finish(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> str:
        write(session, run, "finished")
        return "finished"

    k = kind(finish)
    jid = submit(factory, k)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, jobs_url, k], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while job(factory, jid)["progress"]["done"] != 1:
            assert child.poll() is None, "the worker process exited"
            assert time.monotonic() < deadline, "the worker process never took the job"
            time.sleep(0.05)
        running = job(factory, jid)
        assert running["state"] == "running" and running["worker"].endswith(f":{child.pid}")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert jobs.run_pending(factory, lease_s=1.0) == 0  # its lease has not run out
        deadline = time.monotonic() + 10
        while jobs.run_pending(factory, lease_s=1.0) == 0:
            assert time.monotonic() < deadline, "the job was never taken again"
            time.sleep(0.1)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    j = job(factory, jid)
    assert j["state"] == "done" and j["attempts"] == 2 and j["result"] == "finished"
    assert written(factory) == [(jid, 2, "finished")]  # the killed run's write is gone


def test_the_worker_thread_is_woken_by_notify(factory: sessionmaker[Session],
                                              settings: Settings) -> None:
    def quick(session: Session, run: jobs.JobRun, progress: jobs.Progress) -> str:
        return "quick"

    k = kind(quick)
    assert not jobs.JobWorker(factory, settings.model_copy(
        update={"jobs_worker": False})).enabled()
    w = jobs.JobWorker(factory, settings, poll_s=60)  # only a NOTIFY wakes it in time
    w.start()
    try:
        time.sleep(0.5)  # it has looked once and listens
        t0 = time.monotonic()
        jid = submit(factory, k)
        while job(factory, jid)["state"] != "done":
            assert time.monotonic() - t0 < 5, "the worker was not woken by the NOTIFY"
            time.sleep(0.02)
    finally:
        w.stop()
    assert job(factory, jid)["result"] == "quick"
