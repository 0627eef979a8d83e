"""The fast path (planar table + PostGIS-arithmetic PIP) equals PostGIS ST_Covers with
the lowest-code tie rule, on the demo city: random points, vertices, edge midpoints, and
points 1e-9 degrees either side of edges."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from layers import grids
from layers.resolver import build_index, resolve_points, resolve_sql
from layers.settings import Settings
from layers.versioning import in_generation
from spatial.index import GridIndex

SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def truth(engine: Engine, demo_loaded: int, request: pytest.FixtureRequest
          ) -> Iterator[tuple[GridIndex, Session]]:
    """The demo index and a session for SQL truth."""
    with Session(engine) as s:
        gen = grids.generation_at(s, generation=demo_loaded)
        yield build_index(s, gen, request.getfixturevalue("settings")), s


def _agree(truth: tuple[GridIndex, Session], lon: np.ndarray, lat: np.ndarray) -> None:
    """Every path of the index (the batch table, with cells, one point at a time, the
    product's resolve_points) answers what PostGIS answers."""
    idx, s = truth
    g = idx.lookup(lon, lat)
    fast = [str(idx.codes[i]) if i >= 0 else None for i in g]
    slow = resolve_sql(s, idx.generation, lon, lat)
    bad = [(float(x), float(y), f, t) for x, y, f, t in zip(lon, lat, fast, slow, strict=True)
           if f != t]
    assert not bad, f"{len(bad)} disagreements, first: {bad[:3]}"
    g2, cells = idx.lookup_with_cells(lon, lat)
    assert np.array_equal(g2, g)
    assert np.array_equal(idx.lookup(lon, lat, staged=True), g)
    assert np.array_equal(idx.lookup(lon, lat, staged=False), g)
    one = [idx.lookup_one(float(x), float(y)) for x, y in zip(lon, lat, strict=True)]
    assert [o[0] for o in one] == g.tolist()
    assert [o[1] for o in one] == cells.tolist()
    assert np.array_equal(resolve_points(idx, lon, lat, Settings()).grid, g)


def _segments(idx: GridIndex) -> tuple[np.ndarray, np.ndarray]:
    """All ring segments of the finest grids: (start xy, end xy)."""
    rings = shapely.get_rings(shapely.get_parts(idx.geoms))
    coords = [np.asarray(r.coords) for r in rings]
    a = np.concatenate([c[:-1] for c in coords])
    b = np.concatenate([c[1:] for c in coords])
    return a, b


def test_random_points_in_and_around_the_territory(truth) -> None:  # type: ignore[no-untyped-def]
    idx, _ = truth
    x0, y0, x1, y1 = shapely.total_bounds(idx.geoms)
    rng = np.random.default_rng(11)
    n = 20_000
    lon = rng.uniform(x0 - 0.05, x1 + 0.05, n)
    lat = rng.uniform(y0 - 0.05, y1 + 0.05, n)
    _agree(truth, lon, lat)


def test_every_vertex_and_edge_midpoint(truth) -> None:  # type: ignore[no-untyped-def]
    idx, _ = truth
    a, b = _segments(idx)
    verts = np.unique(a, axis=0)
    mids = (a + b) / 2.0
    pts = np.concatenate([verts, mids])
    _agree(truth, pts[:, 0], pts[:, 1])


def test_points_a_hair_either_side_of_edges(truth) -> None:  # type: ignore[no-untyped-def]
    idx, _ = truth
    a, b = _segments(idx)
    rng = np.random.default_rng(5)
    pick = rng.choice(len(a), size=min(len(a), 15_000), replace=False)
    a, b = a[pick], b[pick]
    t = rng.uniform(0, 1, len(a))[:, None]
    p = a + (b - a) * t
    d = b - a
    normal = np.column_stack([-d[:, 1], d[:, 0]])
    normal /= np.maximum(np.hypot(normal[:, 0], normal[:, 1]), 1e-300)[:, None]
    for eps in (1e-9, -1e-9):
        q = p + normal * eps
        _agree(truth, q[:, 0], q[:, 1])


@SLOW
@given(data=st.data())
def test_property_edges_and_random(truth, data) -> None:  # type: ignore[no-untyped-def]
    idx, _ = truth
    a, b = _segments(idx)
    k = data.draw(st.lists(st.integers(0, len(a) - 1), min_size=1, max_size=50))
    t = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(k), max_size=len(k))))
    off = np.array(data.draw(st.lists(st.sampled_from([0.0, 1e-9, -1e-9, 1e-7, -1e-12]),
                                      min_size=len(k), max_size=len(k))))
    ka = np.array(k)
    p = a[ka] + (b[ka] - a[ka]) * t[:, None]
    p[:, 1] += off
    x0, y0, x1, y1 = shapely.total_bounds(idx.geoms)
    rnd = np.array(data.draw(st.lists(st.tuples(st.floats(x0 - 0.02, x1 + 0.02),
                                                st.floats(y0 - 0.02, y1 + 0.02)),
                                      min_size=1, max_size=50)))
    pts = np.concatenate([p, rnd])
    _agree(truth, pts[:, 0], pts[:, 1])


