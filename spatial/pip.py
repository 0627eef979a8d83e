"""Point-in-polygon with PostGIS's own arithmetic, so the fast path equals ST_Covers exactly.

PostGIS answers ST_Covers(polygon, point) with a winding-number test in plain double
arithmetic (postgis/lwgeom_functions_analytic.c: determineSide, isOnSegment,
point_in_ring, point_in_multipolygon). A robust-predicate test (GEOS) can disagree with it
for points within rounding distance of an edge, so this module repeats PostGIS's formula
operation for operation. Compiled with numba; no fast-math, so no fused multiply-add.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from shapely import MultiPolygon, Polygon

OUTSIDE, BOUNDARY, INSIDE = -1, 0, 1


@njit(cache=True, nogil=True)
def _ring(xs: np.ndarray, ys: np.ndarray, start: int, end: int, px: float, py: float) -> int:
    """point_in_ring: -1 outside, 0 on the ring, 1 inside (rings are closed)."""
    wn = 0
    for i in range(start, end - 1):
        x1 = xs[i]
        y1 = ys[i]
        x2 = xs[i + 1]
        y2 = ys[i + 1]
        side = (x2 - x1) * (py - y1) - (px - x1) * (y2 - y1)
        if x2 == x1 and y2 == y1:
            continue
        on_line = side == 0.0
        if on_line and not (max(x1, x2) < px or min(x1, x2) > px
                            or max(y1, y2) < py or min(y1, y2) > py):
            return 0
        if y1 <= py and py < y2 and side > 0:
            wn += 1
        elif y2 <= py and py < y1 and side < 0:
            wn -= 1
    if wn == 0:
        return -1
    return 1


@njit(cache=True, nogil=True)
def covers_one(g: int, px: float, py: float, grid_poly: np.ndarray, poly_ring: np.ndarray,
               ring_coord: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> bool:
    """point_in_multipolygon(...) != -1 for multipolygon g of a packed set."""
    for p in range(grid_poly[g], grid_poly[g + 1]):
        r0 = poly_ring[p]
        r1 = poly_ring[p + 1]
        res = _ring(xs, ys, ring_coord[r0], ring_coord[r0 + 1], px, py)
        if res == -1:
            continue
        if res == 0:
            return True
        inside = True
        for r in range(r0 + 1, r1):
            h = _ring(xs, ys, ring_coord[r], ring_coord[r + 1], px, py)
            if h == 1:
                inside = False
                break
            if h == 0:
                return True
        if inside:
            return True
    return False


@njit(cache=True, nogil=True)
def first_covering(px: np.ndarray, py: np.ndarray, lists: np.ndarray, cand_off: np.ndarray,
                   cand: np.ndarray, grid_poly: np.ndarray, poly_ring: np.ndarray,
                   ring_coord: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """For each point, the first candidate (in list order) that covers it, else -1."""
    n = px.shape[0]
    out = np.full(n, -1, dtype=np.int32)
    for i in range(n):
        k = lists[i]
        for j in range(cand_off[k], cand_off[k + 1]):
            g = cand[j]
            if covers_one(g, px[i], py[i], grid_poly, poly_ring, ring_coord, xs, ys):
                out[i] = g
                break
    return out


@njit(cache=True, nogil=True)
def first_covering_one(px: float, py: float, k: int, cand_off: np.ndarray, cand: np.ndarray,
                       grid_poly: np.ndarray, poly_ring: np.ndarray, ring_coord: np.ndarray,
                       xs: np.ndarray, ys: np.ndarray) -> int:
    """The first grid of candidate list k that covers one point, else -1."""
    for j in range(cand_off[k], cand_off[k + 1]):
        g = cand[j]
        if covers_one(g, px, py, grid_poly, poly_ring, ring_coord, xs, ys):
            return g
    return -1


class PackedPolygons:
    """Multipolygons packed into flat arrays: grid -> polygons -> rings -> coordinates."""

    def __init__(self, geoms: list[Polygon | MultiPolygon]) -> None:
        grid_poly = [0]
        poly_ring = [0]
        ring_coord = [0]
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        n = 0
        for geom in geoms:
            polys = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
            for poly in polys:
                for ring in (poly.exterior, *poly.interiors):
                    c = np.asarray(ring.coords, dtype=np.float64)
                    xs.append(np.ascontiguousarray(c[:, 0]))
                    ys.append(np.ascontiguousarray(c[:, 1]))
                    n += len(c)
                    ring_coord.append(n)
                poly_ring.append(len(ring_coord) - 1)
            grid_poly.append(len(poly_ring) - 1)
        self.grid_poly = np.asarray(grid_poly, dtype=np.int64)
        self.poly_ring = np.asarray(poly_ring, dtype=np.int64)
        self.ring_coord = np.asarray(ring_coord, dtype=np.int64)
        self.xs = np.concatenate(xs) if xs else np.empty(0)
        self.ys = np.concatenate(ys) if ys else np.empty(0)

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return sum(a.nbytes for a in (self.grid_poly, self.poly_ring, self.ring_coord,
                                      self.xs, self.ys))

    def covers(self, g: int, x: float, y: float) -> bool:
        """Does multipolygon g cover the point (PostGIS ST_Covers semantics)?"""
        return bool(covers_one(g, x, y, self.grid_poly, self.poly_ring, self.ring_coord,
                               self.xs, self.ys))

    def first_covering_one(self, x: float, y: float, k: int, cand_off: np.ndarray,
                           cand: np.ndarray) -> int:
        """The first grid of candidate list k covering one point (-1: none)."""
        return int(first_covering_one(x, y, k, cand_off, cand, self.grid_poly, self.poly_ring,
                                      self.ring_coord, self.xs, self.ys))

    def first_covering(self, x: np.ndarray, y: np.ndarray, lists: np.ndarray,
                       cand_off: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """For each point, the first of its candidate list that covers it (-1: none)."""
        return first_covering(np.ascontiguousarray(x, dtype=np.float64),
                              np.ascontiguousarray(y, dtype=np.float64),
                              np.ascontiguousarray(lists, dtype=np.int64), cand_off, cand,
                              self.grid_poly, self.poly_ring, self.ring_coord, self.xs, self.ys)
