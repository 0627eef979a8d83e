"""Getis-Ord Gi* hot-spot statistics on H3 hexagons (no database).

The neighbourhood of a cell is itself plus every cell of the study area within `k` grid
steps (k = 1: the six touching hexagons), binary weights; cells outside the study area
do not count. The z-score is the classic one of ArcGIS "Hot Spot Analysis" and PySAL
``esda.G_Local(star=True, transform="B")``:

    z_i = (Σ_j w_ij x_j − x̄ Σ_j w_ij) / (S √((n Σ_j w_ij² − (Σ_j w_ij)²) / (n − 1)))

with x̄ and S the mean and (population) standard deviation over all n cells. p-values are
two-sided from the normal distribution; the bins are ArcGIS's Gi_Bin: ±3 at 99 %
confidence (|z| ≥ 2.576), ±2 at 95 % (1.960), ±1 at 90 % (1.645), 0 not significant.
No correction for multiple testing is applied (as in ArcGIS without FDR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from h3ronpy import change_resolution, grid_disk
from h3ronpy.vector import ContainmentMode, geometry_to_cells
from scipy import sparse
from scipy.special import ndtr
from shapely.geometry.base import BaseGeometry

# (|z| threshold, bin, confidence %), strongest first
Z_BINS: tuple[tuple[float, int, int], ...] = ((2.576, 3, 99), (1.960, 2, 95), (1.645, 1, 90))
BIN_LABELS: dict[int, str] = {
    3: "hot spot, 99% confidence", 2: "hot spot, 95% confidence",
    1: "hot spot, 90% confidence", 0: "not significant",
    -1: "cold spot, 90% confidence", -2: "cold spot, 95% confidence",
    -3: "cold spot, 99% confidence",
}


def _u64(cells: np.ndarray) -> np.ndarray:
    return np.asarray(cells).astype(np.uint64, copy=False)


def cells_covering(geom: BaseGeometry, res: int) -> np.ndarray:
    """Sorted H3 cells (uint64) of the resolution whose centre lies in the geometry."""
    cells = np.asarray(geometry_to_cells(geom, res,
                                         containment_mode=ContainmentMode.ContainsCentroid))
    return np.unique(_u64(cells))


def parents(cells: np.ndarray, res: int) -> np.ndarray:
    """The ancestors (or the cells themselves) of finer cells at a coarser resolution."""
    return _u64(np.asarray(change_resolution(_u64(cells), res)))


@dataclass(frozen=True)
class Neighbourhood:
    """Binary contiguity weights of a set of cells, self included (Gi*), as CSR arrays."""

    cells: np.ndarray  # sorted uint64
    indptr: np.ndarray  # row i's neighbours are indices[indptr[i]:indptr[i + 1]]
    indices: np.ndarray
    k: int
    _cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        """Number of cells."""
        return int(self.cells.size)

    @cached_property
    def matrix(self) -> sparse.csr_matrix:
        """The n × n weights as a scipy CSR matrix (ones)."""
        data = np.ones(self.indices.size, dtype=np.float64)
        return sparse.csr_matrix((data, self.indices, self.indptr), shape=(self.n, self.n))

    @cached_property
    def cardinality(self) -> np.ndarray:
        """Σ_j w_ij per cell (neighbours in the study area, self included)."""
        return np.diff(self.indptr).astype(np.float64)

    def position(self, cells: np.ndarray) -> np.ndarray:
        """Index of each cell in the study area, -1 where it is not in it."""
        cells = _u64(cells)
        pos = np.searchsorted(self.cells, cells)
        pos[pos >= self.n] = 0
        ok = self.cells[pos] == cells if self.n else np.zeros(cells.size, bool)
        return np.where(ok, pos, -1)

    def description(self) -> str:
        """The neighbourhood in words, for answers."""
        ring = "the six touching hexagons" if self.k == 1 else f"cells within {self.k} steps"
        return (f"Gi* (self included) with binary weights: each H3 cell and {ring} "
                f"(grid_disk k={self.k}) inside the study area")


def neighbourhood(cells: np.ndarray, k: int = 1) -> Neighbourhood:
    """The Gi* neighbourhood of a study area given as H3 cells of one resolution."""
    if k < 1:
        raise ValueError("k must be at least 1")
    cells = np.unique(_u64(cells))
    n = cells.size
    if n == 0:
        empty = np.zeros(1, dtype=np.int64)
        return Neighbourhood(cells, empty, np.zeros(0, dtype=np.int64), k)
    disk = _u64(np.asarray(grid_disk(cells, k, flatten=True)))
    per = disk.size // n
    rows = np.repeat(np.arange(n, dtype=np.int64), per)
    if per * n != disk.size:  # a pentagon has fewer neighbours: fall back to per-cell disks
        lists = grid_disk(cells, k, flatten=False)
        lengths = np.diff(np.asarray(lists.offsets))
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    pos = np.searchsorted(cells, disk)
    pos[pos >= n] = 0
    keep = cells[pos] == disk
    rows, cols = rows[keep], pos[keep].astype(np.int64)  # rows stay in order
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return Neighbourhood(cells, indptr, cols, k)


@dataclass(frozen=True)
class GiStar:
    """Gi* of every cell (one column per variable when given several)."""

    z: np.ndarray
    p: np.ndarray
    bin: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def gi_star(y: np.ndarray, nb: Neighbourhood) -> GiStar:
    """Gi* z-scores, two-sided p-values and confidence bins of counts y (n, or n × m)."""
    x = np.asarray(y, dtype=np.float64)
    one = x.ndim == 1
    if one:
        x = x[:, None]
    n = nb.n
    if x.shape[0] != n:
        raise ValueError(f"{x.shape[0]} values for {n} cells")
    lag = nb.matrix @ x  # Σ_j w_ij x_j
    mean = x.mean(axis=0)
    std = np.sqrt(np.maximum((x * x).mean(axis=0) - mean * mean, 0.0))
    c = nb.cardinality[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        den = std[None, :] * np.sqrt((n * c - c * c) / (n - 1)) if n > 1 else np.zeros_like(x)
        z = np.where(den > 0, (lag - mean[None, :] * c) / den, 0.0)
    p = 2.0 * ndtr(-np.abs(z))
    bins = np.zeros(z.shape, dtype=np.int8)
    for thr, b, _ in reversed(Z_BINS):
        bins[np.abs(z) >= thr] = b
    bins = (np.sign(z) * bins).astype(np.int8)
    if one:
        return GiStar(z[:, 0], p[:, 0], bins[:, 0], mean, std)
    return GiStar(z, p, bins, mean, std)


def longest_run(flags: np.ndarray) -> np.ndarray:
    """Per row, the longest run of consecutive True values (n × m booleans)."""
    flags = np.asarray(flags, dtype=bool)
    best = np.zeros(flags.shape[0], dtype=np.int64)
    cur = np.zeros_like(best)
    for j in range(flags.shape[1]):
        cur = np.where(flags[:, j], cur + 1, 0)
        best = np.maximum(best, cur)
    return best
