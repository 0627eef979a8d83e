"""The long-lived data of a worker is frozen out of the collector's way; what a rebuild
leaves behind is still collected: a cycle by the full settle, the worker's own structures
(which hold no cycle) by their reference counts the moment they are dropped."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine

from layers import heap
from layers.db import make_sessionmaker
from layers.ownership_store import OwnershipRegistry
from layers.resolver import IndexRegistry
from layers.settings import Settings


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture()
def no_collector() -> Iterator[None]:
    """The cyclic collector off: what is freed now is freed by reference counts."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def test_full_settle_freezes_what_lives_and_collects_what_does_not() -> None:
    kept = [_Node() for _ in range(100)]
    gone = _Node()
    ref = weakref.ref(gone)
    heap.settle()
    assert gc.get_freeze_count() >= len(kept)
    del gone  # garbage after the freeze: still in a frozen cycle...
    assert ref() is not None
    heap.settle()  # ...until the next full settle
    assert ref() is None
    assert all(isinstance(k, _Node) for k in kept)
    gc.unfreeze()


def test_light_settle_collects_the_young_and_freezes_the_rest() -> None:
    gc.collect()
    young = _Node()
    ref = weakref.ref(young)
    del young  # a cycle made since the last collection
    kept = _Node()
    before = gc.get_freeze_count()
    heap.settle(full=False)
    assert ref() is None
    assert gc.get_freeze_count() > before and kept.me is kept
    gc.unfreeze()


def test_a_switch_frees_the_old_index_and_snapshot_without_the_collector(
        demo_loaded: int, engine: Engine, settings: Settings, no_collector: None) -> None:
    """The light settle after a switch is only safe while the index (nearest-grid
    structure included) and the ownership snapshot hold no reference cycle: with the
    collector off, dropping them must free them."""
    factory = make_sessionmaker(engine)
    indexes = IndexRegistry(factory, settings)
    owners = OwnershipRegistry(factory, settings)
    idx = indexes.refresh()
    assert idx is not None
    idx.nearest(np.array([0.0]), np.array([0.0]))  # the far path's KD-tree too
    snap = owners.refresh()
    refs = [weakref.ref(idx), weakref.ref(idx._nearest), weakref.ref(snap)]
    del idx, snap
    indexes._active = None  # what a switch does to the old one
    owners._current = None
    assert [r() is None for r in refs] == [True, True, True]
