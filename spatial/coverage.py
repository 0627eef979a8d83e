"""The nested-grid invariants, checked in memory (shapely 2 / GEOS), and coverage cleaning.

A grid deployment is a tree of polygonal coverages: every unit lies inside its parent, the
children of a parent tile it without overlap or gap, codes follow the deployment's scheme.
`validate_coverage` checks all of that for parallel sequences of codes, level ranks, parent
codes and lon/lat (EPSG:4326) geometries, and gives every problem its geometry (the overlap,
the gap, the part outside the parent). `clean_coverage` snaps a nearly-valid level into an
exact coverage ("snap"), refusing gaps and overlaps too large to give away silently;
`rebuild_parents` makes parents the union of their children afterwards.

Areas are planar areas in a metric CRS (default EPSG:4549, CGCS2000 3-degree GK 120E);
geometry work happens in lon/lat, as the PostGIS checks did, except for cleaning, which runs
on metric coordinates (so snapping distances are metres). Pure: numpy, shapely, pyproj.
"""

from __future__ import annotations

import math
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

__all__ = [
    "KINDS",
    "CleanResult",
    "CoverageConfig",
    "Problem",
    "UnitChange",
    "areal",
    "clean_coverage",
    "coverage_union",
    "metric_area",
    "rebuild_parents",
    "to_lonlat",
    "to_metric",
    "validate_coverage",
]

KINDS = ("invalid_geometry", "duplicate_code", "bad_code", "bad_parent", "outside_parent",
         "sibling_overlap", "gap_in_parent")

ObjArray = npt.NDArray[np.object_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_LOCATION = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)")


@dataclass(frozen=True)
class CoverageConfig:
    """What the checks need to know of the deployment.

    code_lengths: {rank: digits or None = any length}; level_keys: {rank: key} for the
    messages; finest_rank: the finest configured level (the 15-digit serial rule applies
    there), default the highest rank of code_lengths, else the finest level present.
    """

    code_lengths: Mapping[int, int | None] = field(default_factory=dict)
    metric_srid: int = 4549
    tolerance_m2: float = 1.0
    finest_rank: int | None = None
    level_keys: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """One broken invariant: what, which units, where, and the problem's own geometry."""

    kind: str
    codes: tuple[str, ...]
    detail: str
    lon: float | None = None
    lat: float | None = None
    geometry: BaseGeometry | None = field(default=None, compare=False, repr=False)
    area_m2: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: kind, codes, detail, location [lon, lat], area_m2."""
        loc = [self.lon, self.lat] if self.lon is not None else None
        return {"kind": self.kind, "codes": list(self.codes), "detail": self.detail,
                "location": loc, "area_m2": self.area_m2}

    def as_feature(self) -> dict[str, Any]:
        """A GeoJSON Feature: the problem's geometry (full precision), else its point."""
        if self.geometry is not None and not self.geometry.is_empty:
            geom: Any = shapely.geometry.mapping(self.geometry)
        elif self.lon is not None and self.lat is not None:
            geom = {"type": "Point", "coordinates": [self.lon, self.lat]}
        else:
            geom = None
        return {"type": "Feature", "geometry": geom, "properties": self.as_dict()}


# ---------------------------------------------------------------- coordinates

_local = threading.local()


def _transformer(srid: int, inverse: bool) -> Transformer:
    """A cached pyproj transformer for this thread (they are not thread-safe)."""
    cache: dict[tuple[int, bool], Transformer] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (srid, inverse)
    tr = cache.get(key)
    if tr is None:
        src, dst = (srid, 4326) if inverse else (4326, srid)
        tr = cache[key] = Transformer.from_crs(src, dst, always_xy=True)
    return tr


