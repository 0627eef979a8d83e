"""The worker's long-lived data (the grid index, the ownership snapshot) kept out of the
garbage collector's way: a full collection walks every tracked object, and with those
structures loaded it stopped a worker for 100-150 ms every few seconds under intake load
(the long tail of POST /cases). After a rebuild the old data is collected once and
everything alive is frozen (gc.freeze: a permanent generation the collector skips);
objects made per request are collected as before."""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()


def settle() -> int:
    """Collect what a rebuild left behind, then freeze what is alive; returns how many
    objects the collector now leaves alone."""
    with _lock:
        gc.unfreeze()  # what was frozen before may be garbage now (an old index)
        gc.collect()
        gc.freeze()
        return gc.get_freeze_count()
