"""The planar table answers exactly what the exact test over every grid answers (lowest
code first), on awkward grids: shared edges, holes, multipolygons, overlaps, slivers, and
points on table-cell borders, vertices and a hair either side of edges."""

from __future__ import annotations

import numpy as np
import shapely
from shapely import MultiPolygon, Polygon, box

from spatial import index as index_mod
from spatial.index import GridIndex
from spatial.pip import PackedPolygons


def _truth(geoms: list[Polygon | MultiPolygon], lon: np.ndarray, lat: np.ndarray
           ) -> np.ndarray:
    """Brute force: the first grid (in the given, code-sorted order) covering each point."""
    packed = PackedPolygons(geoms)
    out = np.full(len(lon), -1, dtype=np.int32)
    for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)):
        for g in range(len(geoms)):
            if packed.covers(g, x, y):
                out[i] = g
                break
    return out


def _grids() -> list[Polygon | MultiPolygon]:
    x0, y0 = 121.2, 31.0
    d = 0.004
    out: list[Polygon | MultiPolygon] = []
    for i in range(6):
        for j in range(5):
            out.append(box(x0 + i * d, y0 + j * d, x0 + (i + 1) * d, y0 + (j + 1) * d))
    # a grid with a hole, a two-part grid, a triangle sliver, an overlapping grid
    out.append(Polygon(box(x0 - 3 * d, y0, x0 - d, y0 + 2 * d).exterior.coords,
                       [box(x0 - 2.5 * d, y0 + 0.5 * d, x0 - 1.5 * d, y0 + 1.5 * d)
                        .exterior.coords]))
    out.append(MultiPolygon([box(x0, y0 - 2 * d, x0 + d, y0 - d),
                             box(x0 + 2 * d, y0 - 2 * d, x0 + 3 * d, y0 - d)]))
    out.append(Polygon([(x0 + 6 * d, y0), (x0 + 9 * d, y0 + 1e-5), (x0 + 6 * d, y0 + 2e-5)]))
    out.append(box(x0 + 0.5 * d, y0 + 0.5 * d, x0 + 2.5 * d, y0 + 1.5 * d))  # overlaps
    return out


