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
def _ring(xy: np.ndarray, start: int, end: int, px: float, py: float) -> int:
    """point_in_ring: -1 outside, 0 on the ring, 1 inside (rings are closed).

    PostGIS's formula; an edge whose y-range misses py is skipped before its side is
    computed (it can neither hold the point nor count in the winding number), which
    changes no answer."""
    wn = 0
    for i in range(start, end - 1):
        y1 = xy[i, 1]
        y2 = xy[i + 1, 1]
        if (py < y1 and py < y2) or (py > y1 and py > y2):
            continue
        x1 = xy[i, 0]
        x2 = xy[i + 1, 0]
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
               ring_coord: np.ndarray, xy: np.ndarray) -> bool:
    """point_in_multipolygon(...) != -1 for multipolygon g of a packed set."""
    for p in range(grid_poly[g], grid_poly[g + 1]):
        r0 = poly_ring[p]
        r1 = poly_ring[p + 1]
        res = _ring(xy, ring_coord[r0], ring_coord[r0 + 1], px, py)
        if res == -1:
            continue
        if res == 0:
            return True
        inside = True
        for r in range(r0 + 1, r1):
            h = _ring(xy, ring_coord[r], ring_coord[r + 1], px, py)
            if h == 1:
                inside = False
                break
            if h == 0:
                return True
        if inside:
            return True
    return False


@njit(cache=True, nogil=True, inline="always")
def _first_of_list(px: float, py: float, k: int, cand: np.ndarray, simple: np.ndarray,
                   grid_poly: np.ndarray, poly_ring: np.ndarray, ring_coord: np.ndarray,
                   xy: np.ndarray) -> int:
    """The first grid of the candidate list starting at cand[k] (ended by -1) that covers
    the point, else -1. A grid of one ring is tested from `simple` (its ring's coordinate
    range), without walking the polygon and ring offsets: fewer memory reads."""
    j = k
    while True:
        g = cand[j]
        if g < 0:
            return -1
        s = simple[g, 0]
        if s >= 0:
            if _ring(xy, s, simple[g, 1], px, py) != -1:
                return g
        elif covers_one(g, px, py, grid_poly, poly_ring, ring_coord, xy):
            return g
        j += 1


@njit(cache=True, nogil=True)
def first_covering_one(px: float, py: float, k: int, cand: np.ndarray, simple: np.ndarray,
                       grid_poly: np.ndarray, poly_ring: np.ndarray, ring_coord: np.ndarray,
                       xy: np.ndarray) -> int:
    """The first grid of the candidate list at cand[k] that covers one point, else -1."""
    return _first_of_list(px, py, k, cand, simple, grid_poly, poly_ring, ring_coord, xy)


class PackedPolygons:
    """Multipolygons packed into flat arrays: grid -> polygons -> rings -> coordinates,
    the coordinates interleaved (x, y) so that an edge is one memory read; `simple[g]` is
    the coordinate range of grid g's ring when it is one polygon without holes (else -1)."""

    def __init__(self, geoms: list[Polygon | MultiPolygon]) -> None:
        grid_poly = [0]
        poly_ring = [0]
        ring_coord = [0]
        coords: list[np.ndarray] = []
        simple = np.full((len(geoms), 2), -1, dtype=np.int64)
        n = 0
        for g, geom in enumerate(geoms):
            polys = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
            start = n
            rings = 0
            for poly in polys:
                for ring in (poly.exterior, *poly.interiors):
                    c = np.asarray(ring.coords, dtype=np.float64)[:, :2]
                    coords.append(c)
                    n += len(c)
                    ring_coord.append(n)
                    rings += 1
                poly_ring.append(len(ring_coord) - 1)
            grid_poly.append(len(poly_ring) - 1)
            if rings == 1:
                simple[g] = (start, n)
        self.grid_poly = np.asarray(grid_poly, dtype=np.int64)
        self.poly_ring = np.asarray(poly_ring, dtype=np.int64)
        self.ring_coord = np.asarray(ring_coord, dtype=np.int64)
        self.xy = (np.ascontiguousarray(np.concatenate(coords)) if coords
                   else np.empty((0, 2), dtype=np.float64))
        self.simple = simple

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return sum(a.nbytes for a in (self.grid_poly, self.poly_ring, self.ring_coord,
                                      self.xy, self.simple))

    def covers(self, g: int, x: float, y: float) -> bool:
        """Does multipolygon g cover the point (PostGIS ST_Covers semantics)?"""
        return bool(covers_one(g, x, y, self.grid_poly, self.poly_ring, self.ring_coord,
                               self.xy))

    def first_covering_one(self, x: float, y: float, k: int, cand: np.ndarray) -> int:
        """The first grid of the candidate list at cand[k] covering one point (-1: none)."""
        return int(first_covering_one(x, y, k, cand, self.simple, self.grid_poly,
                                      self.poly_ring, self.ring_coord, self.xy))


