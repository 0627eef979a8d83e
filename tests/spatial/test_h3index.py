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