def _transform(geoms: Any, srid: int, inverse: bool) -> ObjArray:
    tr = _transformer(srid, inverse)

    def fn(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        return tr.transform(x, y)

    arr = np.asarray(geoms, dtype=object)
    if arr.size == 0:
        return arr
    return np.asarray(shapely.transform(arr, fn, interleaved=False), dtype=object)


def to_metric(geoms: Any, srid: int = 4549) -> ObjArray:
    """lon/lat geometries (array) -> the metric CRS, vectorised."""
    return _transform(geoms, srid, inverse=False)


def to_lonlat(geoms: Any, srid: int = 4549) -> ObjArray:
    """Metric geometries (array) -> lon/lat, vectorised."""
    return _transform(geoms, srid, inverse=True)


# longest segment, in degrees (about 11 m), before an area is measured in the metric CRS
DENSIFY_DEG = 1e-4


def metric_area(geoms: Any, srid: int = 4549, *, densify: bool = True) -> FloatArray:
    """Planar areas in m² of lon/lat geometries in the metric CRS (0 for None/empty).

    Segments are first cut to at most DENSIFY_DEG: an edge is straight in lon/lat, and a
    long one projected by its two ends only is a chord that strays from it (a 2 km edge
    along a parallel: about 4 cm at the middle). A sliver between a parent's long edge and
    its children's vertices on that same edge would measure tens of m² instead of nothing.
    densify=False measures by the vertices only (cheaper, for estimates that are checked).
    """
    arr = _objects(geoms)
    out = np.zeros(len(arr), dtype=np.float64)
    ok = ~shapely.is_missing(arr) & ~shapely.is_empty(arr)
    if ok.any():
        # part by part: GEOS's densifier can return a MultiPolygon of a large part and a
        # degenerate one as the degenerate Polygon alone (a 6,568 m² overlap measured 0)
        parts, owner = shapely.get_parts(arr[ok], return_index=True)
        if densify:
            parts = shapely.segmentize(parts, max_segment_length=DENSIFY_DEG)
        areas = shapely.area(to_metric(parts, srid))
        out[ok] = np.bincount(owner, weights=areas, minlength=int(ok.sum()))
    return out


def coverage_union(geoms: Sequence[BaseGeometry]) -> BaseGeometry:
    """The union of polygons that form a coverage: GEOS's coverage union, which dissolves
    shared edges without noding, trusted only when it is valid and its area adds up (a
    split leaves T-junctions on its neighbours' edges, and the coverage union of those can
    come out valid but wrong); the full overlay union otherwise."""
    arr = np.asarray(list(geoms), dtype=object)
    if len(arr) == 1:
        return arr[0]
    try:
        out = shapely.coverage_union_all(arr)
        total = float(shapely.area(arr).sum())
        if shapely.is_valid(out) and abs(float(shapely.area(out)) - total) <= 1e-9 * total:
            return out
    except shapely.errors.GEOSException:
        pass
    return shapely.union_all(arr)


def areal(g: BaseGeometry) -> shapely.Polygon | shapely.MultiPolygon:
    """The areal part of an overlay's result (GEOS may return a collection with slivers of
    lower dimension), as a Polygon when it is one piece."""
    if isinstance(g, shapely.Polygon | shapely.MultiPolygon):
        return g
    polys = [p for p in shapely.get_parts(g)
             if isinstance(p, shapely.Polygon) and not p.is_empty]
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def _objects(seq: Any) -> ObjArray:
    arr = np.empty(len(seq), dtype=object)
    arr[:] = list(seq)
    return arr


def _points(geoms: ObjArray) -> tuple[list[float | None], list[float | None]]:
    """A point on each geometry (lon, lat), None where there is none."""
    lon: list[float | None] = [None] * len(geoms)
    lat: list[float | None] = [None] * len(geoms)
    if len(geoms) == 0:
        return lon, lat
    with np.errstate(all="ignore"):
        try:
            pts = shapely.point_on_surface(geoms)
        except shapely.errors.GEOSException:
            pts = np.array([_safe_point(g) for g in geoms], dtype=object)
    xs = shapely.get_x(pts)
    ys = shapely.get_y(pts)
    for i in range(len(geoms)):
        if not (math.isnan(xs[i]) or math.isnan(ys[i])):
            lon[i], lat[i] = float(xs[i]), float(ys[i])
    return lon, lat


def _safe_point(g: BaseGeometry | None) -> BaseGeometry | None:
    if g is None or g.is_empty:
        return None
    try:
        return shapely.point_on_surface(g)
    except shapely.errors.GEOSException:
        return shapely.centroid(g)


# ---------------------------------------------------------------- the units


@dataclass
class _Units:
    """The units as arrays, with the lookups every check needs."""

    codes: list[str]
    levels: IntArray
    parents: list[str | None]
    geoms: ObjArray
    valid: npt.NDArray[np.bool_]
    pidx: IntArray  # index of the parent unit (first with that code), -1 if none
    pgroup: IntArray  # sibling group: one integer per parent code (None included)
    first: dict[str, int]

    @classmethod
    def build(cls, codes: Sequence[str], levels: Sequence[int],
              parent_codes: Sequence[str | None], geometries: Sequence[Any]) -> _Units:
        n = len(codes)
        if not (len(levels) == len(parent_codes) == len(geometries) == n):
            raise ValueError("codes, levels, parent_codes and geometries differ in length")
        codes_ = [str(c) for c in codes]
        parents = [None if p is None else str(p) for p in parent_codes]
        geoms = _objects(geometries)
        valid = np.zeros(n, dtype=bool)
        if n:
            present = ~shapely.is_missing(geoms)
            present[present] = ~shapely.is_empty(geoms[present])
            valid[present] = shapely.is_valid(geoms[present])
        first: dict[str, int] = {}
        for i, c in enumerate(codes_):
            first.setdefault(c, i)
        pidx = np.fromiter((first.get(p, -1) if p is not None else -1 for p in parents),
                           dtype=np.int64, count=n)
        group_ids: dict[str | None, int] = {}
        pgroup = np.fromiter((group_ids.setdefault(p, len(group_ids)) for p in parents),
                             dtype=np.int64, count=n)
        return cls(codes_, np.asarray(levels, dtype=np.int64).reshape(n), parents, geoms,
                   valid, pidx, pgroup, first)


def validate_coverage(codes: Sequence[str], levels: Sequence[int],
                      parent_codes: Sequence[str | None], geometries: Sequence[Any],
                      config: CoverageConfig | None = None, *,
                      gaps_for: Sequence[str] | None = None) -> list[Problem]:
    """Every broken nested-grid invariant of the units, in the order of KINDS.

    Same checks as the PostGIS ones they replace: invalid_geometry (those units take no
    part in the area checks), duplicate_code, bad_code, bad_parent, outside_parent,
    sibling_overlap (same level and parent, interiors intersect), gap_in_parent (for every
    level above the finest one present); areas above config.tolerance_m2 count.
    """
    cfg = config or CoverageConfig()
    u = _Units.build(codes, levels, parent_codes, geometries)
    out: list[Problem] = []
    out += _invalid(u)
    out += _duplicates(u)
    out += _bad_codes(u, cfg)
    out += _bad_parents(u)
    covered, outside = _outside_parent(u, cfg)
    out += outside
    pairs, overlaps = _overlaps(u, cfg, u.pgroup, "sibling_overlap",
                                "m² overlap between siblings")
    out += overlaps
    wanted = None if gaps_for is None else set(gaps_for)
    among = None if wanted is None else np.fromiter((c in wanted for c in u.codes), bool,
                                                    count=len(u.codes))
    out += _gaps(u, cfg, covered, pairs, among)
    return out


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.codes)


