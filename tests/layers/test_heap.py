"""The long-lived data of a worker is frozen out of the collector's way; what a rebuild
leaves behind is still collected."""

from __future__ import annotations

import gc
import weakref

from layers import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_settle_freezes_what_lives_and_collects_what_does_not() -> None:
    kept = [_Node() for _ in range(100)]
    gone = _Node()
    ref = weakref.ref(gone)
    frozen = heap.settle()
    assert frozen >= len(kept) and gc.get_freeze_count() > 0
    del gone  # garbage after the freeze: still in a frozen cycle...
    assert ref() is not None
    heap.settle()  # ...until the next rebuild settles the heap again
    assert ref() is None
    assert all(isinstance(k, _Node) for k in kept)
    gc.unfreeze()
