"""The in-memory resolver: a planar lookup table over lon/lat -> finest grid, the exact
PostGIS-equal test on boundary cells; the H3 cell only where an answer shows it.

Why a planar table (measured in benchmarks/, issue #17): the H3 version of this index
spent 65-82 % of a batch lookup computing each point's H3 cell (h3ronpy), only to address
a table. A uniform grid over the territory's lon/lat box is addressed by arithmetic,
floor((lon - x0) / dx), floor((lat - y0) / dy), in one numba loop over the points: an
interior cell answers at once, a boundary cell runs spatial.pip's exact test (PostGIS's own
arithmetic) on its few candidates, in code order. The loop does not touch H3: `lookup`
never computes a cell, `lookup_with_cells` adds h3ronpy's cells for answers that show them.

The table (int32 a cell: >= 0 the grid, -1 outside, <= -2 a candidate list -(k+2)):

* cells are square in metres, CELLS_PER_SIDE along the side of the median grid's box
  (≈ 50 m on the demo city), enlarged until the table has at most MAX_CELLS cells
  (128 MiB; the 38,000 km² megacity fits at ≈ 40 m);
* a cell is a *boundary* cell when a ring segment of any grid, grown by EDGE_MARGIN_DEG
  (1e-7°, ≈ 1 cm), comes near its rectangle: rasterised per segment, row by row, from the
  segment's x-range inside the row's band, so the test is conservative by the margin;
* every other cell is provably interior to one grid or outside all of them: no edge
  passes within the margin, so every point of the cell (and of its rounding neighbourhood,
  ~1e-13°, 10⁶ times smaller than the margin) is on the same side of every edge as the
  cell's centre, where PostGIS's floating-point side test is exact in sign; the centre's
  answer (spatial.pip.covers_one over each grid's box, grids in code order, the first
  wins) is the answer of the whole cell;
* a boundary cell's candidates: the grids whose rings come near it plus any grid covering
  its centre, ascending (= code order), so the first covering candidate is the lowest code,
  the documented tie rule for points on shared edges (the SQL path applies the same rule).

Points off the table (padded by two cells) or NaN are outside. The H3 resolution stays an
attribute: answers name the point's H3 cell at it (`lookup_one`, `lookup_with_cells`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from pyproj import Geod
from scipy.spatial import cKDTree
from shapely import MultiPolygon, Polygon

from spatial import h3index
from spatial.pip import PackedPolygons, edge_cells, fill_centres, lookup_planar

DEFAULT_RES = 11
CELLS_PER_SIDE = 12  # table cells along the side of the median grid's bounding box
MAX_CELLS = 32 * 1024 * 1024  # int32 each: 128 MiB
EDGE_MARGIN_DEG = 1e-7  # ≈ 1 cm: far above rounding (~1e-13°), far below a cell (~4e-4°)
PAD_CELLS = 2
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0
_OUTSIDE = np.int32(-1)


@dataclass(frozen=True)
class Level:
    """One grid level: its units and, for each finest grid, the index of its unit here."""

    rank: int
    key: str
    name: str
    codes: np.ndarray  # str objects, sorted
    names: np.ndarray
    of_finest: np.ndarray  # int32, len = number of finest grids


@dataclass
class BuildStats:
    """How the index was built."""

    grids: int
    resolution: int  # H3 resolution of the cells in answers
    interior_cells: int  # table cells answered without a test (inside a grid)
    boundary_cells: int
    table_cells: int  # nx * ny
    cell_m: float  # side of a table cell, metres
    seconds: float
    nbytes: int


@dataclass(frozen=True)
class Table:
    """The planar table's frame: origin, cell size (degrees) and shape."""

    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int

    @property
    def inv_dx(self) -> float:
        """1 / dx: the lookup multiplies (build and lookup use the same arithmetic)."""
        return 1.0 / self.dx

    @property
    def inv_dy(self) -> float:
        """1 / dy."""
        return 1.0 / self.dy

    @classmethod
    def over(cls, bounds: tuple[float, float, float, float], box_sides_m: np.ndarray
             ) -> Table:
        """A frame over bounds: square cells in metres, CELLS_PER_SIDE along the median
        grid's box, at most MAX_CELLS cells, PAD_CELLS cells of padding a side."""
        x0, y0, x1, y1 = bounds
        coslat = max(math.cos(math.radians((y0 + y1) / 2)), 0.01)
        side = max(float(np.median(box_sides_m)) / CELLS_PER_SIDE, 0.5)
        while True:
            dx = side / (_M_PER_DEG_LON * coslat)
            dy = side / _M_PER_DEG_LAT
            nx = math.ceil((x1 - x0) / dx) + 2 * PAD_CELLS + 1
            ny = math.ceil((y1 - y0) / dy) + 2 * PAD_CELLS + 1
            if nx * ny <= MAX_CELLS:
                break
            side *= math.sqrt(nx * ny / MAX_CELLS) * 1.01
        return cls(x0 - PAD_CELLS * dx, y0 - PAD_CELLS * dy, dx, dy, nx, ny)

    @property
    def cell_m(self) -> float:
        """Side of a cell in metres."""
        return self.dy * _M_PER_DEG_LAT