# ------------------------------------------------------------------ the planar table


@njit(cache=True, nogil=True)
def lookup_planar(px: np.ndarray, py: np.ndarray, x0: float, y0: float, inv_dx: float,
                  inv_dy: float, nx: int, ny: int, table: np.ndarray, cand: np.ndarray,
                  simple: np.ndarray, grid_poly: np.ndarray, poly_ring: np.ndarray,
                  ring_coord: np.ndarray, xy: np.ndarray, out: np.ndarray) -> None:
    """Finest grid of each point through the planar table: cell (ix, iy) by arithmetic,
    interior cells answer at once, boundary cells run the exact test on their candidates
    (code order, the first covering wins). Points off the table (or NaN) are outside."""
    for i in range(px.shape[0]):
        fx = (px[i] - x0) * inv_dx
        fy = (py[i] - y0) * inv_dy
        if not (fx >= 0.0 and fx < nx and fy >= 0.0 and fy < ny):
            out[i] = -1
            continue
        ix = min(int(fx), nx - 1)
        iy = min(int(fy), ny - 1)
        v = table[iy * nx + ix]
        if v >= -1:
            out[i] = v
            continue
        out[i] = _first_of_list(px[i], py[i], -v - 2, cand, simple, grid_poly, poly_ring,
                                ring_coord, xy)


LOOKUP_CHUNK = 4096  # points a chunk of lookup_planar_staged


@njit(cache=True, nogil=True)
def lookup_planar_staged(px: np.ndarray, py: np.ndarray, x0: float, y0: float, inv_dx: float,
                         inv_dy: float, nx: int, ny: int, table: np.ndarray, cand: np.ndarray,
                         simple: np.ndarray, grid_poly: np.ndarray, poly_ring: np.ndarray,
                         ring_coord: np.ndarray, xy: np.ndarray, out: np.ndarray) -> float:
    """lookup_planar for a batch, in chunks of LOOKUP_CHUNK points and three stages: every
    point's table cell (independent reads, which the processor overlaps), then the
    candidate lists and rings of the chunk's boundary points read once (independent
    again: they arrive together), then the exact tests on data now in cache. One point
    after another, each boundary point waited for its list, then its ring, from memory:
    on a table far beyond the caches that was most of the time. The same arithmetic and
    answers as lookup_planar (returns a sum of the values read, so that they are read)."""
    n = px.shape[0]
    todo = np.empty(LOOKUP_CHUNK, dtype=np.int64)
    acc = 0.0
    for c0 in range(0, n, LOOKUP_CHUNK):
        c1 = min(c0 + LOOKUP_CHUNK, n)
        m = 0
        for i in range(c0, c1):
            fx = (px[i] - x0) * inv_dx
            fy = (py[i] - y0) * inv_dy
            if not (fx >= 0.0 and fx < nx and fy >= 0.0 and fy < ny):
                out[i] = -1
                continue
            v = table[min(int(fy), ny - 1) * nx + min(int(fx), nx - 1)]
            out[i] = v
            if v < -1:
                todo[m] = i
                m += 1
        for q in range(m):
            acc += cand[-out[todo[q]] - 2]
        for q in range(m):
            j = -out[todo[q]] - 2
            while cand[j] >= 0:
                s = simple[cand[j], 0]
                if s >= 0:
                    for r in range(s, simple[cand[j], 1], 4):
                        acc += xy[r, 1]
                j += 1
        for q in range(m):
            i = todo[q]
            out[i] = _first_of_list(px[i], py[i], -out[i] - 2, cand, simple, grid_poly,
                                    poly_ring, ring_coord, xy)
    return acc