def _invalid(u: _Units) -> list[Problem]:
    bad = np.flatnonzero(~u.valid)
    out: list[Problem] = []
    for i in bad.tolist():
        g = u.geoms[i]
        lon = lat = None
        if g is None:
            reason = "no geometry"
        elif g.is_empty:
            reason = "empty geometry"
        else:
            reason = str(shapely.is_valid_reason(g))
            m = _LOCATION.search(reason)
            if m:
                lon, lat = float(m.group(1)), float(m.group(2))
        out.append(Problem("invalid_geometry", (u.codes[i],), reason, lon, lat, g, None))
    return _sorted(out)


def _duplicates(u: _Units) -> list[Problem]:
    where: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(u.codes):
        where[c].append(i)
    out = []
    for c, idx in where.items():
        if len(idx) > 1:
            geom = shapely.GeometryCollection([u.geoms[i] for i in idx
                                               if u.geoms[i] is not None])
            out.append(Problem("duplicate_code", (c,), f"{len(idx)} units share this code",
                               None, None, geom, None))
    return _sorted(out)


def _unit_problems(u: _Units, kind: str, found: list[tuple[int, str]]) -> list[Problem]:
    idx = np.array([i for i, _ in found], dtype=np.int64)
    lon, lat = _points(u.geoms[idx]) if len(idx) else ([], [])
    out = [Problem(kind, (u.codes[i],), d, lon[k], lat[k], u.geoms[i], None)
           for k, (i, d) in enumerate(found)]
    return _sorted(out)


