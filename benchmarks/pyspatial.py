"""The Python baselines: shapely 2 STRtree queries and a geopandas spatial join."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from .measure import Timing, best_of, timed


@dataclass
class PyRun:
    """One baseline: best timing, points covered (distinct), set-up seconds not timed."""

    name: str
    short: str
    timing: Timing
    runs: int
    covered: int
    setup_s: float
    note: str = ""


def measure(geoms: np.ndarray, codes: np.ndarray, lon: np.ndarray, lat: np.ndarray,
            repeats: int = 3, budget_s: float = 60.0) -> list[PyRun]:
    """STRtree of grids queried by points (intersects == covers for a point and a polygon),
    STRtree of points queried by prepared grids (polygon-outer), and geopandas sjoin."""
    out: list[PyRun] = []
    t_pts, pts = timed(lambda: shapely.points(lon, lat))
    t_tree, tree = timed(lambda: shapely.STRtree(geoms))
    t, pairs, runs = best_of(lambda: tree.query(pts, predicate="intersects"), repeats,
                             budget_s=budget_s)
    out.append(PyRun("shapely STRtree(grids).query(points, 'intersects')", "shapely grid tree",
                     t, runs,
                     int(np.unique(pairs[0]).size), t_pts.wall + t_tree.wall,
                     f"points {t_pts.wall:.2f} s + tree {t_tree.wall:.2f} s, not timed"))

    t_ptree, ptree = timed(lambda: shapely.STRtree(pts))
    t, pairs, runs = best_of(lambda: ptree.query(geoms, predicate="covers"), repeats,
                             budget_s=budget_s)
    out.append(PyRun("shapely STRtree(points).query(grids, 'covers')", "shapely point tree",
                     t, runs,
                     int(np.unique(pairs[1]).size), t_ptree.wall,
                     f"points tree {t_ptree.wall:.2f} s, not timed"))

    t_gdf, (pgdf, ggdf) = timed(lambda: (
        gpd.GeoDataFrame(geometry=pts, crs=4326),
        gpd.GeoDataFrame({"code": codes}, geometry=geoms, crs=4326)))
    t, joined, runs = best_of(lambda: gpd.sjoin(pgdf, ggdf, how="inner", predicate="intersects"),
                              repeats, budget_s=budget_s)
    out.append(PyRun("geopandas sjoin(points, grids, 'intersects')", "geopandas sjoin",
                     t, runs,
                     int(joined.index.nunique()), t_gdf.wall,
                     f"GeoDataFrames {t_gdf.wall:.2f} s, not timed"))
    return out