@dataclass
class GridIndex:
    """Finest-level grids of one generation, looked up by a planar table and exact test."""

    generation: int
    resolution: int
    codes: np.ndarray
    names: np.ndarray
    levels: list[Level]
    geoms: np.ndarray  # shapely geometries of the finest grids (lon/lat)
    packed: PackedPolygons
    frame: Table
    table: np.ndarray  # int32: >= 0 grid, -1 outside, <= -2 boundary list -(k+2)
    cand_off: np.ndarray  # int64
    cand: np.ndarray  # int32 grid indexes, ascending (= code order)
    stats: BuildStats
    meta: dict[str, Any] = field(default_factory=dict)
    _nearest: Any = None
    _args: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        f = self.frame
        p = self.packed
        self._args = (f.x0, f.y0, f.inv_dx, f.inv_dy, f.nx, f.ny, self.table, self.cand_off,
                      self.cand, p.grid_poly, p.poly_ring, p.ring_coord, p.xs, p.ys)

    # ------------------------------------------------------------------ build

    @classmethod
    def build(cls, generation: int, codes: Sequence[str], names: Sequence[str],
              geoms: Sequence[Polygon | MultiPolygon], levels: Sequence[Level] = (),
              resolution: int = DEFAULT_RES) -> GridIndex:
        """Index finest grids (any order; sorted by code here)."""
        t0 = time.perf_counter()
        order = np.argsort(np.asarray(codes, dtype=object).astype(str), kind="stable")
        codes_a = np.asarray(codes, dtype=object)[order]
        names_a = np.asarray(names, dtype=object)[order]
        geoms_a = np.asarray(geoms, dtype=object)[order]
        lv = [Level(x.rank, x.key, x.name, x.codes, x.names, x.of_finest[order])
              for x in levels]
        if len(codes_a) == 0:
            raise ValueError("no grids to index")
        packed = PackedPolygons(list(geoms_a))
        gb = shapely.bounds(geoms_a)
        bounds = (float(gb[:, 0].min()), float(gb[:, 1].min()), float(gb[:, 2].max()),
                  float(gb[:, 3].max()))
        coslat = math.cos(math.radians((bounds[1] + bounds[3]) / 2))
        sides = np.sqrt(np.maximum((gb[:, 2] - gb[:, 0]) * _M_PER_DEG_LON * coslat, 0.0)
                        * np.maximum((gb[:, 3] - gb[:, 1]) * _M_PER_DEG_LAT, 0.0))
        fr = Table.over(bounds, sides)
        # the cells each grid's box spans, for the centre fill
        cbox = np.column_stack([
            np.floor((gb[:, 0] - fr.x0) * fr.inv_dx), np.floor((gb[:, 1] - fr.y0) * fr.inv_dy),
            np.floor((gb[:, 2] - fr.x0) * fr.inv_dx), np.floor((gb[:, 3] - fr.y0) * fr.inv_dy),
        ]).astype(np.int64)
        cbox[:, [0, 2]] = np.clip(cbox[:, [0, 2]], 0, fr.nx - 1)
        cbox[:, [1, 3]] = np.clip(cbox[:, [1, 3]], 0, fr.ny - 1)
        table = np.full(fr.nx * fr.ny, _OUTSIDE, dtype=np.int32)
        ov_cell, ov_grid = fill_centres(packed, cbox, fr.x0, fr.y0, fr.dx, fr.dy, fr.nx, table)
        e_cell, e_grid = edge_cells(packed, fr.x0, fr.y0, fr.inv_dx, fr.inv_dy, fr.nx, fr.ny,
                                    EDGE_MARGIN_DEG)
        boundary = np.unique(e_cell)
        owner = table[boundary]
        has = owner >= 0
        in_b = np.isin(ov_cell, boundary)
        n_g = np.int64(len(codes_a))
        keys = np.concatenate([e_cell * n_g + e_grid, boundary[has] * n_g + owner[has],
                               ov_cell[in_b] * n_g + ov_grid[in_b]])
        keys = np.unique(keys)
        k_cell = keys // n_g
        cand = (keys % n_g).astype(np.int32)
        uniq, first = np.unique(k_cell, return_index=True)
        cand_off = np.append(first, len(cand)).astype(np.int64)
        table[uniq] = -(np.arange(len(uniq), dtype=np.int32) + 2)
        interior = int(np.count_nonzero(table >= 0))
        stats = BuildStats(
            grids=len(codes_a), resolution=resolution, interior_cells=interior,
            boundary_cells=len(uniq), table_cells=fr.nx * fr.ny, cell_m=fr.cell_m,
            seconds=0.0, nbytes=0)
        idx = cls(generation=generation, resolution=resolution, codes=codes_a, names=names_a,
                  levels=lv, geoms=geoms_a, packed=packed, frame=fr, table=table,
                  cand_off=cand_off, cand=cand, stats=stats,
                  meta={"bounds": bounds, "edge_margin_deg": EDGE_MARGIN_DEG})
        idx.lookup(np.array([bounds[0]]), np.array([bounds[1]]))  # compiled (cached) now
        stats.seconds = time.perf_counter() - t0
        stats.nbytes = idx.nbytes
        return idx

    @property
    def nbytes(self) -> int:
        """Memory of the lookup structures, in bytes (geometry objects not counted)."""
        return int(self.table.nbytes + self.cand_off.nbytes + self.cand.nbytes
                   + self.packed.nbytes + sum(lv.of_finest.nbytes for lv in self.levels))

    # ------------------------------------------------------------------ lookup

    def cells(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """H3 cells of the points at the index resolution."""
        return h3index.cells_for_points(lon, lat, self.resolution)

    def lookup(self, lon: np.ndarray, lat: np.ndarray,
               cells: np.ndarray | None = None) -> np.ndarray:
        """Finest grid index of each WGS84 point (-1 outside every grid); vectorised, one
        compiled loop, no H3 (`cells` is accepted for old callers and not needed)."""
        lon = np.ascontiguousarray(lon, dtype=np.float64)
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        if lon.shape != lat.shape:
            raise ValueError("lon and lat differ in length")
        out = np.empty(lon.shape[0], dtype=np.int32)
        lookup_planar(lon, lat, *self._args, out)  # type: ignore[call-arg]
        return out

    def lookup_with_cells(self, lon: np.ndarray, lat: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
        """(finest grid index, H3 cell at the index resolution) of each point."""
        lon = np.ascontiguousarray(lon, dtype=np.float64)
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        return self.lookup(lon, lat), self.cells(lon, lat)

    def lookup_grid_one(self, lon: float, lat: float) -> int:
        """Grid index (or -1) of one point, without its H3 cell."""
        f = self.frame
        fx = (lon - f.x0) * f.inv_dx
        fy = (lat - f.y0) * f.inv_dy
        if not (0.0 <= fx < f.nx and 0.0 <= fy < f.ny):
            return -1
        v = int(self.table[min(int(fy), f.ny - 1) * f.nx + min(int(fx), f.nx - 1)])
        if v >= -1:
            return v
        return self.packed.first_covering_one(lon, lat, -v - 2, self.cand_off, self.cand)

    def lookup_one(self, lon: float, lat: float) -> tuple[int, int]:
        """(grid index or -1, H3 cell) of one point: the same table and exact test as
        lookup(), without array overheads (a few microseconds)."""
        return (self.lookup_grid_one(lon, lat),
                h3index.cell_for_point(lon, lat, self.resolution))

    def chain(self, g: int) -> list[dict[str, Any]]:
        """The grid and its ancestors at every level, coarse to fine."""
        out = [{"code": str(lv.codes[lv.of_finest[g]]), "name": str(lv.names[lv.of_finest[g]]),
                "level": lv.rank, "level_key": lv.key, "level_name": lv.name}
               for lv in self.levels if lv.of_finest[g] >= 0]
        return out

    # ------------------------------------------------------------------ outside

    def nearest(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest finest grid and geodesic distance in metres (WGS84 ellipsoid) for points
        outside, wherever on Earth they are.

        The nearest grid of an outside point lies on the territory's edge, at one of the ring
        segments of the grids that touch the outline. Candidates: the segments of the
        NEAREST_K segment ends closest to the point on the sphere (a KD-tree of unit
        vectors); each candidate's distance is measured in the azimuthal equidistant plane
        of the point (ellipsoidal geodesics to both ends, exact at the ends), the least wins.
        """
        if self._nearest is None:
            self._nearest = _EdgeSegments.of(self.geoms)
        return self._nearest.nearest(np.asarray(lon, dtype=np.float64),
                                     np.asarray(lat, dtype=np.float64))


NEAREST_K = 8  # segment ends looked at per point: neighbours share ends, so ~4 places


def _unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


@dataclass
class _EdgeSegments:
    """The ring segments of the grids on the territory's outline, for nearest-grid search."""

    seg: np.ndarray  # (n, 4) lon0 lat0 lon1 lat1
    owner: np.ndarray  # grid index of each segment
    tree: cKDTree  # over the 2n segment ends (unit vectors); end j belongs to segment j // 2

    @classmethod
    def of(cls, geoms: np.ndarray) -> _EdgeSegments:
        outline = shapely.boundary(shapely.union_all(geoms))
        edge = shapely.STRtree(geoms).query(outline, predicate="intersects")
        starts: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for gi in edge:
            for r in shapely.get_rings(shapely.get_parts(geoms[gi])):
                c = shapely.get_coordinates(r)
                starts.append(np.hstack([c[:-1], c[1:]]))
                owners.append(np.full(len(c) - 1, gi, dtype=np.int32))
        seg = np.concatenate(starts)
        ends = np.column_stack([seg[:, :2], seg[:, 2:]]).reshape(-1, 2)
        return cls(seg, np.concatenate(owners), cKDTree(_unit_vectors(ends[:, 0], ends[:, 1])))

    def nearest(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.empty(len(lon), dtype=np.int32)
        d = np.empty(len(lon))
        for a in range(0, len(lon), NEAREST_CHUNK):  # the GIL is free between chunks
            g[a:a + NEAREST_CHUNK], d[a:a + NEAREST_CHUNK] = self._nearest(
                lon[a:a + NEAREST_CHUNK], lat[a:a + NEAREST_CHUNK])
        return g, d

    def _nearest(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(lon)
        if n == 0:
            return np.empty(0, dtype=np.int32), np.empty(0)
        k = min(NEAREST_K, 2 * len(self.seg))
        _, ends = self.tree.query(_unit_vectors(lon, lat), k=k)
        cand = np.asarray(ends, dtype=np.int64).reshape(n, k) // 2  # (n, k) segment indices
        s = self.seg[cand.ravel()]
        plon, plat = np.repeat(lon, k), np.repeat(lat, k)
        # each candidate in the point's azimuthal equidistant plane on the sphere (numpy,
        # vectorised) picks the nearest; its distance is then measured on the ellipsoid
        x0, y0 = _aeqd(plon, plat, s[:, 0], s[:, 1])
        x1, y1 = _aeqd(plon, plat, s[:, 2], s[:, 3])
        dx, dy = x1 - x0, y1 - y0
        len2 = dx * dx + dy * dy
        t = np.where(len2 > 0, np.clip(-(x0 * dx + y0 * dy) / np.where(len2 > 0, len2, 1),
                                       0.0, 1.0), 0.0)
        dist = np.hypot(x0 + t * dx, y0 + t * dy).reshape(n, k)
        best = np.argmin(dist, axis=1)
        rows = np.arange(n)
        pick = cand[rows, best]
        tb = t.reshape(n, k)[rows, best]
        sb = self.seg[pick]
        # the nearest point of the chosen segment, then the ellipsoidal geodesic to it
        qlon = sb[:, 0] + tb * (sb[:, 2] - sb[:, 0])
        qlat = sb[:, 1] + tb * (sb[:, 3] - sb[:, 1])
        _, _, exact = _GEOD.inv(lon, lat, qlon, qlat)
        return self.owner[pick].astype(np.int32), np.asarray(exact, dtype=np.float64)


NEAREST_CHUNK = 20_000
_R = 6_371_008.8


def _aeqd(lon0: np.ndarray, lat0: np.ndarray, lon: np.ndarray, lat: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Points in the azimuthal equidistant plane of (lon0, lat0) on the sphere, metres:
    the great-circle distance and the initial bearing, exact from the centre."""
    p0, p1 = np.radians(lat0), np.radians(lat)
    dl = np.radians(lon - lon0)
    a = np.sin((p1 - p0) / 2) ** 2 + np.cos(p0) * np.cos(p1) * np.sin(dl / 2) ** 2
    dist = 2 * _R * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    az = np.arctan2(np.sin(dl) * np.cos(p1),
                    np.cos(p0) * np.sin(p1) - np.sin(p0) * np.cos(p1) * np.cos(dl))
    return dist * np.sin(az), dist * np.cos(az)


_GEOD = Geod(ellps="WGS84")