def _bad_codes(u: _Units, cfg: CoverageConfig) -> list[Problem]:
    lengths = cfg.code_lengths
    finest = cfg.finest_rank
    if finest is None:
        finest = max(lengths) if lengths else (int(u.levels.max()) if len(u.levels) else 0)
    serial_rule = lengths.get(finest) == 15
    found: list[tuple[int, str]] = []
    for i, (code, lv, parent) in enumerate(zip(u.codes, u.levels.tolist(), u.parents,
                                               strict=True)):
        want = lengths.get(lv)
        if want is not None and len(code) != want:
            key = cfg.level_keys.get(lv, f"level {lv}")
            found.append((i, f"a {key} code has {want} digits, this one has {len(code)}"))
        elif (parent is not None and not code.startswith(parent)
              and not (lv in lengths and lengths[lv] is None)):
            # a level declared of any length (GRIDOPS_CODE_LENGTHS '*') has codes that need
            # not nest; the national pattern's do
            found.append((i, f"code does not start with its parent's code {parent}"))
        elif serial_rule and lv == finest and code.endswith("000"):
            found.append((i, "a grid serial must be 001-999"))
    return _unit_problems(u, "bad_code", found)


def _bad_parents(u: _Units) -> list[Problem]:
    found: list[tuple[int, str]] = []
    levels = u.levels.tolist()
    for i, (lv, parent, p) in enumerate(zip(levels, u.parents, u.pidx.tolist(), strict=True)):
        if lv == 1:
            if parent is not None:
                found.append((i, "a top-level unit cannot have a parent"))
        elif lv > 1:
            if parent is None:
                found.append((i, "no parent given"))
            elif p < 0:
                found.append((i, f"parent {parent} does not exist in this generation"))
            elif levels[p] != lv - 1:
                found.append((i, f"parent {parent} is at level {levels[p]}, "
                                 f"expected {lv - 1}"))
    return _unit_problems(u, "bad_parent", found)


def _outside_parent(u: _Units, cfg: CoverageConfig
                    ) -> tuple[npt.NDArray[np.bool_], list[Problem]]:
    """Units (valid, with a valid parent) not covered by it; returns the covered mask too."""
    covered = np.zeros(len(u.codes), dtype=bool)
    child = np.flatnonzero((u.pidx >= 0) & u.valid)
    if len(child) == 0:
        return covered, []
    child = child[u.valid[u.pidx[child]]]
    par = u.pidx[child]
    pgeoms = u.geoms[par]
    uniq = np.unique(par)
    shapely.prepare(u.geoms[uniq])
    try:
        cov = shapely.covers(pgeoms, u.geoms[child])
    finally:
        shapely.destroy_prepared(u.geoms[uniq])
    covered[child[cov]] = True
    bad = ~cov
    if not bad.any():
        return covered, []
    c_idx, p_idx = child[bad], par[bad]
    diff = shapely.difference(u.geoms[c_idx], u.geoms[p_idx])
    area = metric_area(diff, cfg.metric_srid)
    keep = area > cfg.tolerance_m2
    lon, lat = _points(diff[keep])
    out = [Problem("outside_parent", (u.codes[c], u.codes[p]),
                   f"{a:.2f} m² of the unit lie outside its parent", lon[k], lat[k], g, float(a))
           for k, (c, p, g, a) in enumerate(zip(c_idx[keep].tolist(), p_idx[keep].tolist(),
                                                diff[keep], area[keep], strict=True))]
    return covered, _sorted(out)


