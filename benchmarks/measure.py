"""Timing (wall and process CPU), memory (RSS) and percentiles."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of one run (CPU: every thread of this process)."""

    wall: float
    cpu: float

    @property
    def cores(self) -> float:
        """Cores busy on average (CPU / wall)."""
        return self.cpu / self.wall if self.wall > 0 else float("nan")


def timed(fn: Callable[[], T]) -> tuple[Timing, T]:
    """Run once; its timing and result."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    t1, c1 = time.perf_counter(), time.process_time()
    return Timing(t1 - t0, c1 - c0), out


def best_of(fn: Callable[[], T], repeats: int = 3, *, budget_s: float = 60.0
            ) -> tuple[Timing, T, int]:
    """Fastest of up to `repeats` runs (fewer once `budget_s` is spent); timing, result, runs."""
    best: Timing | None = None
    result: T | None = None
    spent = 0.0
    runs = 0
    for _ in range(max(1, repeats)):
        t, out = timed(fn)
        runs += 1
        spent += t.wall
        if best is None or t.wall < best.wall:
            best, result = t, out
        if spent >= budget_s:
            break
    assert best is not None
    return best, result, runs  # type: ignore[return-value]


def rss_bytes() -> int:
    """Resident set size of this process now (/proc/self/statm)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentiles_us(ns: np.ndarray, qs: tuple[float, ...] = (50, 99)) -> list[float]:
    """Percentiles of nanosecond samples, in microseconds."""
    return [float(np.percentile(ns, q)) / 1000.0 for q in qs]
