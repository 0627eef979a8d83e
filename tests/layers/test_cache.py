"""The TTL cache: values kept for their time, made once when many miss together."""

from __future__ import annotations

import threading
import time

from layers.cache import TTLCache


def test_values_are_kept_for_their_ttl_and_made_once_under_contention() -> None:
    cache = TTLCache(ttl_s=60)
    made = []

    def make() -> int:
        made.append(1)
        time.sleep(0.05)
        return len(made)

    threads = [threading.Thread(target=cache.get, args=("k", make)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and cache.get("k", make) == 1
    assert cache.get("k", make, ttl_s=0) == 2  # expired: made anew


def test_the_oldest_key_goes_when_full() -> None:
    cache = TTLCache(size=2)
    for k in "abc":
        cache.get(k, lambda k=k: k)
    calls = []
    cache.get("a", lambda: calls.append(1) or "a2")
    assert calls == [1]