def _interior_pairs(u: _Units, group: IntArray, among: npt.NDArray[np.bool_] | None = None
                    ) -> tuple[IntArray, IntArray]:
    """Pairs (a, b) of valid units, same level and group, a before b by code, whose
    interiors intersect: an STRtree 'intersects' query, less the pairs that only touch."""
    sel = u.valid if among is None else (u.valid & among)
    all_a: list[IntArray] = []
    all_b: list[IntArray] = []
    codes = np.array(u.codes, dtype=object)
    for lv in np.unique(u.levels[sel]).tolist():
        idx = np.flatnonzero(sel & (u.levels == lv))
        if len(idx) < 2:
            continue
        geoms = u.geoms[idx]
        tree = shapely.STRtree(geoms)
        qi, ti = tree.query(geoms, predicate="intersects")
        keep = qi != ti
        qi, ti = idx[qi[keep]], idx[ti[keep]]
        same = group[qi] == group[ti]
        qi, ti = qi[same], ti[same]
        # each pair once: order by code (the SQL's a.code < b.code), then by index
        first = (codes[qi] < codes[ti]) | ((codes[qi] == codes[ti]) & (qi < ti))
        qi, ti = qi[first], ti[first]
        if len(qi) == 0:
            continue
        shapely.prepare(geoms)
        try:
            touch = shapely.touches(u.geoms[qi], u.geoms[ti])
        finally:
            shapely.destroy_prepared(geoms)
        all_a.append(qi[~touch])
        all_b.append(ti[~touch])
    if not all_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(all_a), np.concatenate(all_b)


def _overlaps(u: _Units, cfg: CoverageConfig, group: IntArray, kind: str, what: str,
              among: npt.NDArray[np.bool_] | None = None
              ) -> tuple[tuple[IntArray, IntArray], list[Problem]]:
    a, b = _interior_pairs(u, group, among)
    if len(a) == 0:
        return (a, b), []
    inter = shapely.intersection(u.geoms[a], u.geoms[b])
    area = metric_area(inter, cfg.metric_srid)
    keep = area > cfg.tolerance_m2
    lon, lat = _points(inter[keep])
    out = [Problem(kind, (u.codes[i], u.codes[j]), f"{ar:.2f} {what}", lon[k], lat[k], g,
                   float(ar))
           for k, (i, j, g, ar) in enumerate(zip(a[keep].tolist(), b[keep].tolist(),
                                                 inter[keep], area[keep], strict=True))]
    return (a, b), _sorted(out)


def _gaps(u: _Units, cfg: CoverageConfig, covered: npt.NDArray[np.bool_],
          pairs: tuple[IntArray, IntArray], among: npt.NDArray[np.bool_] | None = None
          ) -> list[Problem]:
    """Parents (valid, above the finest level present) less the union of their valid
    children, where that is more than the tolerance.

    Where every child lies in the parent and no two overlap, the gap's area is the parent's
    area less the children's, so only parents where that is above the tolerance, or where
    the shortcut does not hold, compute the union.
    """
    n = len(u.codes)
    if n == 0:
        return []
    finest = int(u.levels.max())
    sel = u.valid if among is None else (u.valid & among)
    parents = np.flatnonzero(sel & (u.levels < finest))
    if len(parents) == 0:
        return []
    # children of each parent: valid, parent code = the parent's code, one level down
    kids: dict[int, list[int]] = defaultdict(list)
    levels = u.levels
    for i in np.flatnonzero(u.valid).tolist():
        p = u.pidx[i]
        if p >= 0 and levels[i] == levels[p] + 1:
            kids[int(p)].append(i)
    tangled = np.zeros(n, dtype=bool)  # parents with overlapping children
    a, _ = pairs
    if len(a):
        tangled[u.pidx[a][u.pidx[a] >= 0]] = True
    # metric areas of everything the shortcut needs
    involved = np.zeros(n, dtype=bool)
    involved[parents] = True
    for p in parents.tolist():
        involved[kids.get(p, [])] = True
    # the estimate in lon/lat, where the edges are straight (no projection artefact: a
    # parent's long edge and its children's vertices on it cancel exactly), scaled to m²
    # at each parent's latitude on the sphere (well within the 0.5 margin below)
    areas = np.zeros(n, dtype=np.float64)
    areas[involved] = shapely.area(u.geoms[involved])
    lat = shapely.get_y(shapely.centroid(u.geoms[parents]))
    m2_per_deg2 = np.zeros(n, dtype=np.float64)
    m2_per_deg2[parents] = (math.pi * 6_371_008.8 / 180.0) ** 2 * np.cos(np.radians(lat))
    tol = cfg.tolerance_m2
    todo: list[int] = []
    for p in parents.tolist():
        ch = kids.get(p, [])
        if not ch:
            todo.append(p)
            continue
        if tangled[p] or not covered[ch].all():
            todo.append(p)
            continue
        est = (areas[p] - areas[ch].sum()) * m2_per_deg2[p]
        if est > tol * 0.5 - 1e-3:
            todo.append(p)
    if not todo:
        return []
    gaps = np.empty(len(todo), dtype=object)
    counts: list[int] = []
    for k, p in enumerate(todo):
        ch = kids.get(p, [])
        counts.append(len(ch))
        if not ch:
            gaps[k] = u.geoms[p]
            continue
        union = shapely.union_all(u.geoms[ch])
        gaps[k] = shapely.difference(u.geoms[p], union)
    area = metric_area(gaps, cfg.metric_srid)
    keep = area > tol
    lon, lat = _points(gaps[keep])
    todo_a = np.array(todo, dtype=np.int64)
    cnt = np.array(counts, dtype=np.int64)
    out = [Problem("gap_in_parent", (u.codes[p],),
                   f"{ar:.2f} m² of the unit are covered by none of its {c} children",
                   lon[k], lat[k], g, float(ar))
           for k, (p, c, g, ar) in enumerate(zip(todo_a[keep].tolist(), cnt[keep].tolist(),
                                                 gaps[keep], area[keep], strict=True))]
    return _sorted(out)


