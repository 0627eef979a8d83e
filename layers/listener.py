"""Follow PostgreSQL NOTIFY channels in a background thread (one per worker process)."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine

from layers.db import sqlalchemy_url

log = logging.getLogger(__name__)


class Listener:
    """LISTEN on channels and call their callbacks (also once at connect, to catch up)."""

    def __init__(self, engine: Engine, callbacks: dict[str, Callable[[], object]]) -> None:
        self._dsn = sqlalchemy_url(engine.url.render_as_string(hide_password=False)).replace(
            "postgresql+psycopg2://", "postgresql://")
        self._callbacks = callbacks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start following; returns at once."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="gridops-listen",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _fire(self, channel: str) -> None:
        try:
            self._callbacks[channel]()
        except Exception:
            log.exception("rebuild after NOTIFY %s failed", channel)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn = psycopg2.connect(self._dsn)
                conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
                with conn.cursor() as cur:
                    for ch in self._callbacks:
                        cur.execute(f"LISTEN {ch}")
                for ch in self._callbacks:  # catch up with what happened while away
                    self._fire(ch)
                while not self._stop.is_set():
                    if select.select([conn], [], [], 0.2) == ([], [], []):
                        continue
                    conn.poll()
                    fired = {n.channel for n in conn.notifies}
                    conn.notifies.clear()
                    for ch in fired:  # several notifies of one channel: one rebuild
                        self._fire(ch)
                conn.close()
            except Exception:
                log.exception("listener lost its connection; retrying in 1 s")
                self._stop.wait(1.0)
