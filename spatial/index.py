"""The in-memory resolver: H3 cells -> finest grid, exact PostGIS-equal test on boundary cells.

Resolution 11 (edge ≈ 25 m, area ≈ 2,150 m²): the smallest demo grid (≈ 0.1 km²) still
spans ~45 cells, only cells within one circumradius of a grid edge (≈ 14 % of the demo
area) need the exact test, and the dense table stays ≈ 2 MB for Songjiang and ≈ 100 MB for
a 38,000 km² megacity. A cell is *interior* to a grid when its centre lies in the grid
eroded by the cell's circumradius (+ margin): then every point of the cell is inside that
grid by at least the margin, which is 10⁷ times the rounding error of PostGIS's test. Cells
whose centre lies in a grid dilated by the same distance and that are not interior keep
that grid as a candidate. Candidates are kept in code order, so for a point on an edge
shared by two grids the lowest code wins (the documented tie rule; the SQL path applies
the same rule).

Lookup: cells at the index resolution, then a dense table addressed by the H3 digits
below a resolution-6 block (7⁵ = 16,807 slots a block): no hashing, no Python loop.
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
from spatial.pip import PackedPolygons

DEFAULT_RES = 11
BLOCK_DIGITS = 5
# margin added to the circumradius: 1 cm, far above rounding (1e-9 m) and below any edge
MARGIN_M = 0.01
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
    resolution: int
    interior_cells: int
    boundary_cells: int
    blocks: int
    seconds: float
    nbytes: int


@dataclass
class GridIndex:
    """Finest-level grids of one generation, looked up by H3 cell and exact test."""

    generation: int
    resolution: int
    codes: np.ndarray
    names: np.ndarray
    levels: list[Level]
    geoms: np.ndarray  # shapely geometries of the finest grids (lon/lat)
    packed: PackedPolygons
    block_keys: np.ndarray  # uint64 sorted
    table: np.ndarray  # int32: >= 0 grid, -1 outside, <= -2 boundary list -(k+2)
    cand_off: np.ndarray  # int64
    cand: np.ndarray  # int32 grid indexes, ascending (= code order)
    stats: BuildStats
    meta: dict[str, Any] = field(default_factory=dict)
    _nearest: Any = None
    _block_of: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._block_of = {int(k): i for i, k in enumerate(self.block_keys)}

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
        bounds = tuple(shapely.total_bounds(geoms_a))
        radius_m = h3index.max_circumradius_m(resolution, bounds) * 1.1 + MARGIN_M
        # degrees, conservative in both directions (a degree of longitude is the shortest)
        max_lat = max(abs(bounds[1]), abs(bounds[3]))
        radius_deg = radius_m / (111_320.0 * math.cos(math.radians(max_lat)))
        # buffer polygons are inscribed in the true offset curve: enlarge by 1/cos(pi/8)
        dist = radius_deg / math.cos(math.pi / 8)
        eroded = shapely.buffer(geoms_a, -dist, quad_segs=2)
        dilated = shapely.buffer(geoms_a, dist, quad_segs=2)
        to_wkb = [None if shapely.is_empty(g) else shapely.to_wkb(g) for g in eroded]
        in_cells, in_owner = h3index.cells_with_centre_in(to_wkb, resolution)  # type: ignore[arg-type]
        dil_cells, dil_owner = h3index.cells_with_centre_in(
            [shapely.to_wkb(g) for g in dilated], resolution)
        prefix_res = resolution - BLOCK_DIGITS
        block_keys = np.unique(h3index.prefix(dil_cells, prefix_res))
        table = np.full(len(block_keys) * 7**BLOCK_DIGITS, _OUTSIDE, dtype=np.int32)

        def slots(cells: np.ndarray) -> np.ndarray:
            blk = np.searchsorted(block_keys, h3index.prefix(cells, prefix_res))
            return blk * 7**BLOCK_DIGITS + h3index.digits_offset(cells, prefix_res, resolution)

        table[slots(in_cells)] = in_owner
        dil_slots = slots(dil_cells)
        edge = table[dil_slots] < 0
        b_slots, b_owner = dil_slots[edge], dil_owner[edge]
        srt = np.lexsort((b_owner, b_slots))
        b_slots, b_owner = b_slots[srt], b_owner[srt]
        keep = np.ones(len(b_slots), dtype=bool)
        keep[1:] = (b_slots[1:] != b_slots[:-1]) | (b_owner[1:] != b_owner[:-1])
        b_slots, b_owner = b_slots[keep], b_owner[keep]
        uniq, first = np.unique(b_slots, return_index=True)
        cand_off = np.append(first, len(b_slots)).astype(np.int64)
        table[uniq] = -(np.arange(len(uniq), dtype=np.int32) + 2)
        packed = PackedPolygons(list(geoms_a))
        stats = BuildStats(
            grids=len(codes_a), resolution=resolution, interior_cells=len(in_cells),
            boundary_cells=len(uniq), blocks=len(block_keys), seconds=0.0, nbytes=0)
        idx = cls(generation=generation, resolution=resolution, codes=codes_a, names=names_a,
                  levels=lv, geoms=geoms_a, packed=packed, block_keys=block_keys, table=table,
                  cand_off=cand_off, cand=b_owner.astype(np.int32), stats=stats,
                  meta={"radius_m": radius_m, "prefix_res": prefix_res,
                        "bounds": bounds})
        # compile the exact tests now rather than on the first request
        idx.lookup(np.array([bounds[0]]), np.array([bounds[1]]))
        if len(uniq):
            idx.packed.first_covering_one(bounds[0], bounds[1], 0, cand_off, idx.cand)
        stats.seconds = time.perf_counter() - t0
        stats.nbytes = idx.nbytes
        return idx

    @property
    def nbytes(self) -> int:
        """Memory of the lookup structures, in bytes (geometry objects not counted)."""
        return int(self.table.nbytes + self.block_keys.nbytes + self.cand_off.nbytes
                   + self.cand.nbytes + self.packed.nbytes
                   + sum(lv.of_finest.nbytes for lv in self.levels))

    # ------------------------------------------------------------------ lookup

    def cells(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """H3 cells of the points at the index resolution."""
        return h3index.cells_for_points(lon, lat, self.resolution)

    def lookup(self, lon: np.ndarray, lat: np.ndarray,
               cells: np.ndarray | None = None) -> np.ndarray:
        """Finest grid index of each WGS84 point (-1 outside every grid); vectorised."""
        lon = np.ascontiguousarray(lon, dtype=np.float64)
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        if cells is None:
            cells = self.cells(lon, lat)
        pres = self.meta["prefix_res"]
        pre = h3index.prefix(cells, pres)
        blk = np.searchsorted(self.block_keys, pre)
        blk_c = np.minimum(blk, len(self.block_keys) - 1)
        known = self.block_keys[blk_c] == pre
        slot = blk_c * 7**BLOCK_DIGITS + h3index.digits_offset(cells, pres, self.resolution)
        out = np.where(known, self.table[np.where(known, slot, 0)], _OUTSIDE).astype(np.int32)
        edge = np.flatnonzero(out <= -2)
        if edge.size:
            lists = (-out[edge] - 2).astype(np.int64)
            out[edge] = self.packed.first_covering(lon[edge], lat[edge], lists,
                                                   self.cand_off, self.cand)
        return out

    def lookup_one(self, lon: float, lat: float) -> tuple[int, int]:
        """(grid index or -1, H3 cell) of one point: the same table and exact test as
        lookup(), without array overheads (a few microseconds)."""
        res = self.resolution
        pres = self.meta["prefix_res"]
        cell = h3index.cell_for_point(lon, lat, res)
        blk = self._block_of.get(cell >> (3 * (15 - pres)))
        if blk is None:
            return -1, cell
        v = int(self.table[blk * 7**BLOCK_DIGITS + h3index.digits_offset_one(cell, pres, res)])
        if v >= -1:
            return v, cell
        return self.packed.first_covering_one(lon, lat, -v - 2, self.cand_off, self.cand), cell

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