# ---------------------------------------------------------------- cleaning ("snap")


@dataclass(frozen=True)
class UnitChange:
    """What cleaning did to one unit."""

    code: str
    area_before_m2: float
    area_after_m2: float
    vertices_before: int
    vertices_after: int
    vertices_moved: int  # vertices of the cleaned unit that are not among its old ones
    gap_taken_m2: float  # area gained that belonged to no unit of the level
    given: tuple[tuple[str, float], ...]  # (neighbour, m² of this unit it now has)
    taken: tuple[tuple[str, float], ...]  # (neighbour, m² of the neighbour this one took)
    detail: str

    @property
    def neighbours(self) -> tuple[str, ...]:
        """Codes of the units whose area changed together with this one."""
        return tuple(sorted({c for c, _ in self.given} | {c for c, _ in self.taken}))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"code": self.code, "area_before_m2": self.area_before_m2,
                "area_after_m2": self.area_after_m2, "vertices_before": self.vertices_before,
                "vertices_after": self.vertices_after, "vertices_moved": self.vertices_moved,
                "gap_taken_m2": self.gap_taken_m2,
                "given": [list(x) for x in self.given], "taken": [list(x) for x in self.taken],
                "neighbours": list(self.neighbours), "detail": self.detail}


@dataclass
class CleanResult:
    """Cleaned geometries (same order as the input; unchanged units are the very input
    objects), what changed, and the problems too large to clean (their levels untouched)."""

    geometries: list[Any]
    changes: list[UnitChange]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.problems


