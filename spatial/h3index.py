"""H3 in one place: the only module that knows h3's (lat, lng) argument order.

The vectorised binding is h3ronpy (Rust h3o): 0.35 µs a point against 0.61 µs for a
Python loop over h3-py 4.x on this machine (measured in benchmarks/). h3-py is kept for
scalar helpers (cell boundaries, string ids).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import h3
import h3.api.basic_int as h3_int
import numpy as np
import shapely
from h3ronpy import cells_to_string
from h3ronpy.vector import (
    ContainmentMode,
    cells_to_coordinates,
    cells_to_wkb_polygons,
    coordinates_to_cells,
    wkb_to_cells,
)

EARTH_RADIUS_M = 6_371_008.8

# H3 index layout: 4 mode bits, 3 reserved, 4 resolution, 7 base cell, 15 digits of 3 bits
_DIGIT_BITS = 3
_MAX_RES = 15


def cells_for_points(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (uint64) of lon/lat points in degrees."""
    lat64 = np.ascontiguousarray(lat, dtype=np.float64)
    lon64 = np.ascontiguousarray(lon, dtype=np.float64)
    if lat64.size == 0:
        return np.empty(0, dtype=np.uint64)
    return np.asarray(coordinates_to_cells(lat64, lon64, res).to_numpy(), dtype=np.uint64)


def cell_for_point(lon: float, lat: float, res: int) -> int:
    """The H3 cell (as an integer) of one lon/lat point (h3-py's C binding: no array cost)."""
    return int(h3_int.latlng_to_cell(lat, lon, res))


def digits_offset_one(cell: int, from_res: int, to_res: int) -> int:
    """digits_offset for one cell."""
    off = 0
    for r in range(from_res + 1, to_res + 1):
        off = off * 7 + ((cell >> (_DIGIT_BITS * (_MAX_RES - r))) & 7)
    return off


def cells_with_centre_in(wkb: Sequence[bytes], res: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells whose centre lies in each polygon: (cells, index of the polygon)."""
    cells: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    for i, w in enumerate(wkb):
        if w is None:
            continue
        c = np.asarray(
            wkb_to_cells([w], res, containment_mode=ContainmentMode.ContainsCentroid,
                         flatten=True).to_numpy(),
            dtype=np.uint64,
        )
        if c.size:
            cells.append(c)
            owner.append(np.full(c.size, i, dtype=np.int32))
    if not cells:
        return np.empty(0, np.uint64), np.empty(0, np.int32)
    return np.concatenate(cells), np.concatenate(owner)


def prefix(cells: np.ndarray, res: int) -> np.ndarray:
    """The cells' ancestors at resolution res, as the index's high bits (not valid ids)."""
    return cells >> np.uint64(_DIGIT_BITS * (_MAX_RES - res))


def digits_offset(cells: np.ndarray, from_res: int, to_res: int) -> np.ndarray:
    """The digits from_res+1..to_res read as one base-7 number (a dense offset)."""
    off = np.zeros(cells.shape, dtype=np.int64)
    for r in range(from_res + 1, to_res + 1):
        d = (cells >> np.uint64(_DIGIT_BITS * (_MAX_RES - r))) & np.uint64(7)
        off = off * 7 + d.astype(np.int64)
    return off


def max_circumradius_m(res: int, bounds: tuple[float, float, float, float]) -> float:
    """Largest centre-to-vertex distance of cells sampled over a lon/lat box, in metres."""
    x0, y0, x1, y1 = bounds
    worst = 0.0
    for fx in (0.0, 0.5, 1.0):
        for fy in (0.0, 0.5, 1.0):
            lon, lat = x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy
            cell = h3.latlng_to_cell(lat, lon, res)
            clat, clng = h3.cell_to_latlng(cell)
            for vlat, vlng in h3.cell_to_boundary(cell):
                worst = max(worst, haversine_m(clng, clat, vlng, vlat))
    return worst


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def cells_str(cells: np.ndarray) -> list[str]:
    """Hexadecimal ids of many cells."""
    if len(cells) == 0:
        return []
    return list(cells_to_string(np.ascontiguousarray(cells, dtype=np.uint64)).to_pylist())


def cell_str(cell: int | np.integer) -> str:
    """The usual hexadecimal cell id."""
    return format(int(cell), "x")


def cell_centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of many cells as (lon, lat) arrays."""
    if len(cells) == 0:
        return np.zeros(0), np.zeros(0)
    t = cells_to_coordinates(np.ascontiguousarray(cells, dtype=np.uint64))
    return np.asarray(t.column("lng"), dtype=np.float64), np.asarray(t.column("lat"),
                                                                    dtype=np.float64)


def cell_rings(cells: np.ndarray, decimals: int = 6) -> list[list[list[float]]]:
    """Boundaries of many cells as closed GeoJSON rings of [lon, lat], rounded."""
    if len(cells) == 0:
        return []
    wkb = cells_to_wkb_polygons(np.ascontiguousarray(cells, dtype=np.uint64)).to_pylist()
    polys = shapely.from_wkb(wkb)
    coords = np.round(shapely.get_coordinates(polys), decimals)
    counts = shapely.get_num_coordinates(polys)
    if (counts == 7).all():  # hexagons: one reshape, one tolist
        out: list[list[list[float]]] = coords.reshape(len(cells), 7, 2).tolist()
        return out
    return [c.tolist() for c in np.split(coords, np.cumsum(counts)[:-1])]