@njit(cache=True, nogil=True)
def _edge_cells(xy: np.ndarray, ring_coord: np.ndarray, ring_grid: np.ndarray,
                x0: float, y0: float, inv_dx: float, inv_dy: float, nx: int, ny: int,
                margin: float, out_cell: np.ndarray, out_grid: np.ndarray) -> int:
    """Every table cell that some ring segment, grown by `margin` (degrees), comes near:
    (cell, grid) pairs written to out_* (when large enough); returns how many there are."""
    dy = 1.0 / inv_dy
    n = 0
    cap = out_cell.shape[0]
    for r in range(ring_grid.shape[0]):
        g = ring_grid[r]
        for i in range(ring_coord[r], ring_coord[r + 1] - 1):
            xa = xy[i, 0]
            ya = xy[i, 1]
            xb = xy[i + 1, 0]
            yb = xy[i + 1, 1]
            r0 = int(np.floor((min(ya, yb) - margin - y0) * inv_dy))
            r1 = int(np.floor((max(ya, yb) + margin - y0) * inv_dy))
            r0 = max(r0, 0)
            r1 = min(r1, ny - 1)
            for row in range(r0, r1 + 1):
                if ya == yb:
                    xl = min(xa, xb)
                    xh = max(xa, xb)
                else:
                    b0 = y0 + row * dy - margin
                    b1 = y0 + (row + 1) * dy + margin
                    t0 = (b0 - ya) / (yb - ya)
                    t1 = (b1 - ya) / (yb - ya)
                    tl = max(0.0, min(t0, t1))
                    th = min(1.0, max(t0, t1))
                    if tl > th:
                        tl, th = th, tl
                    xl0 = xa + tl * (xb - xa)
                    xh0 = xa + th * (xb - xa)
                    xl = min(xl0, xh0)
                    xh = max(xl0, xh0)
                c0 = max(int(np.floor((xl - margin - x0) * inv_dx)), 0)
                c1 = min(int(np.floor((xh + margin - x0) * inv_dx)), nx - 1)
                for c in range(c0, c1 + 1):
                    if n < cap:
                        out_cell[n] = row * nx + c
                        out_grid[n] = g
                    n += 1
    return n


def edge_cells(packed: PackedPolygons, x0: float, y0: float, inv_dx: float, inv_dy: float,
               nx: int, ny: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(cell, grid) pairs of the table cells within `margin` of a grid's ring."""
    ring_grid = np.repeat(np.arange(len(packed.grid_poly) - 1, dtype=np.int32),
                          np.diff(packed.poly_ring[packed.grid_poly]).astype(np.int64))
    cell = np.empty(len(packed.xy) * 8 + 1024, dtype=np.int64)
    grid = np.empty(len(cell), dtype=np.int32)
    args = (packed.xy, packed.ring_coord, ring_grid, x0, y0, inv_dx, inv_dy, nx, ny,
            margin)
    n = _edge_cells(*args, cell, grid)
    if n > len(cell):
        cell = np.empty(n, dtype=np.int64)
        grid = np.empty(n, dtype=np.int32)
        _edge_cells(*args, cell, grid)
    return cell[:n], grid[:n]


@njit(cache=True, nogil=True)
def _fill_centres(cbox: np.ndarray, x0: float, y0: float, dx: float, dy: float, nx: int,
                  table: np.ndarray, grid_poly: np.ndarray, poly_ring: np.ndarray,
                  ring_coord: np.ndarray, xy: np.ndarray
                  ) -> tuple[int, np.ndarray, np.ndarray]:
    """table[cell] = the first grid (in order) covering the cell's centre, for the cells of
    each grid's box (c0, r0, c1, r1); a centre covered again is returned as a pair."""
    n = 0
    ov_cell = np.empty(1024, dtype=np.int64)
    ov_grid = np.empty(1024, dtype=np.int32)
    for g in range(cbox.shape[0]):
        for row in range(cbox[g, 1], cbox[g, 3] + 1):
            cy = y0 + (row + 0.5) * dy
            for c in range(cbox[g, 0], cbox[g, 2] + 1):
                cx = x0 + (c + 0.5) * dx
                if covers_one(g, cx, cy, grid_poly, poly_ring, ring_coord, xy):
                    k = row * nx + c
                    if table[k] == -1:
                        table[k] = g
                        continue
                    if n == ov_cell.shape[0]:
                        bigger_c = np.empty(2 * n, dtype=np.int64)
                        bigger_g = np.empty(2 * n, dtype=np.int32)
                        bigger_c[:n] = ov_cell
                        bigger_g[:n] = ov_grid
                        ov_cell = bigger_c
                        ov_grid = bigger_g
                    ov_cell[n] = k
                    ov_grid[n] = g
                    n += 1
    return n, ov_cell, ov_grid


def fill_centres(packed: PackedPolygons, cbox: np.ndarray, x0: float, y0: float, dx: float,
                 dy: float, nx: int, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the table by cell centres; the centres covered by a second grid as pairs."""
    n, ov_cell, ov_grid = _fill_centres(
        np.ascontiguousarray(cbox, dtype=np.int64), x0, y0, dx, dy, nx, table,
        packed.grid_poly, packed.poly_ring, packed.ring_coord, packed.xy)
    return ov_cell[:n], ov_grid[:n]
