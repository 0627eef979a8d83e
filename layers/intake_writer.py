"""Group commit for case intake: the reports that arrive while the database is busy are
stored together, one transaction for all of them, by a writer thread of the worker.

A batch costs two statements and a commit however many reports it holds
(layers.intake.store_batch), one trip to the thread instead of one per report. Reports in
one batch see each other (the second report of a spot joins the first; a repeated
idempotency key returns the first case). If anything in a batch
fails, the batch is rolled back and its reports are stored one by one, each in its own
transaction, so a report fails only for its own fault and nothing is stored twice. An answer
is given only after its transaction committed."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from layers.case_queries import original_ref
from layers.case_view import view
from layers.cases import Actor, Intake, Stored, check_channel
from layers.intake import store_batch
from layers.rating import rating_key
from layers.settings import Settings

log = logging.getLogger(__name__)

UNIQUE_VIOLATION = "23505"
Transactions = Callable[[], AbstractContextManager[Session]]
Answer = tuple[dict[str, Any], bool]  # the case as the caller may see it, created


@dataclass
class _Pending:
    report: Intake
    actor: Actor
    private: bool  # may the caller see the reporter's contact
    future: asyncio.Future[Answer]  # on the caller's event loop


Outcome = tuple[_Pending, Answer | None, BaseException | None]


class OwnConnection:
    """Transactions on the writer's own connection: always the same backend (its caches
    warm, the intake statements prepared once), no pool checkout and no ping per batch;
    after an error it is closed and the next transaction opens another."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        """A session in a transaction on the connection; committed on exit."""
        if self._conn is None:
            self._conn = self._engine.connect()
        conn = self._conn
        try:
            with conn.begin(), Session(bind=conn) as session:
                yield session
        except BaseException:
            self.close()  # whatever went wrong, the next one starts on a fresh connection
            raise

    def close(self) -> None:
        """Give the connection back (at shutdown, or after an error)."""
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._conn = None


class IntakeWriter:
    """Stores reports for one worker process; `submit` from the event loop."""

    def __init__(self, transactions: Transactions, settings: Settings,
                 max_batch: int = 64) -> None:
        self._transactions = transactions  # a session in a transaction that commits on exit
        self._settings = settings
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        # this worker's counters (GET /health shows them; the tests read them)
        self.batches = 0  # transactions that stored reports
        self.stored = 0  # new cases (merged duplicates included)
        self.replayed = 0  # retried requests answered with the case they made before
        self.failed = 0  # reports answered with an error
        self.fallbacks = 0  # batches rolled back and stored one by one
        self.largest = 0  # reports in the largest batch
        self.last_at: float | None = None  # when the last batch was committed (epoch s)

    async def submit(self, report: Intake, actor: Actor, *, private: bool) -> Answer:
        """Store a report; returns (the case's view, created) once it is committed."""
        check_channel(report.channel)  # the caller's fault: before it joins a batch
        item = _Pending(report, actor, private, asyncio.get_running_loop().create_future())
        with self._lock:
            if self._stop:
                raise RuntimeError("the intake writer has stopped")
            self._pending.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gridops-intake",
                                                daemon=True)
                self._thread.start()
        self._wake.set()
        return await item.future

    def stats(self) -> dict[str, Any]:
        """This worker's intake counters since it started, and what is queued now."""
        with self._lock:
            queued = len(self._pending)
        return {"worker_pid": os.getpid(), "running": self._thread is not None
                and self._thread.is_alive(), "queued": queued, "batches": self.batches,
                "stored": self.stored, "replayed": self.replayed, "failed": self.failed,
                "fallbacks": self.fallbacks, "largest_batch": self.largest,
                "last_batch_at": self.last_at}

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store what is queued, then end the thread."""
        with self._lock:
            self._stop = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()  # before taking: a report queued from now on wakes us again
            while True:
                with self._lock:
                    batch = self._pending[:self._max_batch]
                    del self._pending[:self._max_batch]
                    stopping = self._stop
                if not batch:
                    break
                try:
                    self._write(batch)
                except BaseException as e:  # never leave a caller waiting for ever
                    log.exception("the intake writer failed on a batch of %d", len(batch))
                    self.failed += len(batch)
                    _answer([(p, None, e) for p in batch])
            if stopping:
                return

    def _write(self, batch: list[_Pending]) -> None:
        outcomes: list[Outcome] = []
        try:
            with self._transactions() as session:
                answers = self._store(session, batch)
            outcomes = [(p, a, None) for p, a in zip(batch, answers, strict=True)]
        except Exception:
            if len(batch) > 1:
                self.fallbacks += 1
                log.warning("a batch of %d reports failed; storing them one by one",
                            len(batch), exc_info=True)
            for p in batch:
                try:
                    outcomes.append((p, self._store_one(p), None))
                except Exception as one:  # this report's own error, for its caller
                    outcomes.append((p, None, one))
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        self.last_at = time.time()
        for _, a, e in outcomes:
            if e is not None:
                self.failed += 1
            elif a is not None and a[1]:
                self.stored += 1
            else:
                self.replayed += 1
        _answer(outcomes)

    def _store(self, session: Session, batch: list[_Pending]) -> list[Answer]:
        got = store_batch(session, [(p.report, p.actor) for p in batch], self._settings)
        key = rating_key(session) if any(p.private for p in batch) else None
        out: list[Answer] = []
        for p, g in zip(batch, got, strict=True):
            if isinstance(g, Stored):  # new
                out.append((view(g, private=p.private, duplicate_ref=g.duplicate_ref,
                                 key=key), True))
            else:  # a retried request: the case it made before
                out.append((view(g, private=p.private, duplicate_ref=original_ref(session, g),
                                 key=key), False))
        return out

    def _store_one(self, p: _Pending) -> Answer:
        """One report in its own transaction; again if a unique key was taken meanwhile (a
        reference drawn twice, or the same retried request stored by another worker: the
        next try finds it)."""
        for attempt in range(3):
            try:
                with self._transactions() as session:
                    return self._store(session, [p])[0]
            except IntegrityError as e:
                if attempt == 2 or getattr(e.orig, "pgcode", None) != UNIQUE_VIOLATION:
                    raise
        raise AssertionError("unreachable")


def _answer(outcomes: list[Outcome]) -> None:
    """From the writer thread: each caller's answer or error, on its own event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for o in outcomes:
        by_loop.setdefault(o[0].future.get_loop(), []).append(o)
    for loop, done in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, done)
        except RuntimeError:  # the loop has closed: nobody waits for these answers
            log.warning("%d intake answers had no one to go to", len(done))


def _deliver(done: list[Outcome]) -> None:
    """On the event loop: hand each caller its answer or its error."""
    for p, answer, exc in done:
        fut = p.future
        if fut.done():  # the request was cancelled (client gone); the case stays stored
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            assert answer is not None
            fut.set_result(answer)