def clean_coverage(codes: Sequence[str], levels: Sequence[int],
                   parent_codes: Sequence[str | None], geometries: Sequence[Any],
                   config: CoverageConfig | None = None, *, snap_m: float = 1.0,
                   max_area_m2: float = 100.0, gap_width_m: float | None = None,
                   only_levels: Iterable[int] | None = None) -> CleanResult:
    """Snap each level (its whole coverage) into an exact coverage with GEOS CoverageCleaner
    (`shapely.coverage_clean`, merge strategy longest_border) on metric coordinates.

    snap_m: the snapping distance in metres; gap_width_m: the widest gap merged into a
    neighbour (default: the width of a round gap of max_area_m2). Before cleaning, overlaps
    between units of the level and gaps inside parents larger than max_area_m2, and invalid
    geometries, are looked for: a level with any is not cleaned and they come back as
    problems, for the caller to refuse. A level that already is an exact coverage with no
    gap narrower than the gap width is left as it is (snapping would still collapse
    vertices closer than snap_m). only_levels: the ranks to clean (default all). Units the
    cleaner did not change are the very input objects; changed ones keep the exact lon/lat
    of every vertex that did not move.
    """
    cfg = config or CoverageConfig()
    u = _Units.build(codes, levels, parent_codes, geometries)
    out = list(u.geoms)
    changes: list[UnitChange] = []
    problems: list[Problem] = []
    big = CoverageConfig(code_lengths=cfg.code_lengths, metric_srid=cfg.metric_srid,
                         tolerance_m2=max_area_m2, finest_rank=cfg.finest_rank,
                         level_keys=cfg.level_keys)
    width = gap_width_m if gap_width_m is not None else 2.0 * math.sqrt(max_area_m2 / math.pi)
    ranks = sorted(set(u.levels.tolist()) if only_levels is None else set(only_levels))
    level_group = u.levels.copy()
    for lv in ranks:
        at = u.levels == lv
        idx = np.flatnonzero(at)
        if len(idx) == 0:
            continue
        refused = [p for p in _invalid(u) if u.levels[u.first[p.codes[0]]] == lv]
        _, ov = _overlaps(u, big, level_group, "sibling_overlap",
                          "m² overlap, too large to give away", among=at)
        refused += ov
        above = u.levels == lv - 1
        if above.any():
            covered, _ = _outside_parent(u, big)
            gaps = _gaps(u, big, covered, _interior_pairs(u, u.pgroup, at | above),
                         among=above)
            refused += [Problem(p.kind, p.codes, p.detail + ", too large to give away",
                                p.lon, p.lat, p.geometry, p.area_m2) for p in gaps]
        if refused:
            problems += refused
            continue
        new, ch = _clean_level(u, idx, cfg.metric_srid, snap_m, width)
        for i, g in zip(idx.tolist(), new, strict=True):
            out[i] = g
        changes += ch
    return CleanResult(out, changes, problems)


def _coords_lookup(metric: ObjArray, lonlat: ObjArray
                   ) -> tuple[npt.NDArray[np.void], FloatArray]:
    """Sorted metric vertices (as opaque keys) and their original lon/lat."""
    m = shapely.get_coordinates(metric)
    ll = shapely.get_coordinates(lonlat)
    keys = np.ascontiguousarray(m).view(np.dtype((np.void, 16))).ravel()
    order = np.argsort(keys, kind="stable")
    return keys[order], ll[order]


