"""H3 in one place: the only module that knows h3's (lat, lng) argument order.

Batch cells come from a numba port of H3 v4.5.0's latLngToCell (the C library h3-py 4.5
binds; below), equal to h3-py's cells: the projection without inverse trigonometry (H3's
own arithmetic wherever a rounding could matter), and the coarse digits of a batch cached
by their parent at 4 resolutions up (measured in benchmarks/: 0.17 µs a point on a city,
h3ronpy's vectorised call (Rust h3o) 0.35 µs). h3ronpy is kept for polygon fills and
string ids, h3-py for scalar helpers (one point, cell boundaries).
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
from numba import njit

EARTH_RADIUS_M = 6_371_008.8

# H3 index layout: 4 mode bits, 3 reserved, 4 resolution, 7 base cell, 15 digits of 3 bits
_DIGIT_BITS = 3
_MAX_RES = 15


def cells_for_points(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (uint64) of lon/lat points in degrees: the numba port of H3's latLngToCell
    below (equal to h3-py's cells; 0 for a non-finite point)."""
    return cells_for_points_numba(lon, lat, res)


def cells_for_points_h3ronpy(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (uint64) by h3ronpy (Rust h3o), the vectorised binding used before."""
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


# H3 v4.5.0 tables (src/h3lib/lib/baseCells.c, faceijk.c), Apache-2.0, Uber Technologies
_FACE_IJK_BASE_CELLS = (  # [face][i][j][k] -> (base cell, ccw 60° rotations)
    16, 0, 18, 0, 24, 0, 33, 0, 30, 0, 32, 3, 49, 1, 48, 3, 50, 3,
    8, 0, 5, 5, 10, 5, 22, 0, 16, 0, 18, 0, 41, 1, 33, 0, 30, 0,
    4, 0, 0, 5, 2, 5, 15, 1, 8, 0, 5, 5, 31, 1, 22, 0, 16, 0,
    2, 0, 6, 0, 14, 0, 10, 0, 11, 0, 17, 3, 24, 1, 23, 3, 25, 3,
    0, 0, 1, 5, 9, 5, 5, 0, 2, 0, 6, 0, 18, 1, 10, 0, 11, 0,
    4, 1, 3, 5, 7, 5, 8, 1, 0, 0, 1, 5, 16, 1, 5, 0, 2, 0,
    7, 0, 21, 0, 38, 0, 9, 0, 19, 0, 34, 3, 14, 1, 20, 3, 36, 3,
    3, 0, 13, 5, 29, 5, 1, 0, 7, 0, 21, 0, 6, 1, 9, 0, 19, 0,
    4, 2, 12, 5, 26, 5, 0, 1, 3, 0, 13, 5, 2, 1, 1, 0, 7, 0,
    26, 0, 42, 0, 58, 0, 29, 0, 43, 0, 62, 3, 38, 1, 47, 3, 64, 3,
    12, 0, 28, 5, 44, 5, 13, 0, 26, 0, 42, 0, 21, 1, 29, 0, 43, 0,
    4, 3, 15, 5, 31, 5, 3, 1, 12, 0, 28, 5, 7, 1, 13, 0, 26, 0,
    31, 0, 41, 0, 49, 0, 44, 0, 53, 0, 61, 3, 58, 1, 65, 3, 75, 3,
    15, 0, 22, 5, 33, 5, 28, 0, 31, 0, 41, 0, 42, 1, 44, 0, 53, 0,
    4, 4, 8, 5, 16, 5, 12, 1, 15, 0, 22, 5, 26, 1, 28, 0, 31, 0,
    50, 0, 48, 0, 49, 3, 32, 0, 30, 3, 33, 3, 24, 3, 18, 3, 16, 3,
    70, 0, 67, 0, 66, 3, 52, 3, 50, 0, 48, 0, 37, 3, 32, 0, 30, 3,
    83, 0, 87, 3, 85, 3, 74, 3, 70, 0, 67, 0, 57, 1, 52, 3, 50, 0,
    25, 0, 23, 0, 24, 3, 17, 0, 11, 3, 10, 3, 14, 3, 6, 3, 2, 3,
    45, 0, 39, 0, 37, 3, 35, 3, 25, 0, 23, 0, 27, 3, 17, 0, 11, 3,
    63, 0, 59, 3, 57, 3, 56, 3, 45, 0, 39, 0, 46, 3, 35, 3, 25, 0,
    36, 0, 20, 0, 14, 3, 34, 0, 19, 3, 9, 3, 38, 3, 21, 3, 7, 3,
    55, 0, 40, 0, 27, 3, 54, 3, 36, 0, 20, 0, 51, 3, 34, 0, 19, 3,
    72, 0, 60, 3, 46, 3, 73, 3, 55, 0, 40, 0, 71, 3, 54, 3, 36, 0,
    64, 0, 47, 0, 38, 3, 62, 0, 43, 3, 29, 3, 58, 3, 42, 3, 26, 3,
    84, 0, 69, 0, 51, 3, 82, 3, 64, 0, 47, 0, 76, 3, 62, 0, 43, 3,
    97, 0, 89, 3, 71, 3, 98, 3, 84, 0, 69, 0, 96, 3, 82, 3, 64, 0,
    75, 0, 65, 0, 58, 3, 61, 0, 53, 3, 44, 3, 49, 3, 41, 3, 31, 3,
    94, 0, 86, 0, 76, 3, 81, 3, 75, 0, 65, 0, 66, 3, 61, 0, 53, 3,
    107, 0, 104, 3, 96, 3, 101, 3, 94, 0, 86, 0, 85, 3, 81, 3, 75, 0,
    57, 0, 59, 0, 63, 3, 74, 0, 78, 3, 79, 3, 83, 3, 92, 3, 95, 3,
    37, 0, 39, 3, 45, 3, 52, 0, 57, 0, 59, 0, 70, 3, 74, 0, 78, 3,
    24, 0, 23, 3, 25, 3, 32, 3, 37, 0, 39, 3, 50, 3, 52, 0, 57, 0,
    46, 0, 60, 0, 72, 3, 56, 0, 68, 3, 80, 3, 63, 3, 77, 3, 90, 3,
    27, 0, 40, 3, 55, 3, 35, 0, 46, 0, 60, 0, 45, 3, 56, 0, 68, 3,
    14, 0, 20, 3, 36, 3, 17, 3, 27, 0, 40, 3, 25, 3, 35, 0, 46, 0,
    71, 0, 89, 0, 97, 3, 73, 0, 91, 3, 103, 3, 72, 3, 88, 3, 105, 3,
    51, 0, 69, 3, 84, 3, 54, 0, 71, 0, 89, 0, 55, 3, 73, 0, 91, 3,
    38, 0, 47, 3, 64, 3, 34, 3, 51, 0, 69, 3, 36, 3, 54, 0, 71, 0,
    96, 0, 104, 0, 107, 3, 98, 0, 110, 3, 115, 3, 97, 3, 111, 3, 119, 3,
    76, 0, 86, 3, 94, 3, 82, 0, 96, 0, 104, 0, 84, 3, 98, 0, 110, 3,
    58, 0, 65, 3, 75, 3, 62, 3, 76, 0, 86, 3, 64, 3, 82, 0, 96, 0,
    85, 0, 87, 0, 83, 3, 101, 0, 102, 3, 100, 3, 107, 3, 112, 3, 114, 3,
    66, 0, 67, 3, 70, 3, 81, 0, 85, 0, 87, 0, 94, 3, 101, 0, 102, 3,
    49, 0, 48, 3, 50, 3, 61, 3, 66, 0, 67, 3, 75, 3, 81, 0, 85, 0,
    95, 0, 92, 0, 83, 0, 79, 0, 78, 0, 74, 3, 63, 1, 59, 3, 57, 3,
    109, 0, 108, 0, 100, 5, 93, 1, 95, 0, 92, 0, 77, 1, 79, 0, 78, 0,
    117, 4, 118, 5, 114, 5, 106, 1, 109, 0, 108, 0, 90, 1, 93, 1, 95, 0,
    90, 0, 77, 0, 63, 0, 80, 0, 68, 0, 56, 3, 72, 1, 60, 3, 46, 3,
    106, 0, 93, 0, 79, 5, 99, 1, 90, 0, 77, 0, 88, 1, 80, 0, 68, 0,
    117, 3, 109, 5, 95, 5, 113, 1, 106, 0, 93, 0, 105, 1, 99, 1, 90, 0,
    105, 0, 88, 0, 72, 0, 103, 0, 91, 0, 73, 3, 97, 1, 89, 3, 71, 3,
    113, 0, 99, 0, 80, 5, 116, 1, 105, 0, 88, 0, 111, 1, 103, 0, 91, 0,
    117, 2, 106, 5, 90, 5, 121, 1, 113, 0, 99, 0, 119, 1, 116, 1, 105, 0,
    119, 0, 111, 0, 97, 0, 115, 0, 110, 0, 98, 3, 107, 1, 104, 3, 96, 3,
    121, 0, 116, 0, 103, 5, 120, 1, 119, 0, 111, 0, 112, 1, 115, 0, 110, 0,
    117, 1, 113, 5, 105, 5, 118, 1, 121, 0, 116, 0, 114, 1, 120, 1, 119, 0,
    114, 0, 112, 0, 107, 0, 100, 0, 102, 0, 101, 3, 83, 1, 87, 3, 85, 3,
    118, 0, 120, 0, 115, 5, 108, 1, 114, 0, 112, 0, 92, 1, 100, 0, 102, 0,
    117, 0, 121, 5, 119, 5, 109, 1, 118, 0, 120, 0, 95, 1, 108, 1, 114, 0,
)
_BASE_CELL_DATA = (  # home face, i, j, k, is pentagon, cw offset faces (2)
    1, 1, 0, 0, 0, 0, 0, 2, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    2, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 1, -1, -1, 1, 1, 1, 0, 0, 0, 0,
    1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,
    2, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0,
    3, 1, 0, 0, 0, 0, 0, 3, 1, 1, 0, 0, 0, 0, 11, 2, 0, 0, 1, 2, 6,
    4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1, 0, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 0, 0, 0, 7, 0, 0, 1, 0, 0, 0,
    2, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0,
    10, 2, 0, 0, 1, 1, 5, 6, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0,
    11, 1, 0, 0, 0, 0, 0, 4, 1, 1, 0, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0,
    0, 0, 1, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 5, 0, 1, 0, 0, 0, 0,
    0, 0, 1, 0, 0, 0, 0, 7, 0, 1, 0, 0, 0, 0, 11, 1, 1, 0, 0, 0, 0,
    7, 0, 0, 0, 0, 0, 0, 10, 1, 0, 0, 0, 0, 0, 12, 2, 0, 0, 1, 3, 7,
    6, 1, 0, 1, 0, 0, 0, 7, 1, 0, 1, 0, 0, 0, 4, 0, 0, 1, 0, 0, 0,
    3, 0, 0, 1, 0, 0, 0, 3, 0, 1, 1, 0, 0, 0, 4, 0, 1, 0, 0, 0, 0,
    6, 1, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 8, 0, 0, 1, 0, 0, 0,
    5, 0, 0, 1, 0, 0, 0, 14, 2, 0, 0, 1, 0, 9, 5, 0, 0, 0, 0, 0, 0,
    12, 1, 0, 0, 0, 0, 0, 10, 1, 1, 0, 0, 0, 0, 4, 0, 1, 1, 0, 0, 0,
    12, 1, 1, 0, 0, 0, 0, 7, 1, 0, 0, 0, 0, 0, 11, 0, 1, 0, 0, 0, 0,
    10, 0, 0, 0, 0, 0, 0, 13, 2, 0, 0, 1, 4, 8, 10, 0, 0, 1, 0, 0, 0,
    11, 0, 0, 1, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0,
    6, 2, 0, 0, 1, 11, 15, 8, 0, 0, 0, 0, 0, 0, 9, 0, 0, 1, 0, 0, 0,
    14, 1, 0, 0, 0, 0, 0, 5, 1, 0, 1, 0, 0, 0, 16, 0, 1, 1, 0, 0, 0,
    8, 1, 0, 1, 0, 0, 0, 5, 1, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0,
    7, 2, 0, 0, 1, 12, 16, 12, 0, 1, 0, 0, 0, 0, 10, 0, 1, 0, 0, 0, 0,
    9, 0, 0, 0, 0, 0, 0, 13, 1, 0, 0, 0, 0, 0, 16, 0, 0, 1, 0, 0, 0,
    15, 0, 1, 1, 0, 0, 0, 15, 0, 1, 0, 0, 0, 0, 16, 0, 1, 0, 0, 0, 0,
    14, 1, 1, 0, 0, 0, 0, 13, 1, 1, 0, 0, 0, 0, 5, 2, 0, 0, 1, 10, 19,
    8, 1, 0, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 9, 1, 0, 1, 0, 0, 0,
    14, 0, 0, 1, 0, 0, 0, 17, 0, 0, 1, 0, 0, 0, 12, 0, 0, 1, 0, 0, 0,
    16, 0, 0, 0, 0, 0, 0, 17, 0, 1, 1, 0, 0, 0, 15, 0, 0, 1, 0, 0, 0,
    16, 1, 0, 1, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0,
    13, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 1, 13, 17, 13, 0, 1, 0, 0, 0, 0,
    17, 1, 0, 1, 0, 0, 0, 19, 0, 1, 0, 0, 0, 0, 14, 0, 1, 0, 0, 0, 0,
    19, 0, 1, 1, 0, 0, 0, 17, 0, 1, 0, 0, 0, 0, 13, 0, 0, 1, 0, 0, 0,
    17, 0, 0, 0, 0, 0, 0, 16, 1, 0, 0, 0, 0, 0, 9, 2, 0, 0, 1, 14, 18,
    15, 1, 0, 1, 0, 0, 0, 15, 1, 0, 0, 0, 0, 0, 18, 0, 1, 1, 0, 0, 0,
    18, 0, 0, 1, 0, 0, 0, 19, 0, 0, 1, 0, 0, 0, 17, 1, 0, 0, 0, 0, 0,
    19, 0, 0, 0, 0, 0, 0, 18, 0, 1, 0, 0, 0, 0, 18, 1, 0, 1, 0, 0, 0,
    19, 2, 0, 0, 1, -1, -1, 19, 1, 0, 0, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0,
    19, 1, 0, 1, 0, 0, 0, 18, 1, 0, 0, 0, 0, 0,
)
_FACE_CENTRE_XYZ = (
    0.2199307791404606, 0.6583691780274996, 0.7198475378926182,
    -0.2139234834501421, 0.1478171829550703, 0.9656017935214205,
    0.1092625278784797, -0.4811951572873210, 0.8697775121287253,
    0.7428567301586791, -0.3593941678278028, 0.5648005936517033,
    0.8112534709140969, 0.3448953237639384, 0.4721387736413930,
    -0.1055498149613921, 0.9794457296411413, 0.1718874610009365,
    -0.8075407579970092, 0.1533552485898818, 0.5695261994882688,
    -0.2846148069787907, -0.8644080972654206, 0.4144792552473539,
    0.7405621473854482, -0.6673299564565524, -0.0789837646326737,
    0.8512303986474293, 0.4722343788582681, -0.2289137388687808,
    -0.7405621473854481, 0.6673299564565524, 0.0789837646326737,
    -0.8512303986474292, -0.4722343788582682, 0.2289137388687808,
    0.1055498149613919, -0.9794457296411413, -0.1718874610009365,
    0.8075407579970092, -0.1533552485898819, -0.5695261994882688,
    0.2846148069787908, 0.8644080972654204, -0.4144792552473539,
    -0.7428567301586791, 0.3593941678278027, -0.5648005936517033,
    -0.8112534709140971, -0.3448953237639382, -0.4721387736413930,
    -0.2199307791404607, -0.6583691780274996, -0.7198475378926182,
    0.2139234834501420, -0.1478171829550704, -0.9656017935214205,
    -0.1092625278784796, 0.4811951572873210, -0.8697775121287253,
)
_FACE_AXIS_AZ0 = (  # azimuth (radians) from each face centre to its vertex 0
    5.619958268523939882,
    5.760339081714187279,
    0.780213654393430055,
    0.430469363979999913,
    6.130269123335111400,
    2.692877706530642877,
    2.982963003477243874,
    3.532912002790141181,
    3.494305004259568154,
    3.003214169499538391,
    5.930472956509811562,
    0.138378484090254847,
    0.448714947059150361,
    0.158629650112549365,
    5.891865957979238535,
    2.711123289609793325,
    3.294508837434268316,
    3.804819692245439833,
    3.664438879055192436,
    2.361378999196363184,
)


# ------------------------------------------------------------------ latLngToCell in numba
# A port of H3 v4.5.0's latLngToCell (h3Index.c, faceijk.c, coordijk.h: the library h3-py
# 4.5 binds), operation for operation in double arithmetic, so the cells equal h3-py's
# (checked on millions of points in tests/spatial/test_h3index.py); ~4x faster than
# h3ronpy's vectorised call because nothing is converted through Arrow.

_FIJK_BC = np.array(_FACE_IJK_BASE_CELLS, dtype=np.int64).reshape(20, 3, 3, 3, 2)
_BCD = np.array(_BASE_CELL_DATA, dtype=np.int64).reshape(122, 7)
_FC = np.array(_FACE_CENTRE_XYZ, dtype=np.float64).reshape(20, 3)
_AZ0 = np.array(_FACE_AXIS_AZ0, dtype=np.float64)
_ROT_CCW = np.array([0, 5, 3, 1, 6, 4, 2], dtype=np.int64)
_ROT_CW = np.array([0, 3, 6, 2, 5, 1, 4], dtype=np.int64)
_M_PI_180 = 0.0174532925199432957692369076848861271111
_M_2PI = 6.28318530717958647692528676655900576839433
_EPSILON = 0.0000000000000001
_M_RSIN60 = 1.1547005383792515290182975610039149112953
_M_ONESEVENTH = 0.14285714285714285714285714285714285
_M_AP7_ROT_RADS = 0.333473172251832115336090755351601070065900389
_INV_RES0_U_GNOMONIC = 2.61803398874989588842
_M_SQRT7 = 2.6457513110645905905016157536392604257102
# cos, sin of each face's axis azimuth, less the Class III rotation at odd resolutions
_ROT = np.array([[[math.cos(a - k * _M_AP7_ROT_RADS), math.sin(a - k * _M_AP7_ROT_RADS)]
                  for a in _AZ0] for k in (0, 1)], dtype=np.float64)


_NEAR_FACE_SQD = 0.12  # < 2 - 2 cos 20°: within 20° of a face centre


def _face_east_north(fc: np.ndarray) -> np.ndarray:
    """Each face's east and north unit vectors on its tangent plane (as _vec3AzimuthRads
    builds them): north = the pole projected on the plane, east = north x centre."""
    out = np.empty((20, 6), dtype=np.float64)
    for f in range(20):
        c = fc[f]
        n = np.array([0.0, 0.0, 1.0]) - c[2] * c
        n /= np.sqrt(n @ n)
        e = np.array([n[1] * c[2] - n[2] * c[1], n[2] * c[0] - n[0] * c[2],
                      n[0] * c[1] - n[1] * c[0]])
        out[f, :3] = e
        out[f, 3:] = n
    return out


_FEN = _face_east_north(_FC)


@njit(cache=True, nogil=True, inline="always")
def _pos_angle(rads: float) -> float:
    tmp = rads + _M_2PI if rads < 0.0 else rads
    if rads >= _M_2PI:
        tmp -= _M_2PI
    return tmp


@njit(cache=True, nogil=True, inline="always")
def _lround(x: float) -> int:
    if x >= 0.0:
        return math.floor(x + 0.5)
    return -math.floor(-x + 0.5)


@njit(cache=True, nogil=True, inline="always")
def _normalize(i: int, j: int, k: int) -> tuple[int, int, int]:
    if i < 0:
        j -= i
        k -= i
        i = 0
    if j < 0:
        i -= j
        k -= j
        j = 0
    if k < 0:
        i -= k
        j -= k
        k = 0
    m = min(i, j, k)
    if m > 0:
        i -= m
        j -= m
        k -= m
    return i, j, k


@njit(cache=True, nogil=True, inline="always")
def _digit(h: np.uint64, r: int) -> int:
    return int((h >> np.uint64((15 - r) * 3)) & np.uint64(7))


@njit(cache=True, nogil=True, inline="always")
def _set_digit(h: np.uint64, r: int, d: int) -> np.uint64:
    s = np.uint64((15 - r) * 3)
    return (h & ~(np.uint64(7) << s)) | (np.uint64(d) << s)


@njit(cache=True, nogil=True, inline="always")
def _rotate(h: np.uint64, res: int, table: np.ndarray) -> np.uint64:
    for r in range(1, res + 1):
        h = _set_digit(h, r, table[_digit(h, r)])
    return h


@njit(cache=True, nogil=True, inline="always")
def _leading_digit(h: np.uint64, res: int) -> int:
    for r in range(1, res + 1):
        d = _digit(h, r)
        if d:
            return d
    return 0


@njit(cache=True, nogil=True, inline="always")
def _unit_and_face(lat_deg: float, lng_deg: float, fc: np.ndarray, hint: int = -1
                   ) -> tuple[float, float, float, int, float]:
    """latLngToVec3 and _vec3ToClosestFace: the unit vector, its face and squared distance.
    A `hint` face (the previous point's, or -1) is taken when the point is within 20° of
    its centre, where it is the nearest by far (face centres are 41.8° apart)."""
    lat = lat_deg * _M_PI_180
    lng = lng_deg * _M_PI_180
    rc = math.cos(lat)
    px = math.cos(lng) * rc
    py = math.sin(lng) * rc
    pz = math.sin(lat)
    if hint >= 0:
        dx = fc[hint, 0] - px
        dy = fc[hint, 1] - py
        dz = fc[hint, 2] - pz
        sqd = dx * dx + dy * dy + dz * dz
        if sqd < _NEAR_FACE_SQD:
            return px, py, pz, hint, sqd
    face = 0
    sqd = 5.0
    for f in range(20):
        dx = fc[f, 0] - px
        dy = fc[f, 1] - py
        dz = fc[f, 2] - pz
        d = dx * dx + dy * dy + dz * dz
        if d < sqd:
            face = f
            sqd = d
    return px, py, pz, face, sqd


@njit(cache=True, nogil=True, inline="always")
def _tangent_en(px: float, py: float, pz: float, face: int, fc: np.ndarray
                ) -> tuple[float, float]:
    """The point projected on the face centre's tangent plane, normalised, as its (east,
    north) components: _vec3AzimuthRads up to its atan2, operation for operation."""
    cx = fc[face, 0]
    cy = fc[face, 1]
    cz = fc[face, 2]
    dn = 0.0 * cx + 0.0 * cy + 1.0 * cz
    nx = 1.0 * 0.0 + -dn * cx
    ny = 1.0 * 0.0 + -dn * cy
    nz = 1.0 * 1.0 + -dn * cz
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    s = 1.0 / norm if norm > 0.0 else 0.0
    nx *= s
    ny *= s
    nz *= s
    ex = ny * cz - nz * cy
    ey = nz * cx - nx * cz
    ez = nx * cy - ny * cx
    d2 = px * cx + py * cy + pz * cz
    qx = 1.0 * px + -d2 * cx
    qy = 1.0 * py + -d2 * cy
    qz = 1.0 * pz + -d2 * cz
    norm = math.sqrt(qx * qx + qy * qy + qz * qz)
    s = 1.0 / norm if norm > 0.0 else 0.0
    qx *= s
    qy *= s
    qz *= s
    return qx * ex + qy * ey + qz * ez, qx * nx + qy * ny + qz * nz


@njit(cache=True, nogil=True)
def _hex2d_exact(lat_deg: float, lng_deg: float, res: int, fc: np.ndarray, az0: np.ndarray
                 ) -> tuple[int, float, float]:
    """_vec3ToHex2d as H3 computes it: (face, x, y)."""
    px, py, pz, face, sqd = _unit_and_face(lat_deg, lng_deg, fc)
    r = math.acos(1 - sqd * 0.5)
    if r < _EPSILON:
        return face, 0.0, 0.0
    east, north = _tangent_en(px, py, pz, face, fc)
    az = math.atan2(east, north)
    theta = _pos_angle(az0[face] - _pos_angle(az))
    if res % 2 == 1:
        theta = _pos_angle(theta - _M_AP7_ROT_RADS)
    r = math.tan(r)
    r *= _INV_RES0_U_GNOMONIC
    for _ in range(res):
        r *= _M_SQRT7
    return face, r * math.cos(theta), r * math.sin(theta)


@njit(cache=True, nogil=True, inline="always")
def _quantize(hx: float, hy: float) -> tuple[int, int, int]:
    """_hex2dToCoordIJK."""
    a1 = abs(hx)
    a2 = abs(hy)
    x2 = a2 * _M_RSIN60
    x1 = a1 + x2 / 2.0
    m1 = int(x1)
    m2 = int(x2)
    r1 = x1 - m1
    r2 = x2 - m2
    if r1 < 0.5:
        if r1 < 1.0 / 3.0:
            ci = m1
            cj = m2 if r2 < (1.0 + r1) / 2.0 else m2 + 1
        else:
            cj = m2 if r2 < (1.0 - r1) else m2 + 1
            ci = m1 + 1 if (1.0 - r1) <= r2 and r2 < (2.0 * r1) else m1
    else:
        if r1 < 2.0 / 3.0:
            cj = m2 if r2 < (1.0 - r1) else m2 + 1
            ci = m1 if (2.0 * r1 - 1.0) < r2 and r2 < (1.0 - r1) else m1 + 1
        else:
            ci = m1 + 1
            cj = m2 if r2 < (r1 / 2.0) else m2 + 1
    if hx < 0.0:
        if cj % 2 == 0:
            diff = ci - cj // 2
            ci = int(ci - 2.0 * diff)
        else:
            diff = ci - (cj + 1) // 2
            ci = int(ci - (2.0 * diff + 1))
    if hy < 0.0:
        ci = ci - (2 * cj + 1) // 2  # cj >= 0 here: C's truncating division equals //
        cj = -cj
    return _normalize(ci, cj, 0)


@njit(cache=True, nogil=True, inline="always")
def _certain(hx: float, hy: float, margin: float) -> bool:
    """Is every decision _hex2dToCoordIJK takes farther than `margin` from its threshold
    (so any (x, y) within margin/3 of (hx, hy) quantizes the same)?"""
    if abs(hx) <= margin or abs(hy) <= margin:
        return False
    x2 = abs(hy) * _M_RSIN60
    x1 = abs(hx) + x2 / 2.0
    r1 = x1 - math.floor(x1)
    r2 = x2 - math.floor(x2)
    m = 3.0 * margin
    return (m < r1 < 1.0 - m and m < r2 < 1.0 - m and abs(r1 - 0.5) > m
            and abs(r1 - 1.0 / 3.0) > m and abs(r1 - 2.0 / 3.0) > m
            and abs(r2 - (1.0 + r1) / 2.0) > m and abs(r2 - (1.0 - r1)) > m
            and abs(r2 - 2.0 * r1) > m and abs(r2 - (2.0 * r1 - 1.0)) > m
            and abs(r2 - r1 / 2.0) > m)


@njit(cache=True, nogil=True)
def _face_ijk(lat_deg: float, lng_deg: float, res: int, fc: np.ndarray, az0: np.ndarray,
              rot: np.ndarray, fen: np.ndarray, hint: int) -> tuple[int, int, int, int]:
    """_geoToFaceIjk: the face and IJK coordinates of a (finite) point.

    The face: _unit_and_face with `hint` (the previous point's face).
    The gnomonic (r, theta) of H3 is found without acos/tan/atan2/cos/sin: tan(acos(c)) =
    sqrt((1-c)(1+c))/c of the same c, and the rotation by theta from the point's east and
    north components on the face (its dot products with the face's east and north unit
    vectors, `fen`, which are those of its tangent projection). The two ways differ by a
    few ulps (bounded by `margin`, with H3's own rounding near a face centre); when a
    quantization decision lies within that margin the point goes the exact way, so the
    cell is H3's."""
    px, py, pz, face, sqd = _unit_and_face(lat_deg, lng_deg, fc, hint)
    c = 1 - sqd * 0.5
    ok = False
    hx = 0.0
    hy = 0.0
    if c > 0.0 and c < 1.0 - 1e-10:
        sin_r = math.sqrt((1.0 - c) * (1.0 + c))
        east = px * fen[face, 0] + py * fen[face, 1] + pz * fen[face, 2]
        north = px * fen[face, 3] + py * fen[face, 4] + pz * fen[face, 5]
        hyp = math.sqrt(east * east + north * north)
        if hyp > 0.5 * sin_r:
            scale = _INV_RES0_U_GNOMONIC
            for _ in range(res):
                scale *= _M_SQRT7
            rh = sin_r / c * scale
            ca = north / hyp
            sa = east / hyp
            cr = rot[res % 2, face, 0]
            sr = rot[res % 2, face, 1]
            hx = rh * (cr * ca + sr * sa)
            hy = rh * (sr * ca - cr * sa)
            # H3's acos(c) carries ~1e-16/sin(r) of c's rounding, amplified by tan'; the
            # east/north components carry ~1e-16 absolute, as much again
            margin = (1e-12 + 8e-16 / sin_r / (c * c)) * (1.0 + rh)
            ok = _certain(hx, hy, margin)
    if not ok:
        face, hx, hy = _hex2d_exact(lat_deg, lng_deg, res, fc, az0)
    ci, cj, ck = _quantize(hx, hy)
    return face, ci, cj, ck


@njit(cache=True, nogil=True, inline="always")
def _up(ci: int, cj: int, ck: int, rr: int) -> tuple[int, int, int, int]:
    """One step of _faceIjkToH3's loop: the parent at resolution rr of IJK coordinates at
    rr + 1 (_upAp7 or _upAp7r) and the digit of the child in it."""
    li, lj, lk = ci, cj, ck
    i0 = ci - ck
    j0 = cj - ck
    # lround(k * M_ONESEVENTH) for an integer k is the integer nearest k/7 (never a
    # tie: 7 is odd), i.e. floor((2k + 7) / 14)
    if (rr + 1) % 2 == 1:
        ci, cj, ck = _normalize((2 * (3 * i0 - j0) + 7) // 14,
                                (2 * (i0 + 2 * j0) + 7) // 14, 0)
        ui, uj, uk = _normalize(3 * ci + cj, 3 * cj + ck, ci + 3 * ck)
    else:
        ci, cj, ck = _normalize((2 * (2 * i0 + j0) + 7) // 14,
                                (2 * (3 * j0 - i0) + 7) // 14, 0)
        ui, uj, uk = _normalize(3 * ci + ck, ci + 3 * cj, cj + 3 * ck)
    di, dj, dk = _normalize(li - ui, lj - uj, lk - uk)
    digit = 7
    if 0 <= di <= 1 and 0 <= dj <= 1 and 0 <= dk <= 1:
        digit = di * 4 + dj * 2 + dk  # UNIT_VECS: 1 = (0,0,1) ... 6 = (1,1,0)
    return ci, cj, ck, digit


@njit(cache=True, nogil=True)
def _face_ijk_to_cell(face: int, ci: int, cj: int, ck: int, res: int, fijk_bc: np.ndarray,
                      bcd: np.ndarray, ccw: np.ndarray, cw: np.ndarray
                      ) -> tuple[np.uint64, int, bool]:
    """_faceIjkToH3: (the cell, the base cell's ccw rotations, is the base cell a
    pentagon)."""
    digits = 0  # digits 1..res, most significant first, 3 bits each
    for rr in range(res - 1, -1, -1):
        ci, cj, ck, digit = _up(ci, cj, ck, rr)
        digits |= digit << (3 * (res - 1 - rr))
    # mode 1 (cell), the resolution, digits past res all 7 (H3_INIT)
    h = (np.uint64(1) << np.uint64(59)) | (np.uint64(res) << np.uint64(52))
    h |= np.uint64(digits) << np.uint64(3 * (15 - res))
    h |= (np.uint64(1) << np.uint64(3 * (15 - res))) - np.uint64(1)
    if ci > 2 or cj > 2 or ck > 2:
        return np.uint64(0), 0, True
    bc = fijk_bc[face, ci, cj, ck, 0]
    rots = fijk_bc[face, ci, cj, ck, 1]
    h = (h & ~(np.uint64(127) << np.uint64(45))) | (np.uint64(bc) << np.uint64(45))
    if bcd[bc, 4]:
        if _leading_digit(h, res) == 1:
            if bcd[bc, 5] == face or bcd[bc, 6] == face:
                h = _rotate(h, res, cw)
            else:
                h = _rotate(h, res, ccw)
        for _ in range(rots):
            # _h3RotatePent60ccw: skips leading 1 digits (the deleted k-axes sub-sequence)
            found = False
            for r2_ in range(1, res + 1):
                h = _set_digit(h, r2_, ccw[_digit(h, r2_)])
                if not found and _digit(h, r2_) != 0:
                    found = True
                    if _leading_digit(h, res) == 1:
                        h = _rotate(h, res, ccw)
    else:
        for _ in range(rots):
            h = _rotate(h, res, ccw)
    return h, rots, bool(bcd[bc, 4])


# The digits above resolution res - _CACHE_DEPTH, the base cell and its rotations are a
# function of the face and the IJK coordinates at that resolution (a cell ~7^4 = 2,401 times
# the answer's: ~5 km² at res 11, so a city has a few hundred of them). The batch kernel
# keeps them in a small direct-mapped cache: a point pays the low steps and one probe, the
# rest is copied (a pentagon's base cell: when the leading digit is in the cached part).
_CACHE_DEPTH = 4
_CACHE_SLOTS = 16384  # at most (a 38,000 km² megacity has ~7,000 parents at res 7)
# _ROT_N[n, d]: digit d rotated 60° ccw n times (a hexagon base cell's n rotations)
_ROT_N = np.array([[d if d in (0, 7) else [1, 5, 4, 6, 2, 3][([1, 5, 4, 6, 2, 3].index(d) + n)
                                                            % 6] for d in range(8)]
                   for n in range(6)], dtype=np.int64)


@njit(cache=True, nogil=True)
def _cells_kernel(lat: np.ndarray, lng: np.ndarray, res: int, fc: np.ndarray,
                  az0: np.ndarray, rot: np.ndarray, fijk_bc: np.ndarray, bcd: np.ndarray,
                  ccw: np.ndarray, cw: np.ndarray, rot_n: np.ndarray, fen: np.ndarray,
                  out: np.ndarray) -> None:
    depth = min(_CACHE_DEPTH, res)
    m = res - depth  # the cached resolution
    low_shift = 3 * (15 - res)
    low_mask = ((np.uint64(1) << np.uint64(3 * depth)) - np.uint64(1)) << np.uint64(low_shift)
    slots = 64  # a power of two, about a quarter of the points, up to _CACHE_SLOTS
    while slots < _CACHE_SLOTS and 4 * slots < lat.shape[0]:
        slots *= 2
    key = np.full((slots, 4), -1, dtype=np.int64)  # face, i, j, k at resolution m
    upper = np.zeros(slots, dtype=np.uint64)  # the cell without its low digits
    rots = np.zeros(slots, dtype=np.int64)
    hint = 0
    for n in range(lat.shape[0]):
        if not (math.isfinite(lat[n]) and math.isfinite(lng[n])):
            out[n] = np.uint64(0)
            continue
        face, i0, j0, k0 = _face_ijk(lat[n], lng[n], res, fc, az0, rot, fen, hint)
        hint = face
        ci, cj, ck = i0, j0, k0
        low = 0  # digits m+1..res, most significant first
        for rr in range(res - 1, m - 1, -1):
            ci, cj, ck, digit = _up(ci, cj, ck, rr)
            low |= digit << (3 * (res - 1 - rr))
        slot = ((face * 73856093) ^ (ci * 19349663) ^ (cj * 83492791) ^ (ck * 50331653)) \
            & (slots - 1)
        if key[slot, 0] == face and key[slot, 1] == ci and key[slot, 2] == cj \
                and key[slot, 3] == ck:
            r = rots[slot]
            h = upper[slot]
            for q in range(depth):
                d = (low >> (3 * q)) & 7
                h |= np.uint64(rot_n[r, d]) << np.uint64(low_shift + 3 * q)
            out[n] = h
            continue
        h, r, pent = _face_ijk_to_cell(face, i0, j0, k0, res, fijk_bc, bcd, ccw, cw)
        out[n] = h
        if h == 0:
            continue
        if pent:
            # every step of a pentagon's rotation turns all digits alike, by a number of
            # turns that follows from the leading digit: cacheable when that digit is above
            # resolution m, the turns read off a nonzero low digit (before and after)
            top = (h >> np.uint64(3 * (15 - m))) & ((np.uint64(1) << np.uint64(3 * m))
                                                    - np.uint64(1))
            if m == 0 or top == 0 or low == 0:
                continue
            q = 0
            while (low >> (3 * q)) & 7 == 0:
                q += 1
            du = (low >> (3 * q)) & 7
            dr = int((h >> np.uint64(low_shift + 3 * q)) & np.uint64(7))
            r = 0
            while rot_n[r, du] != dr:
                r += 1
        key[slot, 0] = face
        key[slot, 1] = ci
        key[slot, 2] = cj
        key[slot, 3] = ck
        upper[slot] = h & ~low_mask
        rots[slot] = r


def cells_for_points_numba(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (uint64) of lon/lat points in degrees: the numba port (0 where not finite)."""
    lat64 = np.ascontiguousarray(lat, dtype=np.float64)
    lon64 = np.ascontiguousarray(lon, dtype=np.float64)
    out = np.empty(lat64.shape[0], dtype=np.uint64)
    _cells_kernel(lat64, lon64, res, _FC, _AZ0, _ROT, _FIJK_BC, _BCD, _ROT_CCW, _ROT_CW,
                  _ROT_N, _FEN, out)
    return out
