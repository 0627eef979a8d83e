"""Follow PostgreSQL NOTIFY channels in a background thread (one per worker process)."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine

from layers.background import BackgroundLoop
from layers.db import sqlalchemy_url

log = logging.getLogger(__name__)


class Listener(BackgroundLoop):
    """LISTEN on channels and call their callbacks (also once at connect, to catch up)."""

    name = "gridops-listen"
    join_timeout_s = 2.0

    def __init__(self, engine: Engine, callbacks: dict[str, Callable[[], object]]) -> None:
        super().__init__()
        self._dsn = sqlalchemy_url(engine.url.render_as_string(hide_password=False)).replace(
            "postgresql+psycopg2://", "postgresql://")
        self._callbacks = callbacks

    def _fire(self, channel: str) -> None:
        try:
            self._callbacks[channel]()
        except Exception:
            log.exception("rebuild after NOTIFY %s failed", channel)

    def run(self, stop: threading.Event) -> None:
        """Connect, LISTEN, fire callbacks on notifies; reconnect after a lost connection."""
        while not stop.is_set():
            try:
                conn = psycopg2.connect(self._dsn)
                conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
                with conn.cursor() as cur:
                    for ch in self._callbacks:
                        cur.execute(f"LISTEN {ch}")
                for ch in self._callbacks:  # catch up with what happened while away
                    self._fire(ch)
                while not stop.is_set():
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
                stop.wait(1.0)