def _clean_level(u: _Units, idx: IntArray, srid: int, snap_m: float, width: float
                 ) -> tuple[list[Any], list[UnitChange]]:
    before_ll = u.geoms[idx]
    before = to_metric(before_ll, srid)
    result = list(before_ll)
    # an exact coverage without narrow gaps is left alone: snapping would still collapse
    # vertices closer than snap_m and move area for nothing
    if bool(shapely.coverage_is_valid(before, gap_width=width)):
        return result, []
    after = np.asarray(shapely.coverage_clean(before, gap_width=width,
                                              snapping_distance=snap_m,
                                              merge_strategy="longest_border"), dtype=object)
    # a one-part MultiPolygon comes back a Polygon: keep the input's type
    multi = (shapely.get_type_id(before) == 6) & (shapely.get_type_id(after) == 3)
    if multi.any():
        after[multi] = [shapely.MultiPolygon([g]) for g in after[multi]]
    same = shapely.equals_exact(shapely.normalize(before), shapely.normalize(after),
                                tolerance=0)
    changed = np.flatnonzero(~same)
    if len(changed) == 0:
        return result, []
    # back to lon/lat: vertices that did not move keep their exact original coordinates
    keys, ll = _coords_lookup(before, before_ll)
    moved_back = to_lonlat(after[changed], srid)
    for k, g_m, g_ll in zip(changed.tolist(), after[changed], moved_back, strict=True):
        xy = np.ascontiguousarray(shapely.get_coordinates(g_m))
        q = xy.view(np.dtype((np.void, 16))).ravel()
        pos = np.searchsorted(keys, q)
        pos = np.minimum(pos, len(keys) - 1)
        hit = keys[pos] == q
        new_ll = shapely.get_coordinates(g_ll)
        new_ll[hit] = ll[pos[hit]]
        result[k] = shapely.transform(g_ll, lambda _c, xy=new_ll: xy)
    a_before = shapely.area(before[changed])
    a_after = shapely.area(after[changed])
    lost = shapely.difference(before[changed], after[changed])
    won = shapely.difference(after[changed], before[changed])
    lost_a = shapely.area(lost)
    won_a = shapely.area(won)
    codes = [u.codes[i] for i in idx.tolist()]
    # where the lost part went (the neighbours' new geometry) and where the won part came
    # from (the neighbours' old geometry, else a gap)
    given = _exchange(lost, after, changed, codes)
    taken = _exchange(won, before, changed, codes)
    out: list[UnitChange] = []
    for k, i in enumerate(changed.tolist()):
        old_xy = shapely.get_coordinates(before[i])
        new_xy = shapely.get_coordinates(after[i])
        old_set = {(float(x), float(y)) for x, y in old_xy}
        moved = sum(1 for x, y in new_xy if (float(x), float(y)) not in old_set)
        gap = max(0.0, float(won_a[k]) - sum(a for _, a in taken[k]))
        uncovered = max(0.0, float(lost_a[k]) - sum(a for _, a in given[k]))
        parts = []
        if gap > 0.05:
            parts.append(f"took {gap:.1f} m² of gap")
        parts += [f"took {a:.1f} m² from {c}" for c, a in taken[k]]
        parts += [f"gave {a:.1f} m² to {c}" for c, a in given[k]]
        if uncovered > 0.05:
            parts.append(f"left {uncovered:.1f} m² to no unit")
        if moved:
            parts.append(f"{moved} vertices snapped")
        if not parts:
            parts.append("snapped (no area changed)")
        out.append(UnitChange(codes[i], round(float(a_before[k]), 3),
                              round(float(a_after[k]), 3), len(old_xy), len(new_xy), moved,
                              round(gap, 3), tuple(given[k]), tuple(taken[k]),
                              "; ".join(parts)))
    return result, out


def _exchange(parts: ObjArray, others: ObjArray, changed: IntArray, codes: list[str]
              ) -> list[list[tuple[str, float]]]:
    """For each part (of changed unit k): the other units it overlaps and by how many m²."""
    out: list[list[tuple[str, float]]] = [[] for _ in range(len(parts))]
    ok = ~shapely.is_empty(parts)
    if not ok.any():
        return out
    tree = shapely.STRtree(others)
    k, j = tree.query(parts, predicate="intersects")
    keep = ok[k] & (changed[k] != j)
    k, j = k[keep], j[keep]
    if len(k) == 0:
        return out
    area = shapely.area(shapely.intersection(parts[k], others[j]))
    for a, b, s in zip(k.tolist(), j.tolist(), area.tolist(), strict=True):
        if s > 0.01:
            out[a].append((codes[b], round(s, 3)))
    return out


def rebuild_parents(codes: Sequence[str], levels: Sequence[int],
                    parent_codes: Sequence[str | None], geometries: Sequence[Any],
                    *, from_level: int | None = None) -> list[Any]:
    """Parents as the coverage union of their children, bottom-up from the finest level
    (or from_level): returns all geometries, a parent whose union is topologically equal
    to its geometry keeping its very object."""
    u = _Units.build(codes, levels, parent_codes, geometries)
    out = list(u.geoms)
    if not len(u.codes):
        return out
    finest = int(u.levels.max()) if from_level is None else from_level
    for lv in range(finest, 1, -1):
        kids: dict[int, list[int]] = defaultdict(list)
        for i in np.flatnonzero(u.levels == lv).tolist():
            p = int(u.pidx[i])
            if p >= 0 and u.levels[p] == lv - 1:
                kids[p].append(i)
        for p, ch in kids.items():
            parts = np.array([out[i] for i in ch], dtype=object)
            union = shapely.coverage_union_all(parts)
            if not shapely.is_valid(union):
                union = shapely.union_all(parts)
            old = out[p]
            if old is not None and shapely.equals(old, union):
                continue
            if old is not None and old.geom_type == "MultiPolygon" and \
                    union.geom_type == "Polygon":
                union = shapely.MultiPolygon([union])
            out[p] = union
    return out
