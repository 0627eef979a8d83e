"""Deterministic synthetic nested grid (district > street > community > grid).

No public polygons exist below the district, so street, community and grid geometry
is synthetic.  It is built from one global Voronoi diagram of grid seed points, clipped
to the real district outline by noding the linework, so that grids tile their community,
communities their street and streets the district exactly: shared edges have identical
vertices and every parent is the union of its children.

Pure computation (shapely, numpy, scipy, pyproj); no database access.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

DATA_DIR = Path(__file__).resolve().parent / "data"

SONGJIANG_GRIDS = 1322

# Approximate real centres (lon, lat) of Songjiang's streets, towns and parks.
SONGJIANG_ANCHORS: dict[str, tuple[float, float]] = {
    "310117001": (121.232, 31.003),  # 岳阳街道
    "310117002": (121.205, 31.005),  # 永丰街道
    "310117003": (121.228, 31.035),  # 方松街道
    "310117004": (121.258, 31.005),  # 中山街道
    "310117005": (121.205, 31.060),  # 广富林街道
    "310117006": (121.335, 31.120),  # 九里亭街道
    "310117102": (121.265, 31.120),  # 泗泾镇
    "310117103": (121.200, 31.115),  # 佘山镇
    "310117104": (121.310, 31.010),  # 车墩镇
    "310117105": (121.320, 31.065),  # 新桥镇
    "310117106": (121.240, 31.085),  # 洞泾镇
    "310117107": (121.300, 31.145),  # 九亭镇
    "310117109": (121.170, 30.930),  # 泖港镇
    "310117116": (121.115, 30.975),  # 石湖荡镇
    "310117117": (121.060, 30.950),  # 新浜镇
    "310117120": (121.300, 30.930),  # 叶榭镇
    "310117121": (121.130, 31.030),  # 小昆山镇
    "310117501": (121.270, 31.040),  # 松江工业区
    "310117504": (121.175, 31.095),  # 佘山度假区
    "310117507": (121.215, 31.045),  # 上海松江出口加工区
}

# Urban cores (lon, lat, sigma in metres, weight): old town, Sijing, Jiuting.
SONGJIANG_PEAKS: tuple[tuple[float, float, float, float], ...] = (
    (121.230, 31.020, 4000.0, 0.35),
    (121.265, 31.120, 2000.0, 0.10),
    (121.310, 31.135, 2000.0, 0.10),
)

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵"
    "钱严戴莫孔汤"
)
GIVEN_CHARS = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国文红玉萍辉鹏飞斌宇浩凯俊峰晨雪婷"
    "琳佳慧德海波云龙春梅志新宏亮琴燕颖嘉诚杨欣怡思佩卫东晓荣刚毅正清林彬"
)
MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "180",
    "181",
    "182",
    "183",
    "184",
    "185",
    "186",
    "187",
    "188",
    "189",
)
NAME_SYLLABLES = (
    "华新东西南北安江海山湖桥泾浦塘港林河庄宁兴平阳和丰康乐泰明金银石松柳梅竹兰桃云龙凤虹枫"
    "青绿天宝福寿长永嘉春秋晨曦翠园亭溪湾洲滨城田"
)
COMMUNITY_SUFFIXES = ("居委会", "村委会", "委员会")


@dataclass(frozen=True)
class UnitSpec:
    """One administrative or grid unit with its geometry in lon/lat (EPSG:4326)."""

    code: str
    name: str
    level: int  # 1 district, 2 street/town, 3 community, 4 grid
    parent_code: str | None
    geometry: MultiPolygon  # lon/lat EPSG:4326 (x=lon, y=lat), always MultiPolygon, valid
    leader_name: str | None = None  # grid leader 网格长, only for level 4
    leader_phone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CitySource:
    """Inputs of the synthetic grid: outline, real codes/names and the number of grids."""

    district_code: str
    district_name: str
    outline: MultiPolygon  # lon/lat
    streets: list[tuple[str, str]]  # (code9, name)
    communities: list[tuple[str, str, str]]  # (code12, name, street_code9)
    street_anchors: dict[str, tuple[float, float]]  # street code -> (lon, lat); may be partial
    n_grids: int
    # Urban density peaks (lon, lat, sigma_m, weight) over a uniform base of 1 - sum(weights).
    density_peaks: tuple[tuple[float, float, float, float], ...] = ()


# --------------------------------------------------------------------------- sources


def _as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Return the polygonal part of ``geom`` as a MultiPolygon."""
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    parts = [g for g in shapely.get_parts(geom) if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(parts)


def songjiang_source() -> CitySource:
    """Read the shipped Songjiang outline, streets and communities (1322 grids)."""
    with (DATA_DIR / "songjiang_district.geojson").open(encoding="utf-8") as fh:
        collection = json.load(fh)
    feature = collection["features"][0]
    outline = _as_multipolygon(shape(feature["geometry"]))
    with (DATA_DIR / "songjiang_streets.csv").open(encoding="utf-8", newline="") as fh:
        streets = [(r["code"], r["name"]) for r in csv.DictReader(fh)]
    with (DATA_DIR / "songjiang_communities.csv").open(encoding="utf-8", newline="") as fh:
        communities = [(r["code"], r["name"], r["street_code"]) for r in csv.DictReader(fh)]
    return CitySource(
        district_code=feature["properties"]["code"],
        district_name=feature["properties"]["name"],
        outline=outline,
        streets=streets,
        communities=communities,
        street_anchors=dict(SONGJIANG_ANCHORS),
        n_grids=SONGJIANG_GRIDS,
        density_peaks=SONGJIANG_PEAKS,
    )


def _unique_names(rng: np.random.Generator, n: int) -> list[str]:
    """Return ``n`` distinct two- or three-character place names."""
    syl = list(NAME_SYLLABLES)
    pairs = [a + b for a in syl for b in syl if a != b]
    order = rng.permutation(len(pairs))
    names = [pairs[i] for i in order[: min(n, len(pairs))]]
    k = 0
    while len(names) < n:
        names.append(pairs[order[k % len(pairs)]] + syl[(k // len(pairs)) % len(syl)])
        k += 1
    return names


def megacity_source(n_grids: int = 100_000, *, seed: int = 7) -> CitySource:
    """Synthetic benchmark city: scaled Songjiang outline, ~n/500 streets, ~n/12.5 communities."""
    if n_grids < 1:
        raise ValueError("n_grids must be positive")
    rng = np.random.default_rng(seed)
    base = songjiang_source().outline
    # Keep the mean grid area roughly constant: x8 linear for 100,000 grids.
    factor = max(1.0, 8.0 * math.sqrt(n_grids / 100_000))
    outline = _as_multipolygon(affinity.scale(base, factor, factor, origin=base.centroid))
    n_comm = max(1, min(n_grids, round(n_grids / 12.5)))
    n_streets = max(1, min(n_comm, round(n_comm / 40)))
    district = "319901"
    n_sub = round(n_streets * 0.4)  # 街道, codes 001..; the rest are 镇, codes 101..
    if n_streets - n_sub > 899 or n_sub > 99:
        raise ValueError("too many streets for 3-digit codes")
    names = _unique_names(rng, n_streets + n_comm)
    streets: list[tuple[str, str]] = []
    for i in range(n_streets):
        if i < n_sub:
            streets.append((f"{district}{i + 1:03d}", names[i] + "街道"))
        else:
            streets.append((f"{district}{101 + i - n_sub:03d}", names[i] + "镇"))
    counts = rng.multinomial(n_comm - n_streets, np.full(n_streets, 1.0 / n_streets)) + 1
    communities: list[tuple[str, str, str]] = []
    k = n_streets
    for (scode, sname), cnt in zip(streets, counts, strict=True):
        urban_share = 0.9 if sname.endswith("街道") else 0.3
        n_res = max(1, round(int(cnt) * urban_share))
        n_vil = int(cnt) - n_res
        if n_res > 199 or n_vil > 799:
            raise ValueError("too many communities in one street for 3-digit codes")
        for j in range(n_res):
            communities.append((f"{scode}{j + 1:03d}", names[k] + "社区居委会", scode))
            k += 1
        for j in range(n_vil):
            communities.append((f"{scode}{200 + j:03d}", names[k] + "村村委会", scode))
            k += 1
    # Urban peaks at random places inside the outline.
    n_peaks = max(1, n_streets // 10)
    minx, miny, maxx, maxy = outline.bounds
    peaks: list[tuple[float, float, float, float]] = []
    shapely.prepare(outline)
    while len(peaks) < n_peaks:
        lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if shapely.contains_xy(outline, lon, lat):
            sigma = float(rng.uniform(3000.0, 10000.0)) * factor / 8.0 + 1000.0
            peaks.append((float(lon), float(lat), sigma, 0.5 / n_peaks))
    return CitySource(
        district_code=district,
        district_name="超大示范区",
        outline=outline,
        streets=streets,
        communities=communities,
        street_anchors={},
        n_grids=n_grids,
        density_peaks=tuple(peaks),
    )


# --------------------------------------------------------------------------- helpers


def _xy_transform(transformer: Transformer) -> Callable[[FloatArray], FloatArray]:
    """Wrap a pyproj transformer as a vectorised (N, 2) -> (N, 2) function."""

    def fn(coords: FloatArray) -> FloatArray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return fn


def _sample(
    outline: BaseGeometry,
    peaks: Sequence[tuple[float, float, float, float]],
    n: int,
    rng: np.random.Generator,
) -> FloatArray:
    """Draw ``n`` points inside ``outline`` from a uniform + Gaussian-peaks mixture (metres)."""
    minx, miny, maxx, maxy = outline.bounds
    weights = np.array([1.0 - sum(p[3] for p in peaks), *(p[3] for p in peaks)])
    if weights[0] < 0:
        raise ValueError("density peak weights must sum to at most 1")
    weights = weights / weights.sum()
    out: list[FloatArray] = []
    have = 0
    while have < n:
        m = int((n - have) * 1.6) + 1024
        comp = rng.choice(len(weights), size=m, p=weights)
        pts = np.column_stack([rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)])
        for i, (px, py, sigma, _) in enumerate(peaks, start=1):
            sel = comp == i
            pts[sel] = rng.normal((px, py), sigma, size=(int(sel.sum()), 2))
        pts = pts[shapely.contains_xy(outline, pts[:, 0], pts[:, 1])]
        out.append(pts)
        have += len(pts)
    return np.concatenate(out)[:n]


def _assign(points: FloatArray, centres: FloatArray) -> IntArray:
    """Return the index of the nearest centre for every point."""
    if len(points) * len(centres) <= 4_000_000:
        d = (centres * centres).sum(axis=1)[None, :] - 2.0 * (points @ centres.T)
        return np.asarray(d.argmin(axis=1), dtype=np.intp)
    _, idx = cKDTree(centres).query(points)
    return np.asarray(idx, dtype=np.intp)


def _kmeans(
    points: FloatArray,
    k: int,
    rng: np.random.Generator,
    *,
    fixed: FloatArray | None = None,
    iters: int = 25,
) -> tuple[FloatArray, IntArray]:
    """Lloyd's k-means with k-means++ seeding; ``fixed`` centres never move; no empty cluster."""
    n = len(points)
    nf = 0 if fixed is None else len(fixed)
    if k < 1 or n < k:
        raise ValueError(f"cannot make {k} clusters of {n} points")
    if k == 1:
        centre = points.mean(axis=0)[None, :] if nf == 0 else np.asarray(fixed, dtype=float)
        return centre, np.zeros(n, dtype=np.intp)
    origin = points.mean(axis=0)  # work near the origin for well-conditioned distances
    points = points - origin
    centres = np.empty((k, 2))
    if nf:
        centres[:nf] = np.asarray(fixed) - origin
        d2 = ((points[:, None, :] - centres[None, :nf, :]) ** 2).sum(axis=2).min(axis=1)
        start = nf
    else:
        centres[0] = points[rng.integers(n)]
        d2 = ((points - centres[0]) ** 2).sum(axis=1)
        start = 1
    for i in range(start, k):
        total = d2.sum()
        j = int(np.searchsorted(np.cumsum(d2), rng.random() * total)) if total > 0 else 0
        j = min(j, n - 1)
        centres[i] = points[j]
        d2 = np.minimum(d2, ((points - points[j]) ** 2).sum(axis=1))
    labels = _assign(points, centres)
    for _ in range(iters):
        counts = np.bincount(labels, minlength=k)
        sx = np.bincount(labels, weights=points[:, 0], minlength=k)
        sy = np.bincount(labels, weights=points[:, 1], minlength=k)
        new = centres.copy()
        nz = counts > 0
        new[nz, 0] = sx[nz] / counts[nz]
        new[nz, 1] = sy[nz] / counts[nz]
        if nf:
            new[:nf] = centres[:nf]
        moved = float(np.abs(new - centres).max())
        centres = new
        labels = _assign(points, centres)
        if moved < 1e-3:
            break
    # Guarantee every cluster has at least one point: give empties the farthest points.
    for _ in range(k):
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if not len(empty):
            break
        dist = ((points - centres[labels]) ** 2).sum(axis=1)
        dist[counts[labels] <= 1] = -1.0
        j = int(dist.argmax())
        labels[j] = empty[0]
        centres[empty[0]] = points[j]
    return centres + origin, labels


def _largest_remainder(total: int, weights: FloatArray) -> IntArray:
    """Split ``total`` into integers proportional to ``weights`` (largest-remainder method)."""
    w = np.asarray(weights, dtype=float)
    quota = total * w / w.sum() if w.sum() > 0 else np.full(len(w), total / len(w))
    base = np.floor(quota).astype(np.intp)
    rest = total - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -(quota - base)))
    base[order[:rest]] += 1
    return base


def _grid_seeds(
    points: FloatArray,
    k: int,
    rng: np.random.Generator,
    outline: BaseGeometry,
) -> FloatArray:
    """Return ``k`` distinct seed points inside ``outline`` spread over ``points``."""
    if len(points) < k:
        extra: list[FloatArray] = []
        need = k - len(points)
        scale = 20.0
        while need > 0:
            base = points[rng.integers(len(points), size=need * 4)]
            cand = base + rng.normal(0.0, scale, size=base.shape)
            cand = cand[shapely.contains_xy(outline, cand[:, 0], cand[:, 1])][:need]
            extra.append(cand)
            need -= len(cand)
        points = np.concatenate([points, *extra])
    centres, labels = _kmeans(points, k, rng)
    inside = shapely.contains_xy(outline, centres[:, 0], centres[:, 1])
    for i in np.flatnonzero(~inside):
        members = points[labels == i]
        j = int(((members - centres[i]) ** 2).sum(axis=1).argmin())
        centres[i] = members[j]
    return centres


def people(rng: np.random.Generator, n: int, one_char_share: float = 0.3
           ) -> list[tuple[str, str]]:
    """Return ``n`` deterministic Chinese names and 11-digit mobile numbers."""
    surname = rng.integers(len(SURNAMES), size=n)
    given = rng.integers(len(GIVEN_CHARS), size=(n, 2))
    two = rng.random(n) >= one_char_share
    prefix = rng.integers(len(MOBILE_PREFIXES), size=n)
    digits = rng.integers(100_000_000, size=n)
    out: list[tuple[str, str]] = []
    for i in range(n):
        name = SURNAMES[surname[i]] + GIVEN_CHARS[given[i, 0]]
        if two[i]:
            name += GIVEN_CHARS[given[i, 1]]
        out.append((name, f"{MOBILE_PREFIXES[prefix[i]]}{digits[i]:08d}"))
    return out


def _short_name(name: str) -> str:
    """Strip the committee suffix (居委会/村委会/委员会) from a community name."""
    for suffix in COMMUNITY_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _kind_by_suffix(name: str, kinds: tuple[tuple[tuple[str, ...], str], ...]) -> str:
    """The kind of the first (suffixes, kind) whose suffix ends the name; else a park."""
    return next((kind for ends, kind in kinds if name.endswith(ends)), "park")


def _community_kind(name: str) -> str:
    """Classify a community as residential, village or park."""
    return _kind_by_suffix(name, ((("村委会",), "village"), (("居委会", "委员会"), "residential")))


def _street_kind(name: str) -> str:
    """Classify a street-level unit as street (街道), town (镇) or park."""
    return _kind_by_suffix(name, ((("街道",), "street"), (("镇", "乡"), "town")))


def _union(geoms: Sequence[BaseGeometry]) -> BaseGeometry:
    """Union polygons that form an exact coverage (shared edges have identical vertices)."""
    if len(geoms) == 1:
        return geoms[0]
    return shapely.coverage_union_all(np.asarray(geoms, dtype=object))


def _number_grids(geoms: Sequence[BaseGeometry], community: BaseGeometry) -> list[int]:
    """Order grids west to east, north to south in rows of height sqrt(area / n)."""
    n = len(geoms)
    if n == 1:
        return [0]
    h = math.sqrt(community.area / n)
    ymax = community.bounds[3]
    rp = shapely.get_coordinates(shapely.point_on_surface(np.asarray(geoms, dtype=object)))
    rows = np.floor((ymax - rp[:, 1]) / h)
    return [int(i) for i in np.lexsort((rp[:, 0], rows))]


# --------------------------------------------------------------------------- builder


def _clip_cells(
    cells: npt.NDArray[np.object_], outline: BaseGeometry
) -> tuple[npt.NDArray[np.object_], IntArray]:
    """Clip Voronoi cells to ``outline`` keeping shared edges exact; return faces and owners."""
    shapely.prepare(outline)
    covered = np.asarray(shapely.contains_properly(outline, cells), dtype=bool)
    inner = np.flatnonzero(covered)
    border = np.flatnonzero(~covered)
    if not len(border):
        return cells.copy(), np.arange(len(cells), dtype=np.intp)
    # Node the border cells' edges together with the outline and rebuild the faces.
    lines = shapely.union_all(
        np.concatenate([shapely.boundary(cells[border]), [shapely.boundary(outline)]])
    )
    polys = shapely.get_parts(shapely.polygonize(shapely.get_parts(lines)))
    reps = shapely.point_on_surface(polys)
    keep = shapely.contains(outline, reps)
    polys, reps = polys[keep], reps[keep]
    src, dst = shapely.STRtree(cells[border]).query(reps, predicate="within")
    # Faces inside no border cell are the holes left by the covered cells: drop them.
    owner = np.full(len(polys), -1, dtype=np.intp)
    owner[src] = border[dst]
    polys, owner = polys[owner >= 0], owner[owner >= 0]
    faces = np.concatenate([cells[inner], polys])
    return faces, np.concatenate([inner, owner]).astype(np.intp)


def _shared_edges(polys: npt.NDArray[np.object_]) -> csr_matrix:
    """Return the symmetric matrix of boundary length shared (exactly) by pairs of polygons."""
    rings, ring_owner = shapely.get_rings(polys, return_index=True)
    coords, ring_idx = shapely.get_coordinates(rings, return_index=True)
    same = ring_idx[1:] == ring_idx[:-1]
    a, b = coords[:-1][same], coords[1:][same]
    owner = ring_owner[ring_idx[:-1][same]]
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    lo = np.where(swap[:, None], b, a)
    hi = np.where(swap[:, None], a, b)
    order = np.lexsort((hi[:, 1], hi[:, 0], lo[:, 1], lo[:, 0]))
    key = np.column_stack([lo, hi])[order]
    eq = (key[1:] == key[:-1]).all(axis=1)
    i, j = owner[order[:-1][eq]], owner[order[1:][eq]]
    length = np.hypot(*(hi - lo)[order[:-1][eq]].T)
    n = len(polys)
    adj = coo_matrix(
        (np.concatenate([length, length]), (np.concatenate([i, j]), np.concatenate([j, i]))),
        shape=(n, n),
    ).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    return adj


def _repair(
    adj: csr_matrix,
    area: FloatArray,
    label: IntArray,
    unit_of_label: IntArray,
    allowed: Callable[[int, IntArray], npt.NDArray[np.bool_]],
) -> int:
    """Give each unit's stray pieces to the allowed neighbour label with the longest border."""
    # Items (faces or grids) carry a label (grid or community); a unit (grid, community or
    # street) is contiguous when its items are connected in ``adj``.  All components but the
    # largest move to a neighbouring label, unless that would leave a label with no item.
    # ``label`` is updated in place; the number of moved pieces is returned.
    unit = unit_of_label[label]
    coo = adj.tocoo()
    same = unit[coo.row] == unit[coo.col]
    inner = csr_matrix((coo.data[same], (coo.row[same], coo.col[same])), shape=adj.shape)
    _, comp = connected_components(inner, directed=False)
    pairs = np.unique(np.column_stack([unit, comp]), axis=0)
    units, counts = np.unique(pairs[:, 0], return_counts=True)
    moved = 0
    for u in units[counts > 1]:
        items = np.flatnonzero(unit_of_label[label] == u)
        n_c, local = connected_components(adj[items][:, items], directed=False)
        if n_c < 2:
            continue
        sizes = np.bincount(local, weights=area[items], minlength=n_c)
        for c in np.argsort(-sizes, kind="stable")[1:]:
            members = items[local == c]
            sub = adj[members].tocoo()
            targets = label[sub.col]
            ok = allowed(int(u), targets) & ~np.isin(sub.col, members)
            if not ok.any():
                continue
            weights = np.bincount(targets[ok], weights=sub.data[ok])
            target = int(np.argmax(weights))
            donors = np.unique(label[members])
            remaining = np.bincount(label, minlength=len(unit_of_label))[donors]
            left = remaining - np.bincount(label[members], minlength=len(unit_of_label))[donors]
            if (left == 0).any():
                continue
            label[members] = target
            moved += 1
    return moved


def _grid_seeds_for(
    src: CitySource,
    outline: BaseGeometry,
    fwd: Callable[[FloatArray], FloatArray],
    rng: np.random.Generator,
    streets: list[tuple[str, str]],
    comm_by_street: list[list[int]],
) -> tuple[FloatArray, IntArray]:
    """Sample the density, split it into streets, communities and grid seeds (metres)."""
    peaks = []
    for lon, lat, sigma, weight in src.density_peaks:
        ((px, py),) = fwd(np.array([[lon, lat]], dtype=float))
        peaks.append((float(px), float(py), sigma, weight))
    pts = _sample(outline, peaks, max(150_000, 12 * src.n_grids), rng)

    # Streets: nearest anchor; unanchored streets get k-means centres.
    street_codes = [c for c, _ in streets]
    anchored = [c for c in street_codes if c in src.street_anchors]
    free = [c for c in street_codes if c not in src.street_anchors]
    fixed = np.empty((0, 2))
    if anchored:
        fixed = fwd(np.array([src.street_anchors[c] for c in anchored], dtype=float))
        outside = ~shapely.contains_xy(outline, fixed[:, 0], fixed[:, 1])
        if outside.any():
            _, nearest = cKDTree(pts).query(fixed[outside])
            fixed[outside] = pts[nearest]
    if free:
        fit = pts[rng.permutation(len(pts))[: min(len(pts), 60_000)]]
        centres, _ = _kmeans(fit, len(street_codes), rng, fixed=fixed if anchored else None)
    else:
        centres = fixed
    centre_of = {c: centres[i] for i, c in enumerate([*anchored, *free])}
    street_label = _assign(pts, np.array([centre_of[c] for c in street_codes]))

    # Communities: k-means inside each street.
    n_comm = sum(len(m) for m in comm_by_street)
    comm_points: list[FloatArray] = [np.empty((0, 2))] * n_comm
    for s, members in enumerate(comm_by_street):
        spts = pts[street_label == s]
        if len(spts) < len(members):
            raise ValueError(f"street {street_codes[s]} is too small for its communities")
        _, lab = _kmeans(spts, len(members), rng)
        for k, j in enumerate(members):
            comm_points[j] = spts[lab == k]

    # Grids per community (>= 1, the rest by largest remainder) and their seeds.
    sizes = np.array([len(p) for p in comm_points], dtype=float)
    n_per = 1 + _largest_remainder(src.n_grids - n_comm, sizes)
    seeds = np.concatenate(
        [_grid_seeds(cp, int(n_per[j]), rng, outline) for j, cp in enumerate(comm_points)]
    )
    grid_comm = np.repeat(np.arange(n_comm, dtype=np.intp), n_per)
    if len(np.unique(seeds, axis=0)) != len(seeds):
        raise RuntimeError("duplicate grid seeds")
    return seeds, grid_comm


def build_city(
    src: CitySource, *, seed: int = 20051, metric_crs: str = "EPSG:4549"
) -> list[UnitSpec]:
    """Build the nested district > street > community > grid units for ``src``."""
    streets = sorted(src.streets)
    communities = sorted(src.communities)
    street_index = {c: i for i, (c, _) in enumerate(streets)}
    if len(street_index) != len(streets):
        raise ValueError("duplicate street codes")
    if len({c for c, _, _ in communities}) != len(communities):
        raise ValueError("duplicate community codes")
    comm_by_street: list[list[int]] = [[] for _ in streets]
    for j, (ccode, _, scode) in enumerate(communities):
        if scode not in street_index or not ccode.startswith(scode):
            raise ValueError(f"community {ccode} does not belong to a known street")
        comm_by_street[street_index[scode]].append(j)
    if any(not cs for cs in comm_by_street):
        raise ValueError("every street needs at least one community")
    if src.n_grids < len(communities):
        raise ValueError("n_grids must be at least the number of communities")
    comm_street = np.array([street_index[s] for _, _, s in communities], dtype=np.intp)

    fwd = _xy_transform(Transformer.from_crs("EPSG:4326", metric_crs, always_xy=True))
    inv = _xy_transform(Transformer.from_crs(metric_crs, "EPSG:4326", always_xy=True))
    outline = shapely.transform(src.outline, fwd)
    if not outline.is_valid:
        raise ValueError("outline is not a valid polygon")
    shapely.prepare(outline)
    rng = np.random.default_rng(seed)
    seeds, grid_comm = _grid_seeds_for(src, outline, fwd, rng, streets, comm_by_street)
    n_grids = len(seeds)

    # One global Voronoi diagram, clipped to the outline with noded linework.
    minx, miny, maxx, maxy = outline.bounds
    pad = max(maxx - minx, maxy - miny)
    env = box(minx - pad, miny - pad, maxx + pad, maxy + pad)
    cells_all = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=env)
    )
    src_i, dst_i = shapely.STRtree(cells_all).query(shapely.points(seeds), predicate="within")
    if len(src_i) != n_grids or len(np.unique(src_i)) != n_grids:
        raise RuntimeError("Voronoi cells do not match the seeds one to one")
    cell_of = np.empty(n_grids, dtype=np.intp)
    cell_of[src_i] = dst_i
    faces, face_grid = _clip_cells(cells_all[cell_of], outline)
    if len(np.unique(face_grid)) != n_grids:
        raise RuntimeError("a grid has no area inside the outline")
    face_area = shapely.area(faces)
    if abs(float(face_area.sum()) - outline.area) > 1e-6 * outline.area:
        raise RuntimeError("the clipped Voronoi faces do not tile the outline")

    # Contiguity repairs: stray faces of a grid, then stray grids of a street / community.
    face_adj = _shared_edges(faces)
    _repair(face_adj, face_area, face_grid, np.arange(n_grids), lambda u, t: t != u)
    ind = csr_matrix(
        (np.ones(len(faces)), (np.arange(len(faces)), face_grid)), shape=(len(faces), n_grids)
    )
    grid_adj = (ind.T @ face_adj @ ind).tocsr()
    grid_adj.setdiag(0)
    grid_adj.eliminate_zeros()
    grid_area = np.asarray(
        np.bincount(face_grid, weights=face_area, minlength=n_grids), dtype=np.float64
    )
    _repair(grid_adj, grid_area, grid_comm, comm_street, lambda u, t: comm_street[t] != u)
    _repair(
        grid_adj,
        grid_area,
        grid_comm,
        np.arange(len(communities)),
        lambda u, t: (t != u) & (comm_street[t] == comm_street[u]),
    )

    # Aggregate upwards and number the grids.
    face_order = np.argsort(face_grid, kind="stable")
    bounds = np.searchsorted(face_grid[face_order], np.arange(n_grids + 1))
    grid_geoms = [
        _union(faces[face_order[bounds[g] : bounds[g + 1]]].tolist()) for g in range(n_grids)
    ]
    grid_order = np.argsort(grid_comm, kind="stable")
    gbounds = np.searchsorted(grid_comm[grid_order], np.arange(len(communities) + 1))
    comm_geoms: list[BaseGeometry] = []
    grid_serial = np.zeros(n_grids, dtype=np.intp)
    for j in range(len(communities)):
        gs = grid_order[gbounds[j] : gbounds[j + 1]]
        if len(gs) > 999:
            raise ValueError(f"community {communities[j][0]} has more than 999 grids")
        geoms = [grid_geoms[g] for g in gs]
        cgeom = _union(geoms)
        comm_geoms.append(cgeom)
        for serial, k in enumerate(_number_grids(geoms, cgeom), start=1):
            grid_serial[gs[k]] = serial
    street_geoms = [_union([comm_geoms[j] for j in members]) for members in comm_by_street]
    district_geom = _union(street_geoms)

    # Back to lon/lat in one vectorised call (identical vertices stay identical).
    metric = np.asarray([district_geom, *street_geoms, *comm_geoms, *grid_geoms], dtype=object)
    single = shapely.get_type_id(metric) == 3
    metric[single] = shapely.multipolygons(metric[single][:, None])
    if not (shapely.get_type_id(metric) == 6).all():
        raise RuntimeError("a generated unit is not polygonal")
    lonlat = shapely.transform(metric, inv)
    valid = shapely.is_valid(lonlat)
    if not valid.all():
        raise RuntimeError(f"{int((~valid).sum())} generated geometries are invalid")
    n_s, n_c = len(streets), len(communities)

    units: list[UnitSpec] = [
        UnitSpec(src.district_code, src.district_name, 1, None, lonlat[0], attributes={})
    ]
    for (scode, sname), geom in zip(streets, lonlat[1 : 1 + n_s], strict=True):
        kind = {"kind": _street_kind(sname)}
        units.append(UnitSpec(scode, sname, 2, src.district_code, geom, attributes=kind))
    comm_ll = lonlat[1 + n_s : 1 + n_s + n_c]
    for (ccode, cname, scode), geom in zip(communities, comm_ll, strict=True):
        kind = {"kind": _community_kind(cname)}
        units.append(UnitSpec(ccode, cname, 3, scode, geom, attributes=kind))
    grid_ll = lonlat[1 + n_s + n_c :]
    leaders = people(np.random.default_rng([seed, 4]), n_grids)
    for k, g in enumerate(np.lexsort((grid_serial, grid_comm))):
        ccode, cname, _ = communities[int(grid_comm[g])]
        serial = int(grid_serial[g])
        urban = "居委会" in cname or "社区" in cname
        units.append(
            UnitSpec(
                code=f"{ccode}{serial:03d}",
                name=f"{_short_name(cname)}第{serial}网格",
                level=4,
                parent_code=ccode,
                geometry=grid_ll[int(g)],
                leader_name=leaders[k][0],
                leader_phone=leaders[k][1],
                attributes={"kind": "urban" if urban else "rural"},
            )
        )
    return units


def songjiang_units() -> list[UnitSpec]:
    """Build the Songjiang demo grid: 1 district, 20 streets, 386 communities, 1322 grids."""
    return build_city(songjiang_source())
