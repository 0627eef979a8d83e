"""`python -m spatial.warm`: compile the resolver's numba kernels into their on-disk cache
(`__pycache__`, numba's cache=True) once, at set-up, so that the first index a server or a
benchmark builds does not pay for compiling them (several seconds on a fresh checkout,
and again after an edit of spatial/)."""

from __future__ import annotations

import time

import numpy as np
from shapely import MultiPolygon, box

from spatial import h3index
from spatial.index import GridIndex


def warm() -> float:
    """Build a two-grid index and run every compiled path once; seconds taken."""
    t0 = time.perf_counter()
    geoms = [MultiPolygon([box(121.0, 31.0, 121.01, 31.01)]),
             MultiPolygon([box(121.01, 31.0, 121.02, 31.01), box(121.03, 31.0, 121.04, 31.01)])]
    idx = GridIndex.build(0, ["A", "B"], ["A", "B"], geoms)
    lon = np.linspace(120.99, 121.05, 257)
    lat = np.linspace(30.99, 31.02, 257)
    idx.lookup(lon, lat)
    idx.lookup(lon, lat, staged=True)  # large batches on large tables
    idx.lookup_with_cells(lon, lat)
    idx.lookup_one(121.005, 31.005)
    idx.nearest(np.array([121.1, 0.0]), np.array([31.1, 0.0]))
    h3index.cells_for_points(lon, lat, 11)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"setup: numba kernels compiled and cached in {warm():.1f} s")
