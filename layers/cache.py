"""A small time-bounded cache for slow-changing answers (grid outlines of a generation,
chronic spots, the wall's counts), so that many screens refreshing do not recompute them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class TTLCache:
    """Values by key, made anew when older than their time to live; at most `size` kept."""

    def __init__(self, ttl_s: float = 300.0, size: int = 64) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._lock = threading.Lock()
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._making: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, make: Callable[[], Any], ttl_s: float | None = None) -> Any:
        """The cached value of key, made anew when older than the ttl; callers that miss
        together wait for one of them to make it (no stampede when a value expires)."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and time.monotonic() - hit[0] < ttl:
                return hit[1]
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                hit = self._data.get(key)
            if hit is not None and time.monotonic() - hit[0] < ttl:
                return hit[1]  # made by the caller this one waited for
            value = make()
            with self._lock:
                self._data[key] = (time.monotonic(), value)
                if len(self._data) > self.size:
                    old = next(iter(self._data))
                    self._data.pop(old)
                    self._making.pop(old, None)
        return value