def _check(geoms: list[Polygon | MultiPolygon], lon: np.ndarray, lat: np.ndarray) -> None:
    codes = [f"G{i:04d}" for i in range(len(geoms))]  # already in code order
    idx = GridIndex.build(0, codes, codes, geoms)
    want = _truth(geoms, lon, lat)
    got = idx.lookup(lon, lat)
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:5]
    for staged in (True, False):
        got = idx.lookup(lon, lat, staged=staged)
        assert np.array_equal(got, want), (staged, np.flatnonzero(got != want)[:5])
    g2, cells = idx.lookup_with_cells(lon, lat)
    assert np.array_equal(g2, want) and len(cells) == len(lon)
    for k in range(0, len(lon), max(1, len(lon) // 400)):
        assert idx.lookup_one(float(lon[k]), float(lat[k]))[0] == want[k]


def test_random_vertices_edges_and_hairs() -> None:
    geoms = _grids()
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = shapely.total_bounds(np.array(geoms, dtype=object))
    lon = rng.uniform(x0 - 0.01, x1 + 0.01, 30_000)
    lat = rng.uniform(y0 - 0.01, y1 + 0.01, 30_000)
    coords = np.concatenate([shapely.get_coordinates(g) for g in geoms])
    rings = [shapely.get_coordinates(r) for g in geoms
             for r in shapely.get_rings(shapely.get_parts(g))]
    a = np.concatenate([c[:-1] for c in rings])
    b = np.concatenate([c[1:] for c in rings])
    t = rng.uniform(0, 1, (len(a), 1))
    on = a + (b - a) * t
    pts = [coords, (a + b) / 2, on]
    for eps in (1e-9, -1e-9, 1e-12, -1e-12, 1e-7):
        pts.append(on + np.array([0.0, eps]))
        pts.append(on + np.array([eps, 0.0]))
    p = np.concatenate(pts)
    _check(geoms, np.concatenate([lon, p[:, 0]]), np.concatenate([lat, p[:, 1]]))


def test_points_on_table_cell_borders() -> None:
    geoms = _grids()
    codes = [f"G{i:04d}" for i in range(len(geoms))]
    f = GridIndex.build(0, codes, codes, geoms).frame
    ix = np.arange(f.nx + 1)
    iy = np.arange(f.ny + 1)
    gx, gy = np.meshgrid(f.x0 + ix * f.dx, f.y0 + iy * f.dy)
    lon = np.concatenate([gx.ravel(), np.nextafter(gx.ravel(), -np.inf)])
    lat = np.concatenate([gy.ravel(), np.nextafter(gy.ravel(), np.inf)])
    _check(geoms, lon, lat)


def test_far_nan_and_empty() -> None:
    geoms = _grids()
    codes = [f"G{i:04d}" for i in range(len(geoms))]
    idx = GridIndex.build(0, codes, codes, geoms)
    lon = np.array([np.nan, 0.0, -180.0, 180.0, 121.2, np.inf])
    lat = np.array([31.0, np.nan, -90.0, 90.0, -31.0, 31.0])
    assert idx.lookup(lon, lat).tolist() == [-1] * 6
    assert idx.lookup(np.empty(0), np.empty(0)).shape == (0,)
    assert idx.lookup_grid_one(float("nan"), 31.0) == -1


def test_table_is_capped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A tiny cell budget still gives exact answers (cells grow, lists lengthen)."""
    monkeypatch.setattr(index_mod, "MAX_CELLS", 500)
    geoms = _grids()
    rng = np.random.default_rng(2)
    x0, y0, x1, y1 = shapely.total_bounds(np.array(geoms, dtype=object))
    lon = rng.uniform(x0, x1, 20_000)
    lat = rng.uniform(y0, y1, 20_000)
    _check(geoms, lon, lat)


def test_nearest_near_path_matches_brute_force() -> None:
    """Outside points near the territory: the nearest grid by geodesic distance (checked
    against pyproj over every outline segment) and its distance within a centimetre."""
    from pyproj import Geod

    geoms = _grids()
    codes = [f"G{i:04d}" for i in range(len(geoms))]
    idx = GridIndex.build(0, codes, codes, geoms)
    rng = np.random.default_rng(9)
    x0, y0, x1, y1 = shapely.total_bounds(idx.geoms)
    lon = rng.uniform(x0 - 0.03, x1 + 0.03, 3000)
    lat = rng.uniform(y0 - 0.03, y1 + 0.03, 3000)
    out = idx.lookup(lon, lat) < 0
    lon, lat = lon[out], lat[out]
    g, d = idx.nearest(lon, lat)
    assert (g >= 0).all()
    geod = Geod(ellps="WGS84")
    # brute force: densified boundaries, geodesic to every vertex (upper bound on the truth)
    dens = [shapely.get_coordinates(shapely.segmentize(shapely.boundary(x), 1e-5))
            for x in idx.geoms]
    nb = idx._nearest.near
    for k in range(0, len(lon), 10):
        best = min(float(np.min(geod.inv(np.full(len(c), lon[k]), np.full(len(c), lat[k]),
                                          c[:, 0], c[:, 1])[2])) for c in dens)
        near = (nb.x0 <= lon[k] < nb.x0 + nb.nx * nb.bw) and (nb.y0 <= lat[k] < nb.y0
                                                               + nb.ny * nb.bh)
        # the near path finds the nearest point; the far path (KD-tree of segment ends)
        # may pick a slightly farther one, within PostGIS's test tolerance
        slack = 0.01 if near else max(1.0, 1e-3 * best)
        assert best - 2.0 <= d[k] <= best + slack, (k, near, d[k], best)


def test_nearest_early_stop_is_the_full_scan() -> None:
    """The near path's early stop (bounds sorted per bucket) answers exactly what scanning
    every listed segment answers, on the small grids and on a big, wavy territory far
    north (where a point's plane differs most from a bucket row's), points near and far,
    in batches large enough to be visited bucket by bucket."""
    from shapely.affinity import scale, translate

    rng = np.random.default_rng(11)
    wavy = Polygon([(np.cos(a) * (1 + 0.3 * np.sin(7 * a)), np.sin(a) * (1 + 0.3 * np.sin(7 * a)))
                    for a in np.linspace(0, 2 * np.pi, 400, endpoint=False)])
    north = [translate(scale(wavy, 2.0, 1.0, origin=(0, 0)), 20.0, 62.0)]
    north += [translate(scale(box(-0.2, -0.2, 0.2, 0.2), 1, 1, origin=(0, 0)), 20.0 + dx, 62.0)
              for dx in (-1.0, 1.0)]
    for geoms in (_grids(), north):
        codes = [f"G{i:04d}" for i in range(len(geoms))]
        idx = GridIndex.build(0, codes, codes, geoms)
        x0, y0, x1, y1 = shapely.total_bounds(idx.geoms)
        w, h = x1 - x0, y1 - y0
        lon = rng.uniform(x0 - 0.3 * w, x1 + 0.3 * w, 30_000)
        lat = rng.uniform(y0 - 0.3 * h, y1 + 0.3 * h, 30_000)
        out = idx.lookup(lon, lat) < 0
        lon, lat = lon[out], lat[out]
        g, d = idx.nearest(lon, lat)
        e = idx._nearest
        nb = e.near
        full_g = np.full(len(lon), -1, dtype=np.int32)
        full_d = np.full(len(lon), np.nan)
        index_mod._nearest_near(lon, lat, nb.x0, nb.y0, 1.0 / nb.bw, 1.0 / nb.bh, nb.nx,
                                nb.ny, nb.off, nb.seg, np.zeros_like(nb.low), nb.row_kx,
                                nb.row_ky, nb.l_max, nb.d_box, e.seg, e.owner,
                                index_mod._WGS84_E2, full_g, full_d)
        near = full_g >= 0
        assert near.mean() > 0.5
        assert np.array_equal(g[near], full_g[near]) and np.array_equal(d[near], full_d[near])