@SLOW
@given(data=st.data())
def test_property_points_given_in_every_crs(truth, data) -> None:  # type: ignore[no-untyped-def]
    """A point reported in any supported CRS resolves, after normalisation, exactly as
    PostGIS resolves the normalised WGS84 point, and to the grid of the original point."""
    from spatial.crs import from_wgs84, to_wgs84

    idx, _ = truth
    x0, y0, x1, y1 = shapely.total_bounds(idx.geoms)
    crs = data.draw(st.sampled_from(["EPSG:4326", "EPSG:4490", "GCJ-02", "BD-09",
                                     "EPSG:4549", "EPSG:3857", "EPSG:32651"]))
    pts = np.array(data.draw(st.lists(st.tuples(st.floats(x0, x1), st.floats(y0, y1)),
                                      min_size=1, max_size=40)))
    x, y = from_wgs84(pts[:, 0], pts[:, 1], crs)
    lon, lat, info = to_wgs84(x, y, crs)
    assert info.key == crs
    assert np.allclose(lon, pts[:, 0], atol=1e-8) and np.allclose(lat, pts[:, 1], atol=1e-8)
    _agree(truth, lon, lat)


def test_nearest_grid_anywhere_on_earth_is_postgis_geodesic(truth) -> None:  # type: ignore[no-untyped-def]
    """Outside points near and far (other continents, the poles, the antimeridian): the
    nearest grid and its distance agree with PostGIS's geography ST_Distance (spheroid)."""
    idx, s = truth
    rng = np.random.default_rng(5)
    near_lon = rng.uniform(120.9, 121.5, 300)
    near_lat = rng.uniform(30.6, 31.3, 300)
    far_lon = np.concatenate([rng.uniform(-180, 180, 200), [180.0, -180.0, 0.0, -58.4]])
    far_lat = np.concatenate([rng.uniform(-90, 90, 200), [0.0, 89.9, -90.0, -34.6]])
    lon, lat = np.concatenate([near_lon, far_lon]), np.concatenate([near_lat, far_lat])
    out = idx.lookup(lon, lat) < 0
    lon, lat = lon[out], lat[out]
    g, d = idx.nearest(lon, lat)
    assert (g >= 0).all() and np.isfinite(d).all()
    rows = s.execute(text(f"""
        SELECT p.i, n.code, n.dist FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]))
               WITH ORDINALITY AS p(x, y, i)
          CROSS JOIN LATERAL (
              SELECT u.code, ST_Distance(u.geom::geography,
                                         ST_SetSRID(ST_MakePoint(p.x, p.y), 4326)::geography)
                       AS dist
                FROM grid_unit u
               WHERE u.level = 4 AND {in_generation('u')}
               ORDER BY dist LIMIT 1) n ORDER BY p.i"""),
        {"xs": lon.tolist(), "ys": lat.tolist(), "g": idx.generation}).all()
    pg_dist = np.array([r.dist for r in rows])
    # PostGIS measures on the spheroid too: within 0.1 % or 1 m; a tie may name a neighbour
    assert np.all(np.abs(d - pg_dist) <= np.maximum(1.0, 1e-3 * pg_dist)), \
        np.max(np.abs(d - pg_dist) / pg_dist)
    same = np.array([str(idx.codes[i]) == r.code for i, r in zip(g, rows, strict=True)])
    assert same.mean() > 0.97
