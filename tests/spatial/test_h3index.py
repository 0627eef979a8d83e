"""The numba port of latLngToCell equals h3-py (H3 C 4.5) and h3ronpy everywhere: the
globe, near the 12 pentagons, the poles and the antimeridian, every resolution."""

from __future__ import annotations

import h3.api.basic_int as h3i
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial import h3index


def _points() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 20_000
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    pent = np.array([h3i.cell_to_latlng(p) for p in h3i.get_pentagons(0)])
    near = [pent + rng.normal(0, s, pent.shape) for s in (1e-9, 1e-6, 1e-3, 0.1, 2.0)
            for _ in range(40)]
    extra = np.concatenate([pent, *near])
    lat = np.concatenate([lat, np.clip(extra[:, 0], -90, 90), [90.0, -90.0, 0.0, 0.0]])
    lon = np.concatenate([lon, extra[:, 1], [0.0, 0.0, 180.0, -180.0]])
    return lon, lat


@pytest.mark.parametrize("res", [0, 1, 2, 5, 9, 10, 11, 12, 15])
def test_port_equals_h3py_everywhere(res: int) -> None:
    lon, lat = _points()
    mine = h3index.cells_for_points(lon, lat, res)
    ref = np.array([h3i.latlng_to_cell(a, b, res) for a, b in zip(lat, lon, strict=True)],
                   dtype=np.uint64)
    bad = np.flatnonzero(mine != ref)
    assert bad.size == 0, [(lat[i], lon[i], hex(mine[i]), hex(ref[i])) for i in bad[:3]]


def test_port_equals_h3ronpy_on_a_city() -> None:
    rng = np.random.default_rng(4)
    lon = rng.uniform(121.0, 121.4, 200_000)
    lat = rng.uniform(30.9, 31.2, 200_000)
    assert np.array_equal(h3index.cells_for_points(lon, lat, 11),
                          h3index.cells_for_points_h3ronpy(lon, lat, 11))


def test_points_on_cell_edges_and_vertices() -> None:
    """Cell boundaries (where the fast way defers to H3's own arithmetic)."""
    rng = np.random.default_rng(6)
    lon0 = rng.uniform(-180, 180, 300)
    lat0 = rng.uniform(-80, 80, 300)
    for res in (3, 11):
        pts = []
        for a, b in zip(lat0, lon0, strict=True):
            ring = np.array(h3i.cell_to_boundary(h3i.latlng_to_cell(a, b, res)))
            mids = (ring + np.roll(ring, 1, axis=0)) / 2
            pts.append(np.concatenate([ring, mids]))
        p = np.concatenate(pts)
        mine = h3index.cells_for_points(p[:, 1], p[:, 0], res)
        ref = np.array([h3i.latlng_to_cell(a, b, res) for a, b in p], dtype=np.uint64)
        assert np.array_equal(mine, ref)


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(-90, 90), lon=st.floats(-180, 180), res=st.integers(0, 15))
def test_property_one_point(lat: float, lon: float, res: int) -> None:
    got = h3index.cells_for_points(np.array([lon]), np.array([lat]), res)[0]
    assert int(got) == h3i.latlng_to_cell(lat, lon, res)


def test_not_finite_is_null() -> None:
    got = h3index.cells_for_points(np.array([np.nan, 1.0]), np.array([0.0, np.inf]), 9)
    assert got.tolist() == [0, 0]


def _clusters(centres: np.ndarray, sds: tuple[float, ...], n: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """n points around each (lat, lon) centre at each spread, cluster after cluster (so the
    batch kernel's cache of coarse digits is hit, missed and overwritten)."""
    rng = np.random.default_rng(seed)
    lat, lon = [], []
    for a, b in centres:
        for s in sds:
            lat.append(np.clip(a + rng.normal(0, s, n), -90, 90))
            lon.append((b + rng.normal(0, s, n) + 180) % 360 - 180)
    return np.concatenate(lon), np.concatenate(lat)


@pytest.mark.parametrize("res", [1, 4, 5, 6, 8, 11, 14])
def test_batches_around_pentagons_and_face_centres(res: int) -> None:
    """Clustered batches where the cached coarse digits matter most: inside the pentagon
    base cells (whose digit rotations follow the leading digit) and at the icosahedron's
    face centres (where the fast projection hands over to H3's arithmetic)."""
    pent = np.array([h3i.cell_to_latlng(p) for p in h3i.get_pentagons(0)])
    fc = h3index._FC
    faces = np.column_stack([np.degrees(np.arcsin(fc[:, 2])),
                             np.degrees(np.arctan2(fc[:, 1], fc[:, 0]))])
    lon, lat = _clusters(np.concatenate([pent, faces]), (1e-7, 1e-4, 0.01, 0.5, 5.0), 1500,
                         seed=res)
    assert np.array_equal(h3index.cells_for_points(lon, lat, res),
                          h3index.cells_for_points_h3ronpy(lon, lat, res))


@settings(max_examples=60, deadline=None)
@given(lat=st.floats(-89, 89), lon=st.floats(-180, 180), spread=st.floats(1e-6, 3.0),
       res=st.integers(0, 15), seed=st.integers(0, 2**16))
def test_property_batch_around_a_point(lat: float, lon: float, spread: float, res: int,
                                       seed: int) -> None:
    lo, la = _clusters(np.array([[lat, lon]]), (spread,), 300, seed)
    got = h3index.cells_for_points(lo, la, res)
    ref = np.array([h3i.latlng_to_cell(a, b, res) for a, b in zip(la, lo, strict=True)],
                   dtype=np.uint64)
    assert np.array_equal(got, ref)
