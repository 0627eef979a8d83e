"""Gi* on H3 hexagons: the same z-scores as PySAL esda on the same data and weights, the
neighbourhood H3 gives, ArcGIS's confidence bins."""

from __future__ import annotations

import warnings

import h3
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial import hotspots as hs

AREA = shapely.box(121.15, 30.95, 121.30, 31.08)


@pytest.fixture(scope="module")
def nb8() -> hs.Neighbourhood:
    return hs.neighbourhood(hs.cells_covering(AREA, 8))


def _esda_z(y: np.ndarray, nb: hs.Neighbourhood) -> np.ndarray:
    from esda.getisord import G_Local
    from libpysal.weights import W

    m = nb.matrix.tolil()
    m.setdiag(0)
    w = W.from_sparse(m.tocsr())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = G_Local(y.astype(float), w, transform="B", star=True, permutations=0)
    return np.asarray(g.Zs)


def test_neighbourhood_is_h3_disk_within_the_area(nb8: hs.Neighbourhood) -> None:
    assert nb8.n > 200
    cells = {int(c) for c in nb8.cells}
    for i in range(0, nb8.n, 7):
        c = h3.int_to_str(int(nb8.cells[i]))
        want = {h3.str_to_int(d) for d in h3.grid_disk(c, 1)} & cells
        got = {int(nb8.cells[j]) for j in nb8.indices[nb8.indptr[i]:nb8.indptr[i + 1]]}
        assert got == want
    # inner cells have themselves and six neighbours; edge cells fewer
    assert nb8.cardinality.max() == 7 and nb8.cardinality.min() < 7


def test_matches_esda_on_clustered_counts(nb8: hs.Neighbourhood) -> None:
    rng = np.random.default_rng(7)
    y = rng.poisson(1.0, nb8.n).astype(float)
    centre = nb8.position(np.array([h3.str_to_int(h3.latlng_to_cell(31.0, 121.2, 8))],
                                   dtype=np.uint64))[0]
    assert centre >= 0
    hot = nb8.indices[nb8.indptr[centre]:nb8.indptr[centre + 1]]
    y[hot] += 12  # a market
    g = hs.gi_star(y, nb8)
    np.testing.assert_allclose(g.z, _esda_z(y, nb8), rtol=1e-9, atol=1e-9)
    assert g.bin[centre] == 3 and g.p[centre] < 0.01
    assert (g.bin[hot] >= 2).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=5, max_size=60), st.integers(0, 10_000))
def test_matches_esda_on_any_counts(values: list[int], seed: int) -> None:
    nb = hs.neighbourhood(hs.cells_covering(shapely.box(121.2, 31.0, 121.24, 31.03), 9))
    rng = np.random.default_rng(seed)
    y = np.zeros(nb.n)
    y[rng.choice(nb.n, size=min(len(values), nb.n), replace=False)] = values[:nb.n]
    g = hs.gi_star(y, nb)
    if y.std() == 0:
        assert (g.z == 0).all() and (g.bin == 0).all() and (g.p == 1).all()
        return
    np.testing.assert_allclose(g.z, _esda_z(y, nb), rtol=1e-9, atol=1e-9)


def test_bins_follow_arcgis_thresholds() -> None:
    nb = hs.neighbourhood(hs.cells_covering(AREA, 8))
    g = hs.gi_star(np.arange(nb.n, dtype=float) % 5, nb)
    z = np.abs(g.z)
    level = np.select([z >= 2.576, z >= 1.960, z >= 1.645], [3, 2, 1], 0)
    np.testing.assert_array_equal(np.abs(g.bin), level)
    np.testing.assert_array_equal(np.sign(g.bin), np.where(level > 0, np.sign(g.z), 0))
    # a single cell has nothing to compare with: z 0, p 1, not significant
    one = hs.gi_star(np.array([5.0]), hs.neighbourhood(nb.cells[:1]))
    assert (one.z[0], one.p[0], one.bin[0]) == (0.0, 1.0, 0)
    # two-sided p: |z| >= 1.960 exactly when p <= 0.05
    sig = np.abs(g.z) >= 1.960
    assert (g.p[sig] <= 0.05 + 1e-9).all() and (g.p[~sig] > 0.05 - 1e-9).all()


def test_several_columns_at_once_equal_one_by_one(nb8: hs.Neighbourhood) -> None:
    rng = np.random.default_rng(3)
    y = rng.poisson(2.0, (nb8.n, 4)).astype(float)
    g = hs.gi_star(y, nb8)
    for j in range(4):
        np.testing.assert_allclose(g.z[:, j], hs.gi_star(y[:, j], nb8).z)


def test_position_and_parents() -> None:
    c9 = h3.str_to_int(h3.latlng_to_cell(31.01, 121.22, 9))
    c11 = h3.str_to_int(h3.latlng_to_cell(31.01, 121.22, 11))
    assert int(hs.parents(np.array([c11], dtype=np.uint64), 9)[0]) == c9
    nb = hs.neighbourhood(np.array([c9], dtype=np.uint64))
    assert list(nb.position(np.array([c9, c11], dtype=np.uint64))) == [0, -1]


def test_longest_run() -> None:
    flags = np.array([[1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0]], bool)
    assert list(hs.longest_run(flags)) == [3, 0, 1]
