"""One shape for the background threads of a worker (the NOTIFY listener, the escalation
scheduler): started once, stopped by an event, joined on shutdown."""

from __future__ import annotations

import threading


class BackgroundLoop:
    """A daemon thread running `run(stop)` until `stop()` is called."""

    name = "gridops-background"
    join_timeout_s = 5.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def enabled(self) -> bool:
        """Whether start() starts anything (a loop can be switched off by its settings)."""
        return True

    def start(self) -> None:
        """Start the loop; returns at once (a second call does nothing)."""
        if self._thread is None and self.enabled():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, args=(self._stop,),
                                            name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the loop to stop and wait for it (up to join_timeout_s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout_s)
            self._thread = None

    def run(self, stop: threading.Event) -> None:
        """The loop's body: return when stop is set."""
        raise NotImplementedError
