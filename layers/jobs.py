"""Durable background jobs kept in PostgreSQL (table `job`, migration 0013).

A long piece of work (a grid import over the API) is submitted as a job and answered with
its id at once; a worker takes it and runs it; the caller polls. A job outlives the worker
that ran it:

- `submit` inserts a queued job (and its uploaded file in `job_blob`) in the caller's
  transaction and NOTIFYs `gridops_jobs` when it commits.
- A worker takes one ready job with `SELECT ... FOR UPDATE SKIP LOCKED` (queued, or running
  with a heartbeat older than the lease: its worker died), marks it running and commits,
  so any number of workers (threads, uvicorn workers, hosts) never take the same job.
- The handler registered for the job's kind runs in a transaction of its own; a heartbeat
  thread writes the heartbeat and the handler's progress in short transactions of their
  own meanwhile. "done" and the result are written in the handler's transaction, so the
  handler's writes and "done" commit together: a crash before the commit leaves no half
  work, and the job is taken again after its lease.
- A GridopsError under 500 (the caller's problem) fails the job at once with the error's
  fields, its writes rolled back; any other exception is retried (backing off) until
  `max_attempts` runs have failed, then fails the job with a 500-style error.
- Every write of a run is fenced by the run's attempt number: a worker whose lease was
  taken over by another finds its job no longer its own and rolls its work back.

`JobWorker` runs jobs in a server worker's background thread (LISTEN plus a poll);
`run_pending` runs them in the calling thread (tests, a CLI).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine, func, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Session, sessionmaker

from layers.background import BackgroundLoop
from layers.db import sqlalchemy_url
from layers.models import Job, JobBlob
from layers.settings import Settings
from spatial.errors import GridopsError, InvalidInput, NotFound

log = logging.getLogger(__name__)

CHANNEL = "gridops_jobs"  # NOTIFY'd (payload: the job id) when a job is submitted
STATES = ("queued", "running", "done", "failed")  # as migration 0013's check has them
LEASE_S = 30.0  # a running job whose heartbeat is older than this lost its worker
HEARTBEAT_S = 5.0  # how often a running job's heartbeat is written
POLL_S = 2.0  # a worker looks for work this often even without a NOTIFY
MAX_ATTEMPTS = 3
RETRY_BACKOFF_S = 2.0  # a failed attempt n is retried after RETRY_BACKOFF_S * 2**(n-1)
PROGRESS_GAP_S = 0.25  # progress is written at most this often
KIND_MAX = 64
ACTOR_MAX = 100


@dataclass(frozen=True)
class JobRun:
    """What a handler is given of the job it runs (one attempt of it)."""

    id: int
    kind: str
    payload: dict[str, Any]
    created_by: str
    attempt: int  # 1 for the first run
    max_attempts: int
    blob: bytes | None = None  # the uploaded file, if any


Handler = Callable[[Session, JobRun, "Progress"], Any]
"""fn(session, job, progress) -> result (JSON, or None). The session is in the run's own
transaction: do not commit it (the runner commits it together with "done")."""

_handlers: dict[str, Handler] = {}
_handlers_lock = threading.Lock()


def register(kind: str, fn: Handler, *, replace_existing: bool = False) -> None:
    """Run jobs of `kind` with fn. A kind has one handler: registering another fn for it is
    an error unless replace_existing (registering the same fn again does nothing)."""
    _check_kind(kind)
    with _handlers_lock:
        old = _handlers.get(kind)
        if old is not None and old is not fn and not replace_existing:
            raise ValueError(f"job kind {kind!r} already has a handler: {old!r}")
        _handlers[kind] = fn


def handler_for(kind: str) -> Handler | None:
    """The handler registered for kind, or None."""
    with _handlers_lock:
        return _handlers.get(kind)


def worker_name() -> str:
    """This process as a job's worker: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not kind or len(kind) > KIND_MAX:
        raise InvalidInput(f"job kind must be a non-empty string of at most {KIND_MAX} "
                           f"characters, got {str(kind)[:80]!r}")


def _jsonable(value: Any, what: str) -> Any:
    """value as it will be stored (JSON), or InvalidInput naming what."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{what} must be JSON (no NaN or infinity): {e}") from None


def _result(value: Any) -> Any:
    """A handler's result as stored; one that is not JSON is the handler's bug (a 500)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"a job's result must be JSON: {e}") from None


