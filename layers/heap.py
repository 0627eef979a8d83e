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


def settle(*, full: bool = True) -> None:
    """Freeze what is alive. full: first collect everything, what was frozen before
    included (an old structure in a reference cycle); else only the young generations:
    a full collection walks the whole heap (0.3-0.4 s in a worker, every request waiting
    on the interpreter lock), which a switch of the grid cannot afford. The worker's
    structures hold no reference cycles, so the old ones are freed when the last request
    using them ends (tests/layers/test_heap.py)."""
    with _lock:
        if full:
            gc.unfreeze()  # what was frozen before may be garbage now
            gc.collect()
        else:
            gc.collect(1)
        gc.freeze()
