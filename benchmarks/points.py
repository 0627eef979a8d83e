"""Random test points: uniform over the territory's bbox (expanded), the same for every method."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Bounds = tuple[float, float, float, float]


def expand(bounds: Bounds, frac: float) -> Bounds:
    """A bbox grown by `frac` of its width/height on every side."""
    x0, y0, x1, y1 = bounds
    dx, dy = (x1 - x0) * frac, (y1 - y0) * frac
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def uniform(bounds: Bounds, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform over a lon/lat bbox (float64 arrays)."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bounds
    return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)


def inside(bounds: Bounds, n: int, seed: int,
           lookup: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform over the territory itself (rejection sampling on `lookup` >= 0)."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    k = 0
    while have < n:
        x, y = uniform(bounds, max(2 * n, 1000), seed + k)
        ok = lookup(x, y) >= 0
        xs.append(x[ok])
        ys.append(y[ok])
        have += int(ok.sum())
        k += 1
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]