def submit(session: Session, kind: str, payload: dict[str, Any] | None = None,
           blob: bytes | None = None, actor: str = "system", *,
           max_attempts: int = MAX_ATTEMPTS) -> int:
    """Queue a job in the caller's transaction (the caller commits); its id. Workers are
    told by NOTIFY when the transaction commits."""
    _check_kind(kind)
    payload = _jsonable(payload if payload is not None else {}, "a job's payload")
    if not isinstance(payload, dict):
        raise InvalidInput("a job's payload must be a JSON object")
    if not actor or len(actor) > ACTOR_MAX:
        raise InvalidInput(f"a job's actor must be 1 to {ACTOR_MAX} characters")
    if not 1 <= max_attempts <= 100:
        raise InvalidInput("max_attempts must be between 1 and 100")
    job = Job(kind=kind, state="queued", payload=payload, created_by=actor,
              max_attempts=max_attempts)
    session.add(job)
    session.flush()
    if blob is not None:
        session.add(JobBlob(job_id=job.id, data=bytes(blob)))
        session.flush()
    session.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": CHANNEL, "id": str(job.id)})
    return job.id


def _as_dict(job: Job, blob_bytes: int | None) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "state": job.state, "payload": job.payload,
        "result": job.result, "error": job.error,
        "progress": {"done": job.progress_done, "total": job.progress_total,
                     "message": job.progress_message},
        "attempts": job.attempts, "max_attempts": job.max_attempts,
        "created_by": job.created_by, "created_at": job.created_at,
        "started_at": job.started_at, "finished_at": job.finished_at,
        "heartbeat_at": job.heartbeat_at, "worker": job.worker,
        "blob_bytes": blob_bytes,
    }


def _listing() -> Any:
    # octet_length of a bytea reads its TOAST header, not the file
    return (sa_select(Job, func.octet_length(JobBlob.data))
            .outerjoin(JobBlob, JobBlob.job_id == Job.id)
            .execution_options(populate_existing=True))


def get(session: Session, job_id: int) -> dict[str, Any]:
    """One job as a plain dict (without its file: `blob_bytes` says how large it is)."""
    row = session.execute(_listing().where(Job.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return _as_dict(row[0], row[1])


def list_jobs(session: Session, *, kind: str | None = None, state: str | None = None,
              created_by: str | None = None, limit: int = 50, offset: int = 0
              ) -> list[dict[str, Any]]:
    """Jobs, newest first, as plain dicts (no files), filtered by kind, state, creator."""
    if state is not None and state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}, got {state[:80]!r}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1 to 1000 and offset at least 0")
    q = _listing()
    if kind is not None:
        q = q.where(Job.kind == kind)
    if state is not None:
        q = q.where(Job.state == state)
    if created_by is not None:
        q = q.where(Job.created_by == created_by)
    rows = session.execute(q.order_by(Job.id.desc()).limit(limit).offset(offset)).all()
    return [_as_dict(r[0], r[1]) for r in rows]


def error_fields(e: BaseException) -> dict[str, Any]:
    """A job's error: a GridopsError's own fields; anything else a 500 that names only the
    exception's type (its message may hold internals; the log has the traceback)."""
    if isinstance(e, GridopsError):
        return {"status": e.status, "code": e.code, "message": e.detail,
                "extra": json.loads(json.dumps(e.extra, default=str))}
    return {"status": 500, "code": "internal_error",
            "message": f"the job failed on an internal error ({type(e).__name__})",
            "extra": {}}


class Progress:
    """The handler's `progress(done, total=None, message=None)`; also the run's heartbeat.

    Calls only record the values (a handler never waits on the database for them); a thread
    writes them, with the heartbeat, in a short transaction of its own: soon after a change
    (at most every PROGRESS_GAP_S), and every heartbeat_s regardless. A total or message
    left None keeps the one given before."""

    def __init__(self, factory: sessionmaker[Session], run: JobRun,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self._factory = factory
        self._run = run
        self._heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self.done = 0
        self.total: int | None = None
        self.message: str | None = None
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, done: int, total: int | None = None, message: str | None = None
                 ) -> None:
        if done < 0 or (total is not None and total < 0):
            raise ValueError("progress counts are not negative")
        with self._lock:
            self.done = int(done)
            if total is not None:
                self.total = int(total)
            if message is not None:
                self.message = str(message)[:1000]
        self._wake.set()

    def values(self) -> dict[str, Any]:
        """The columns the current progress is stored in."""
        with self._lock:
            return {"progress_done": self.done, "progress_total": self.total,
                    "progress_message": self.message}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"gridops-job-{self._run.id}-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        """No more writes once this returns (the run's end is written by the runner)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._heartbeat_s)
            self._wake.clear()
            if self._stopped.is_set():
                return
            self._write()
            self._stopped.wait(PROGRESS_GAP_S)

    def _write(self) -> None:
        try:
            with self._factory() as s, s.begin():
                s.execute(_this_run(self._run).values(heartbeat_at=func.clock_timestamp(),
                                                      **self.values()))
        except Exception:  # the next beat tries again; the lease allows a few to fail
            log.warning("job %d: heartbeat not written", self._run.id, exc_info=True)


def _this_run(run: JobRun) -> Any:
    """UPDATE of the job while it is still this run's (running, the same attempt)."""
    return update(Job).where(Job.id == run.id, Job.state == "running",
                             Job.attempts == run.attempt)


class _LeaseLost(Exception):
    """The job was taken over by another worker while this one ran it."""


_TAKE = text("""
    SELECT id, kind, payload, created_by, attempts, max_attempts, state
      FROM job
     WHERE state IN ('queued', 'running')  -- index job_open
       AND ((state = 'queued' AND run_after <= clock_timestamp())
            OR (state = 'running'
                AND COALESCE(heartbeat_at, started_at, created_at)
                    < clock_timestamp() - make_interval(secs => :lease)))
     ORDER BY id
     LIMIT 1
       FOR UPDATE SKIP LOCKED""")


def _take(factory: sessionmaker[Session], worker: str, lease_s: float) -> JobRun | None:
    """Take the oldest ready job for this worker (committed as running), or None. A job
    whose workers died max_attempts times is failed instead of being taken again."""
    with factory() as s, s.begin():
        while True:
            row = s.execute(_TAKE, {"lease": lease_s}).first()
            if row is None:
                return None
            if row.state == "running" and row.attempts >= row.max_attempts:  # poison?
                s.execute(update(Job).where(Job.id == row.id).values(
                    state="failed", finished_at=func.clock_timestamp(), error={
                        "status": 500, "code": "worker_lost",
                        "message": f"the job's worker stopped before it finished, "
                                   f"{row.attempts} time(s)", "extra": {}}))
                log.error("job %d (%s) failed: its worker was lost %d time(s)", row.id,
                          row.kind, row.attempts)
                continue
            if row.state == "running":
                log.warning("job %d (%s): its worker's lease expired; taking it over",
                            row.id, row.kind)
            s.execute(update(Job).where(Job.id == row.id).values(
                state="running", attempts=Job.attempts + 1, worker=worker[:100],
                started_at=func.clock_timestamp(), heartbeat_at=func.clock_timestamp(),
                finished_at=None))
            return JobRun(id=row.id, kind=row.kind, payload=row.payload,
                          created_by=row.created_by, attempt=row.attempts + 1,
                          max_attempts=row.max_attempts)


def _end(factory: sessionmaker[Session], run: JobRun, error: dict[str, Any], *,
         retry: bool, backoff_s: float, progress: dict[str, Any]) -> str:
    """Write a run's failure: queued again (after a back-off) or failed. The state."""
    again = retry and run.attempt < run.max_attempts
    delay = backoff_s * 2 ** (run.attempt - 1)
    values: dict[str, Any] = (
        {"state": "queued", "heartbeat_at": None,
         "run_after": func.clock_timestamp() + timedelta(seconds=delay)}
        if again else {"state": "failed", "finished_at": func.clock_timestamp()})
    try:
        with factory() as s, s.begin():
            s.execute(_this_run(run).values(error=error, **values, **progress))
    except Exception:  # the lease expires and the job is taken again
        log.exception("job %d: its failure could not be written", run.id)
    return values["state"]


def run_one(factory: sessionmaker[Session], run: JobRun, *,
            heartbeat_s: float = HEARTBEAT_S, retry_backoff_s: float = RETRY_BACKOFF_S
            ) -> str:
    """Run a taken job to its end; the state it ended in (queued again after a failure
    that is retried; "lost" when another worker took it over meanwhile)."""
    fn = handler_for(run.kind)
    if fn is None:
        return _end(factory, run, {
            "status": 500, "code": "unknown_job_kind",
            "message": f"no handler is registered for job kind {run.kind!r}",
            "extra": {"kind": run.kind}}, retry=False, backoff_s=0, progress={})
    progress = Progress(factory, run, heartbeat_s)
    progress.start()
    try:
        with factory() as session, session.begin():
            blob = session.scalar(sa_select(JobBlob.data).where(JobBlob.job_id == run.id))
            run = replace(run, blob=blob)
            result = _result(fn(session, run, progress))
            progress.stop()  # no heartbeat races the end
            done = session.execute(_this_run(run).values(
                state="done", result=result, error=None, heartbeat_at=func.clock_timestamp(),
                finished_at=func.clock_timestamp(), **progress.values()))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise _LeaseLost
        log.info("job %d (%s) done", run.id, run.kind)
        return "done"
    except _LeaseLost:
        log.warning("job %d (%s): taken over by another worker; this run's work was rolled "
                    "back", run.id, run.kind)
        return "lost"
    except GridopsError as e:
        progress.stop()
        log.info("job %d (%s) failed: %s %s", run.id, run.kind, e.status, e.detail)
        return _end(factory, run, error_fields(e), retry=e.status >= 500,
                    backoff_s=retry_backoff_s, progress=progress.values())
    except Exception as e:
        progress.stop()
        log.exception("job %d (%s): attempt %d of %d failed", run.id, run.kind, run.attempt,
                      run.max_attempts)
        return _end(factory, run, error_fields(e) | {"extra": {"attempt": run.attempt}},
                    retry=True, backoff_s=retry_backoff_s, progress=progress.values())
    finally:
        progress.stop()


def run_pending(factory: sessionmaker[Session], once: bool = True, *,
                stop: threading.Event | None = None, worker: str | None = None,
                lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S,
                poll_s: float = POLL_S, retry_backoff_s: float = RETRY_BACKOFF_S,
                max_jobs: int | None = None) -> int:
    """Run ready jobs in this thread: with once, until none is ready; else until stop is
    set, looking for work every poll_s. Stops early at max_jobs or when stop is set (after
    the job in hand). How many jobs it ran."""
    stop = stop or threading.Event()
    worker = worker or worker_name()
    ran = 0
    while not stop.is_set() and (max_jobs is None or ran < max_jobs):
        run = _take(factory, worker, lease_s)
        if run is None:
            if once:
                break
            stop.wait(poll_s)
            continue
        run_one(factory, run, heartbeat_s=heartbeat_s, retry_backoff_s=retry_backoff_s)
        ran += 1
    return ran


class JobWorker(BackgroundLoop):
    """Runs jobs in a server worker's background thread: woken by NOTIFY on gridops_jobs,
    and looking every poll_s anyway (a NOTIFY missed while reconnecting, a retry whose
    back-off ended, a lease that expired). One per API worker; SKIP LOCKED shares the work.
    Off with GRIDOPS_JOBS_WORKER=false. A job still running at stop() is left to its
    thread (a daemon): if the process ends first, the job is taken again after its lease."""

    name = "gridops-jobs"

    def __init__(self, factory: sessionmaker[Session], settings: Settings, *,
                 poll_s: float = POLL_S, lease_s: float = LEASE_S,
                 heartbeat_s: float = HEARTBEAT_S,
                 retry_backoff_s: float = RETRY_BACKOFF_S) -> None:
        super().__init__()
        self._factory = factory
        self._settings = settings
        self._poll_s = poll_s
        self._lease_s = lease_s
        self._heartbeat_s = heartbeat_s
        self._retry_backoff_s = retry_backoff_s
        bind = factory.kw.get("bind")
        self._dsn = (sqlalchemy_url(bind.url.render_as_string(hide_password=False))
                     .replace("postgresql+psycopg2://", "postgresql://")
                     if isinstance(bind, Engine) else None)

    def enabled(self) -> bool:
        """Off when GRIDOPS_JOBS_WORKER is false."""
        return self._settings.jobs_worker

    def _listen(self) -> Any:
        if self._dsn is None:
            return None
        try:
            conn = psycopg2.connect(self._dsn)
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            return conn
        except Exception:
            log.warning("job worker: cannot LISTEN (polling every %.1f s)", self._poll_s,
                        exc_info=True)
            return None

    def _wait(self, conn: Any, stop: threading.Event) -> Any:
        """Until a NOTIFY, poll_s or stop; the listening connection (None if it was lost)."""
        deadline = time.monotonic() + self._poll_s
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if conn is None:
                stop.wait(min(left, 0.2))
                continue
            try:
                if select.select([conn], [], [], min(left, 0.2)) != ([], [], []):
                    conn.poll()
                    if conn.notifies:
                        conn.notifies.clear()
                        return conn
            except Exception:
                log.warning("job worker lost its LISTEN connection", exc_info=True)
                with contextlib.suppress(Exception):
                    conn.close()
                return None
        return conn

    def run(self, stop: threading.Event) -> None:
        """Run what is ready, wait for a NOTIFY or the poll, again, until stopped."""
        conn = None
        worker = worker_name()
        while not stop.is_set():
            if conn is None:
                conn = self._listen()  # before looking: nothing submitted meanwhile is missed
            try:
                run_pending(self._factory, once=True, stop=stop, worker=worker,
                            lease_s=self._lease_s, heartbeat_s=self._heartbeat_s,
                            retry_backoff_s=self._retry_backoff_s)
            except Exception:
                log.exception("job worker: taking a job failed; trying again")
            conn = self._wait(conn, stop)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
