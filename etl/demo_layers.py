"""Deterministic demo ownership layers over the demo grid: roads, areas, assets, zones, 1+X+Y."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely import affinity, ops
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from etl.demo_city import NAME_SYLLABLES, UnitSpec, people
from etl.taxonomy import CategorySpec, DepartmentSpec, load_categories, load_departments

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
GeomArray = npt.NDArray[np.object_]
XY = Callable[[FloatArray], FloatArray]

# the demo is built in Songjiang's own Gauss-Kruger zone, whatever a deployment's metric CRS
DEMO_METRIC_CRS = "EPSG:4549"

# Road classes: red-line half width (m) and the owning department.
ROAD_CLASSES: dict[str, tuple[float, str]] = {
    "arterial": (20.0, "JT-YH"),
    "secondary": (15.0, "JT-YH"),
    "branch": (10.0, "JT-YH"),
    "rural": (10.0, "JT"),
}
ARTERIAL_NAMES = (
    "人民路", "中山路", "荣乐路", "松汇路", "谷阳路", "沪松公路", "广富林路", "文诚路",
    "龙源路", "新松江路", "辰花公路", "嘉松公路", "莘砖公路", "松卫路", "沪亭路", "泗砖公路",
    "车亭公路", "叶新公路", "松金公路", "沪杭公路", "松蒸公路", "北松公路", "申港路", "乐都路",
    "玉树路", "茸梅路", "西林路", "三新路", "白粮路", "长谷路", "新车公路", "九新公路",
    "涞亭路", "佘天昆公路", "千新公路", "松闵路", "莘松路", "泗陈公路", "叶旺路", "张泽路",
)  # fmt: skip

# Area kinds: priority and the categories (or major prefixes) whose owner the area answers.
AREA_RULES: dict[str, tuple[int, tuple[str, ...]]] = {
    "railway": (90, ("C0115", "C0603", "E0101")),
    "residential_compound": (
        80,
        ("C0115", "C0403", "C0501", "E0101", "E0401", "E0403", "E0503", "E0607"),
    ),
    "campus": (75, ("C0115", "C0403", "E0101", "E0403", "E0503")),
    "park": (70, ("C0115", "C04", "E0101", "E0403")),
    "river": (60, ("C0602", "E0105")),
    "road_red_line": (50, ("C02", "C0115", "E0401")),
    "industrial_park": (40, ("C0115", "E0607")),
}

# Asset kind -> (supervising, owner, maintainer) departments; "*" is chosen per asset.
ASSET_DEPARTMENTS: dict[str, tuple[str, str, str]] = {
    "manhole_water": ("SW", "SW-GS", "SW-GS"),
    "manhole_sewage": ("SW", "SW-PS", "SW-PS"),
    "manhole_storm": ("SW", "SW-PS", "SW-PS"),
    "storm_grate": ("SW", "SW-PS", "JT-YH"),
    "manhole_power": ("JT", "DL", "DL"),
    "manhole_light": ("JT", "LD", "LD"),
    "manhole_telecom": ("JT", "*", "*"),
    "manhole_catv": ("WL", "GD", "GD"),
    "manhole_heat": ("JT", "RL", "RL"),
    "manhole_gas": ("JT", "RQ", "RQ"),
    "manhole_police": ("PSB", "PSB", "DX"),
    "manhole_fire": ("XF", "XF", "SW-GS"),
    "manhole_signal": ("PSB", "PSB-JJ", "PSB-JJ"),
    "manhole_civil_defence": ("MF", "MF", "MF"),
    "hydrant": ("XF", "XF", "SW-GS"),
    "street_light": ("JT", "LD", "LD"),
    "postbox": ("YZ", "YZ", "YZ"),
    "telecom_cabinet": ("JT", "*", "*"),
    "power_box": ("JT", "DL", "DL"),
    "camera": ("PSB", "PSB", "DX"),
    "bus_shelter": ("JT", "GJ", "GJ"),
    "traffic_sign": ("PSB", "PSB-JJ", "JT-YH"),
    "traffic_signal": ("PSB", "PSB-JJ", "PSB-JJ"),
    "guardrail": ("JT", "JT-YH", "JT-YH"),
    "footbridge": ("JT", "JT-YH", "JT-YH"),
    "street_name_sign": ("MZ", "MZ", "JT-YH"),
    "bollard": ("JT", "JT-YH", "JT-YH"),
    "parking_lot": ("JT", "JT", "JT"),
    "litter_bin": ("LHSR", "LHSR-HW", "LHSR-HW"),
    "refuse_station": ("LHSR", "LHSR-HW", "*"),
    "public_toilet": ("LHSR", "LHSR-HW", "LHSR-HW"),
    "billboard": ("LHSR", "LHSR", "LHSR"),
    "tree": ("LHSR", "LHSR-LH", "LHSR-LH"),
    "heritage_tree": ("LHSR", "LHSR-LH", "*"),
    "flower_box": ("LHSR", "LHSR-LH", "LHSR-LH"),
    "sculpture": ("GHZY", "LHSR", "LHSR-LH"),
    "fitness_equipment": ("TY", "TY", "*"),
}
TELECOM_OPERATORS = ("DX", "YD", "LT", "TT")
TELECOM_WEIGHTS = (0.4, 0.25, 0.2, 0.15)
STATES = ("intact", "damaged", "missing", "occupied")

# Named parks (lon, lat, radius m) and campuses near their real places; positions approximate.
NAMED_PARKS: tuple[tuple[str, float, float, float], ...] = (
    ("佘山国家森林公园", 121.195, 31.099, 950.0),
    ("辰山植物园", 121.180, 31.077, 750.0),
    ("广富林郊野公园", 121.214, 31.068, 650.0),
    ("月湖雕塑公园", 121.212, 31.091, 450.0),
    ("松南郊野公园", 121.245, 30.975, 700.0),
    ("松江中央公园", 121.222, 31.032, 300.0),
    ("醉白池公园", 121.226, 31.013, 140.0),
    ("方塔园", 121.240, 31.004, 180.0),
    ("思贤公园", 121.238, 31.036, 200.0),
)
CAMPUSES = (
    "东华大学松江校区",
    "上海外国语大学松江校区",
    "华东政法大学松江校区",
    "上海对外经贸大学松江校区",
    "上海立信会计金融学院松江校区",
    "上海视觉艺术学院",
    "上海工程技术大学松江校区",
)
UNIVERSITY_TOWN = (121.212, 31.052)
# Rivers and railway as (name, half width m, lon/lat polyline).
RIVERS: tuple[tuple[str, float, tuple[tuple[float, float], ...]], ...] = (
    (
        "黄浦江（松江段）",
        160.0,
        ((121.02, 31.02), (121.08, 30.99), (121.13, 30.965), (121.18, 30.950),
         (121.23, 30.955), (121.28, 30.968), (121.33, 30.975), (121.37, 30.985)),
    ),
    ("通波塘", 25.0, ((121.228, 31.16), (121.224, 31.08), (121.229, 31.02), (121.224, 30.955))),
    ("油墩港", 35.0, ((121.155, 31.16), (121.165, 31.05), (121.172, 30.955))),
)  # fmt: skip
RAILWAY = (
    "沪昆铁路（松江段）",
    30.0,
    ((121.37, 31.145), (121.30, 31.085), (121.25, 31.015), (121.20, 30.985), (121.10, 30.955),
     (121.02, 30.935)),
)  # fmt: skip
# Industrial parks: street code -> names (the street/town office manages them).
INDUSTRIAL_PARKS: dict[str, tuple[str, ...]] = {
    "310117501": ("松江工业区东部园区", "松江工业区西部园区", "松江工业区北部园区"),
    "310117507": ("松江出口加工区A区",),
    "310117104": ("车墩工业园区",),
    "310117105": ("新桥工业园区",),
    "310117107": ("九亭工业园区",),
    "310117102": ("泗泾工业园区",),
    "310117106": ("洞泾工业园区",),
    "310117121": ("小昆山工业园区",),
    "310117116": ("石湖荡工业园区",),
    "310117120": ("叶榭工业园区",),
}
COMPOUND_SUFFIXES = ("小区", "苑", "花园", "新村", "公寓", "家园", "名邸", "雅苑", "华庭", "新城")
TREE_SPECIES = ("香樟", "银杏", "悬铃木", "广玉兰", "榉树", "桂花", "罗汉松", "朴树")
SPECIALIST_CHUNKS: dict[str, tuple[int, int]] = {
    "CGZF": (4, 8),
    "SCJG": (8, 15),
    "FG": (5, 10),
    "LHSR": (6, 12),
}
DAY = (datetime.time(8, 0), datetime.time(20, 0))
NIGHT = (datetime.time(20, 0), datetime.time(8, 0))


@dataclass(frozen=True)
class AssetSpec:
    """A component (部件) with its category and its three departments (lon/lat geometry)."""

    code: str  # 16 digits: 6 district + 2 major + 2 minor + 6 serial
    category_code: str
    name: str
    geometry: Point | LineString | Polygon  # lon/lat
    supervising_department: str
    owner_department: str
    maintainer_department: str
    state: str  # intact | damaged | missing | occupied
    attributes: dict[str, Any]


@dataclass(frozen=True)
class AreaSpec:
    """An ownership area: whoever owns it answers for the listed categories inside it."""

    kind: str  # road_red_line | residential_compound | park | river | campus | railway | ...
    code: str
    name: str
    owner_department: str
    priority: int
    applies_to: tuple[str, ...]  # category codes or major prefixes like "C01"; () = all
    geometry: MultiPolygon  # lon/lat


@dataclass(frozen=True)
class ZoneSpec:
    """A zone of a department's own zoning, deliberately not aligned with the grid."""

    department: str
    layer: str  # police_beats | cgzf_zones | market_zones
    code: str
    name: str
    geometry: MultiPolygon  # lon/lat


@dataclass(frozen=True)
class PatrolTeamSpec:
    """A street office's patrol team with its members (name, phone, leader|member)."""

    code: str
    name: str
    department: str
    members: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class AssignmentSpec:
    """A team patrolling a grid on a shift; a night shift wraps past midnight."""

    team_code: str
    grid_code: str
    shift: str  # day | night
    weekdays: tuple[int, ...]  # 1=Mon..7=Sun
    start: datetime.time
    end: datetime.time


@dataclass(frozen=True)
class GridRoleSpec:
    """A person of a grid's X (auxiliaries...) or Y (a department's specialist)."""

    grid_code: str
    role: str  # auxiliary | supervisor | volunteer | building_leader | specialist
    name: str
    phone: str
    department: str | None  # set for specialists


@dataclass(frozen=True)
class DemoLayers:
    """Everything the demo city's ownership and responsibility layers hold."""

    departments: list[DepartmentSpec]
    categories: list[CategorySpec]
    assets: list[AssetSpec]
    areas: list[AreaSpec]
    zones: list[ZoneSpec]
    teams: list[PatrolTeamSpec]
    assignments: list[AssignmentSpec]
    roles: list[GridRoleSpec]


# --------------------------------------------------------------------------- context


@dataclass
class _City:
    """The units in metres with the masks the generators share."""

    district_code: str
    outline: BaseGeometry
    streets: list[UnitSpec]
    street_geoms: GeomArray
    grids: list[UnitSpec]
    grid_geoms: GeomArray
    grid_points: FloatArray
    grid_street: IntArray
    grid_community: list[str]
    urban_mask: BaseGeometry  # secondary roads
    core_mask: BaseGeometry  # branch roads
    theta: float  # road lattice angle (radians)
    fwd: XY


@dataclass
class _Roads:
    """Road centre lines (metres) with class, red-line half width, name and code."""

    lines: GeomArray
    cls: npt.NDArray[np.str_]
    half: FloatArray
    names: list[str]
    codes: list[str]


@dataclass
class _Area:
    """An ownership area in metres before conversion to lon/lat."""

    kind: str
    code: str
    name: str
    owner: str
    geom: BaseGeometry


class _Assets:
    """Accumulates generated assets (metric geometry) by kind before codes are assigned."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.geoms: list[GeomArray] = []
        self.names: list[str] = []
        self.owner: list[str | None] = []
        self.maint: list[str | None] = []
        self.attrs: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        geoms: GeomArray,
        names: Sequence[str],
        attrs: Sequence[dict[str, Any]],
        owner: Sequence[str | None] | None = None,
        maint: Sequence[str | None] | None = None,
    ) -> None:
        """Append one batch of assets of ``kind``."""
        n = len(geoms)
        if not n:
            return
        self.kinds.extend([kind] * n)
        self.geoms.append(np.asarray(geoms, dtype=object))
        self.names.extend(names)
        self.attrs.extend(attrs)
        self.owner.extend(owner if owner is not None else [None] * n)
        self.maint.extend(maint if maint is not None else [None] * n)

    def geometry(self) -> GeomArray:
        """All geometries so far as one array."""
        return np.concatenate(self.geoms) if self.geoms else np.empty(0, dtype=object)


def _xy_transform(src: str, dst: str) -> XY:
    """Return a vectorised (N, 2) -> (N, 2) coordinate transform."""
    tr = Transformer.from_crs(src, dst, always_xy=True)

    def fn(coords: FloatArray) -> FloatArray:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return fn


def _multi(geom: BaseGeometry) -> MultiPolygon:
    """Return the polygonal part of ``geom`` as a valid MultiPolygon."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    return MultiPolygon([g for g in shapely.get_parts(geom) if isinstance(g, Polygon)])


def _closing(geom: BaseGeometry, dist: float) -> BaseGeometry:
    """Morphological closing: fill gaps narrower than ``2 * dist``."""
    return shapely.buffer(shapely.buffer(geom, dist, quad_segs=4), -dist, quad_segs=4)


def _city(units: Sequence[UnitSpec], rng: np.random.Generator) -> _City:
    """Project the units to metres and derive the urban masks from grid density."""
    fwd = _xy_transform("EPSG:4326", DEMO_METRIC_CRS)
    district = [u for u in units if u.level == 1]
    if len(district) != 1:
        raise ValueError("expected exactly one district unit")
    streets = [u for u in units if u.level == 2]
    grids = [u for u in units if u.level == 4]
    comm_street = {u.code: u.parent_code for u in units if u.level == 3}
    street_index = {s.code: i for i, s in enumerate(streets)}
    geoms = shapely.transform(
        np.asarray([district[0].geometry] + [u.geometry for u in streets + grids], dtype=object),
        fwd,
    )
    outline = geoms[0]
    street_geoms = geoms[1 : 1 + len(streets)]
    grid_geoms = geoms[1 + len(streets) :]
    area = shapely.area(grid_geoms)
    urban = _closing(shapely.coverage_union_all(grid_geoms[area < 0.4e6]), 250.0)
    core = _closing(shapely.coverage_union_all(grid_geoms[area < 0.2e6]), 200.0)
    shapely.prepare(outline)
    return _City(
        district_code=district[0].code,
        outline=outline,
        streets=streets,
        street_geoms=street_geoms,
        grids=grids,
        grid_geoms=grid_geoms,
        grid_points=shapely.get_coordinates(shapely.point_on_surface(grid_geoms)),
        grid_street=np.array(
            [street_index[comm_street[str(g.parent_code)] or ""] for g in grids], dtype=np.intp
        ),
        grid_community=[str(g.parent_code) for g in grids],
        urban_mask=shapely.intersection(urban, outline),
        core_mask=shapely.intersection(core, outline),
        theta=float(rng.uniform(0.05, 0.14)),
        fwd=fwd,
    )


# --------------------------------------------------------------------------- people


def _people(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """Return ``n`` Chinese names with 11-digit mobile numbers."""
    return people(rng, n, one_char_share=0.35)


def _place_names(rng: np.random.Generator, n: int, taken: Sequence[str] = ()) -> list[str]:
    """Return ``n`` distinct two-character place names not in ``taken``."""
    syl = NAME_SYLLABLES
    pairs = [a + b for a in syl for b in syl if a != b]
    blocked = {t[:2] for t in taken}
    order = rng.permutation(len(pairs))
    names = [pairs[i] for i in order if pairs[i] not in blocked]
    if len(names) < n:
        raise ValueError("not enough place names")
    return names[:n]


def _street_short(name: str) -> str:
    """Strip 街道/镇 from a street or town name."""
    for suffix in ("街道", "镇"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------- roads


def _rotate(u: FloatArray, v: FloatArray, theta: float, centre: FloatArray) -> FloatArray:
    """Rotate lattice coordinates (u, v) by ``theta`` about ``centre``."""
    c, s = math.cos(theta), math.sin(theta)
    return np.column_stack([centre[0] + c * u - s * v, centre[1] + s * u + c * v])


def _lattice(
    city: _City,
    rng: np.random.Generator,
    offsets: FloatArray,
    amp: float,
    wave: tuple[float, float],
) -> list[LineString]:
    """Wobbly lines of both lattice families at ``offsets`` (metres from the centre)."""
    minx, miny, maxx, maxy = city.outline.bounds
    centre = np.array([(minx + maxx) / 2, (miny + maxy) / 2])
    extent = 0.5 * math.hypot(maxx - minx, maxy - miny) + 500.0
    t = np.arange(-extent, extent + 100.0, 100.0)
    lines: list[LineString] = []
    for family in (0, 1):
        for off in offsets:
            a = rng.uniform(0.0, amp)
            lam = rng.uniform(*wave)
            phase = rng.uniform(0.0, 2 * math.pi)
            w = off + a * np.sin(2 * math.pi * t / lam + phase)
            uv = (w, t) if family == 0 else (t, w)
            lines.append(LineString(_rotate(uv[0], uv[1], city.theta, centre)))
    return lines


def _clip_lines(
    lines: Sequence[LineString], mask: BaseGeometry, min_len: float
) -> tuple[GeomArray, IntArray]:
    """Clip lines to ``mask``; return the parts at least ``min_len`` long and their source."""
    clipped = shapely.intersection(np.asarray(lines, dtype=object), mask)
    parts, src = shapely.get_parts(shapely.line_merge(clipped), return_index=True)
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= min_len)
    return parts[keep], np.asarray(src[keep], dtype=np.intp)


def _roads(city: _City, rng: np.random.Generator) -> _Roads:
    """Build the lattice road network: arterials, urban secondary/branch roads, rural roads."""
    minx, miny, maxx, maxy = city.outline.bounds
    extent = 0.5 * math.hypot(maxx - minx, maxy - miny) + 500.0
    base = rng.uniform(0.0, 850.0)
    k = np.arange(-math.ceil(extent / 850.0), math.ceil(extent / 850.0) + 1)
    off: FloatArray = np.asarray(base + 850.0 * k, dtype=np.float64)
    rural_zone = shapely.difference(city.outline, shapely.buffer(city.urban_mask, 300.0))
    sets = [
        ("arterial", _lattice(city, rng, off[k % 3 == 0], 150.0, (6000.0, 14000.0)), city.outline,
         400.0),
        ("secondary", _lattice(city, rng, off[k % 3 != 0], 40.0, (2000.0, 5000.0)),
         city.urban_mask, 250.0),
        ("branch", _lattice(city, rng, off + 425.0, 25.0, (1500.0, 4000.0)), city.core_mask,
         200.0),
        ("rural", _lattice(city, rng, off[k % 3 == 0] + 1275.0, 180.0, (3000.0, 7000.0)),
         rural_zone, 400.0),
    ]  # fmt: skip
    lines: list[GeomArray] = []
    classes: list[str] = []
    names: list[str] = []
    synth = iter(_place_names(rng, sum(len(raw) for _, raw, _, _ in sets), ARTERIAL_NAMES))
    for cls, raw, mask, min_len in sets:
        parts, src = _clip_lines(raw, mask, min_len)
        # One name per lattice line, so the pieces of a road cut by the outline share it.
        if cls == "arterial":
            line_names = [ARTERIAL_NAMES[k % len(ARTERIAL_NAMES)] for k in range(len(raw))]
        else:
            line_names = [next(synth) + ("公路" if cls == "rural" else "路") for _ in raw]
        lines.append(parts)
        classes.extend([cls] * len(parts))
        names.extend(line_names[k] for k in src)
    all_lines = np.concatenate(lines)
    cls_arr = np.asarray(classes)
    half = np.array([ROAD_CLASSES[c][0] for c in classes])
    codes = [f"RD{i + 1:04d}" for i in range(len(all_lines))]
    return _Roads(all_lines, cls_arr, half, names, codes)


def _along(
    roads: _Roads,
    idx: IntArray,
    spacing: float,
    lateral: FloatArray,
    rng: np.random.Generator,
    *,
    sides: str = "alternate",
    jitter: float = 0.1,
) -> tuple[FloatArray, IntArray, FloatArray]:
    """Stations every ``spacing`` m along roads ``idx``, ``lateral`` m aside: xy, road, angle."""
    # sides: right, left, alternate (staggered) or both (a pair per station).
    if not len(idx):
        return np.empty((0, 2)), np.empty(0, dtype=np.intp), np.empty(0)
    geoms = roads.lines[idx]
    length = shapely.length(geoms)
    start = rng.uniform(0.0, spacing, len(idx))
    n = np.where(length > start, np.floor((length - start) / spacing).astype(np.intp) + 1, 0)
    r = np.repeat(np.arange(len(idx)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    s = start[r] + k * spacing + rng.normal(0.0, jitter * spacing, len(r))
    s = np.clip(s, 0.0, length[r])
    side = np.ones(len(r))
    if sides == "left":
        side = -side
    elif sides == "alternate":
        side = np.where(k % 2 == 0, 1.0, -1.0)
    elif sides == "both":
        s2 = np.clip(s + 0.3 * spacing, 0.0, length[r])
        r, s, side = np.concatenate([r, r]), np.concatenate([s, s2]), np.concatenate([side, -side])
    line = geoms[r]
    p = shapely.get_coordinates(shapely.line_interpolate_point(line, s))
    a = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(s - 2.0, 0.0)))
    b = shapely.get_coordinates(shapely.line_interpolate_point(line, s + 2.0))
    t = b - a
    t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)[:, None]
    normal = np.column_stack([-t[:, 1], t[:, 0]])
    lat = lateral[r] * side + rng.normal(0.0, 0.3, len(r))
    return p + normal * lat[:, None], idx[r], np.arctan2(t[:, 1], t[:, 0])


def _intersections(roads: _Roads) -> tuple[FloatArray, IntArray, IntArray]:
    """Points where two roads cross: positions and the two road indices."""
    tree = shapely.STRtree(roads.lines)
    i, j = tree.query(roads.lines, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    parts, owner = shapely.get_parts(
        shapely.intersection(roads.lines[i], roads.lines[j]), return_index=True
    )
    pts = shapely.get_type_id(parts) == 0
    return shapely.get_coordinates(parts[pts]), i[owner[pts]], j[owner[pts]]


# --------------------------------------------------------------------------- areas


def _line_m(
    city: _City, coords: Sequence[tuple[float, float]], rng: np.random.Generator, amp: float
) -> LineString:
    """A lon/lat polyline in metres, densified to 50 m and meandering up to ``amp`` m."""
    line = shapely.segmentize(LineString(city.fwd(np.asarray(coords, dtype=float))), 50.0)
    xy = shapely.get_coordinates(line)
    step = np.hypot(*np.diff(xy, axis=0).T)
    s = np.r_[0.0, np.cumsum(step)]
    t = np.gradient(xy, s, axis=0)
    t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)[:, None]
    w = np.zeros(len(s))
    for lam in np.array([1800.0, 4200.0, 9000.0]) * (1.0 + amp / 150.0):
        w += amp * rng.uniform(0.2, 0.5) * np.sin(2 * math.pi * s / lam + rng.uniform(0, 7))
    w *= np.minimum(1.0, np.minimum(s, s[-1] - s) / 1000.0)  # keep the ends in place
    return LineString(xy + np.column_stack([-t[:, 1], t[:, 0]]) * w[:, None])


def _rect(x: float, y: float, w: float, h: float, angle: float) -> Polygon:
    """A ``w`` x ``h`` rectangle centred on (x, y) rotated by ``angle`` radians."""
    r = affinity.rotate(box(-w / 2, -h / 2, w / 2, h / 2), angle, origin=(0, 0), use_radians=True)
    return affinity.translate(r, x, y)


def _blob(x: float, y: float, r: float, rng: np.random.Generator, n: int = 36) -> Polygon:
    """An irregular roundish polygon of mean radius ``r`` centred on (x, y)."""
    ang = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    rad = np.full(n, r)
    for j in (2, 3, 4):
        rad += r * rng.uniform(0.0, 0.12) * np.cos(j * ang + rng.uniform(0, 2 * math.pi))
    return Polygon(np.column_stack([x + rad * np.cos(ang), y + rad * np.sin(ang)]))


def _largest_parts(geom: BaseGeometry, min_area: float) -> BaseGeometry:
    """Keep the polygons of ``geom`` at least ``min_area`` m² (or the largest one)."""
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    if not parts:
        return Polygon()
    big = [p for p in parts if p.area >= min_area]
    return MultiPolygon(big or [max(parts, key=lambda p: p.area)])


def _random_points(
    geom: BaseGeometry, n: int, rng: np.random.Generator
) -> FloatArray:
    """Draw ``n`` uniform points inside ``geom`` by rejection."""
    minx, miny, maxx, maxy = geom.bounds
    shapely.prepare(geom)
    out: list[FloatArray] = []
    have = 0
    for _ in range(200):
        if have >= n:
            break
        m = 4 * (n - have) + 16
        pts = np.column_stack([rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)])
        pts = pts[shapely.contains_xy(geom, pts[:, 0], pts[:, 1])]
        out.append(pts)
        have += len(pts)
    return np.concatenate(out)[:n] if out else np.empty((0, 2))


def _minus(
    geom: BaseGeometry, tree: shapely.STRtree, polys: GeomArray
) -> BaseGeometry:
    """Subtract from ``geom`` the indexed polygons that intersect it."""
    hits = tree.query(geom, predicate="intersects")
    if not len(hits):
        return geom
    return shapely.difference(geom, shapely.union_all(polys[np.sort(hits)]))


def _water_and_rail(city: _City, rng: np.random.Generator) -> list[_Area]:
    """Rivers (river management) and the railway corridor (railway), clipped to the district."""
    out: list[_Area] = []
    for k, (name, half, coords) in enumerate(RIVERS, start=1):
        line = _line_m(city, coords, rng, 120.0 + 2.0 * half)
        geom = shapely.intersection(shapely.buffer(line, half), city.outline)
        out.append(_Area("river", f"HD{k:02d}", name, "SW-HD", _largest_parts(geom, 1e4)))
    name, half, coords = RAILWAY
    geom = shapely.intersection(
        shapely.buffer(_line_m(city, coords, rng, 0.0), half, cap_style="flat"), city.outline
    )
    out.append(_Area("railway", "TL01", name, "TL", _largest_parts(geom, 1e4)))
    return [a for a in out if not a.geom.is_empty]


def _parks(
    city: _City, rng: np.random.Generator, red_gap: GeomArray, taken: list[_Area]
) -> list[_Area]:
    """Named and synthetic parks (greening), off roads, water and each other."""
    road_tree = shapely.STRtree(red_gap)
    out: list[_Area] = []
    blockers = [a.geom for a in taken]
    xy = city.fwd(np.array([(lon, lat) for _, lon, lat, _ in NAMED_PARKS]))
    cands: list[tuple[str, float, float, float]] = [
        (name, float(x), float(y), r)
        for (name, _, _, r), (x, y) in zip(NAMED_PARKS, xy, strict=True)
    ]
    centres = _random_points(city.urban_mask, 80, rng)
    synth = _place_names(rng, len(centres))
    suffix = ("公园", "绿地", "公园", "游园")
    for k, (x, y) in enumerate(centres):
        cands.append((synth[k] + suffix[k % 4], float(x), float(y), float(rng.uniform(70, 240))))
    n_named = len(NAMED_PARKS)
    for k, (name, x, y, r) in enumerate(cands):
        if len(out) >= n_named + 28:
            break
        blob = _blob(x, y, r, rng)
        if k >= n_named and any(blob.intersects(b) for b in blockers):
            continue
        geom = shapely.intersection(blob, city.outline)
        for b in blockers:
            geom = shapely.difference(geom, b)
        geom = _largest_parts(_minus(geom, road_tree, red_gap), 5000.0)
        if geom.is_empty or geom.area < (0.3 if k < n_named else 0.5) * blob.area:
            continue
        out.append(_Area("park", f"GY{len(out) + 1:03d}", name, "LHSR-LH", geom))
        blockers.append(shapely.buffer(geom, 20.0))
    return out


def _campuses(
    city: _City, rng: np.random.Generator, red_gap: GeomArray, taken: list[_Area]
) -> list[_Area]:
    """The university town's campuses (education) on a lattice west of the old town."""
    road_tree = shapely.STRtree(red_gap)
    ((cx, cy),) = city.fwd(np.array([UNIVERSITY_TOWN]))
    slots = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    order = rng.permutation(len(slots))
    out: list[_Area] = []
    for name, s in zip(CAMPUSES, order, strict=False):
        a, b = slots[int(s)]
        c, si = math.cos(city.theta), math.sin(city.theta)
        x = cx + 1050.0 * (c * a - si * b)
        y = cy + 1050.0 * (si * a + c * b)
        rect = _rect(x, y, rng.uniform(700, 900), rng.uniform(650, 850), city.theta)
        geom = shapely.intersection(rect, city.outline)
        for t in taken:
            geom = shapely.difference(geom, shapely.buffer(t.geom, 15.0))
        geom = _largest_parts(_minus(geom, road_tree, red_gap), 2e4)
        if not geom.is_empty:
            out.append(_Area("campus", f"XY{len(out) + 1:02d}", name, "JY", geom))
    return out


def _industrial(
    city: _City, rng: np.random.Generator, taken: list[_Area]
) -> list[_Area]:
    """Industrial parks managed by their street/town office."""
    index = {s.code: i for i, s in enumerate(city.streets)}
    out: list[_Area] = []
    blockers = [shapely.buffer(t.geom, 10.0) for t in taken]
    for street, names in INDUSTRIAL_PARKS.items():
        if street not in index:
            continue
        sgeom = shapely.buffer(city.street_geoms[index[street]], -50.0)
        for name in names:
            for x, y in _random_points(sgeom, 25, rng):
                rect = _rect(x, y, rng.uniform(900, 1700), rng.uniform(700, 1300), city.theta)
                geom = shapely.intersection(rect, sgeom)
                for b in blockers:
                    geom = shapely.difference(geom, b)
                geom = _largest_parts(geom, 5e4)
                if not geom.is_empty and geom.area >= 0.6 * rect.area:
                    out.append(
                        _Area("industrial_park", f"YQ{len(out) + 1:02d}", name, f"JD{street}",
                              geom)
                    )
                    blockers.append(shapely.buffer(geom, 30.0))
                    break
    return out


def _compounds(
    city: _City,
    roads: _Roads,
    rng: np.random.Generator,
    taken: list[_Area],
    target: int = 800,
) -> tuple[list[_Area], int]:
    """Residential compounds between the roads; a few reach into a road's red line."""
    area = shapely.area(city.grid_geoms)
    urban = np.array([g.attributes.get("kind") == "urban" for g in city.grids])
    w = np.where(urban, 1.0 / area**1.5, 0.0)
    w = 0.88 * w / w.sum() + 0.12 * (~urban) / max(1, int((~urban).sum()))
    n = 4 * target
    pick = rng.choice(len(area), size=n, p=w)
    bounds = shapely.bounds(city.grid_geoms[pick])
    tries = 12
    px = rng.uniform(bounds[:, 0, None], bounds[:, 2, None], (n, tries))
    py = rng.uniform(bounds[:, 1, None], bounds[:, 3, None], (n, tries))
    inside = shapely.contains_xy(np.repeat(city.grid_geoms[pick], tries).reshape(n, tries), px, py)
    ok = inside.any(axis=1)
    first = inside.argmax(axis=1)
    cx, cy = px[np.arange(n), first][ok], py[np.arange(n), first][ok]
    is_urban = urban[pick][ok]
    size_lo = np.where(is_urban, 110.0, 90.0)
    size_hi = np.where(is_urban, 290.0, 200.0)
    ww = rng.uniform(size_lo, size_hi)
    hh = rng.uniform(size_lo, size_hi)
    ang = city.theta + rng.normal(0.0, 0.04, len(cx))
    rects = np.array(
        [_rect(*a) for a in zip(cx, cy, ww, hh, ang, strict=True)], dtype=object
    )
    blockers = np.array([shapely.buffer(t.geom, 15.0) for t in taken], dtype=object)
    blocked = np.zeros(len(rects), dtype=bool)
    if len(blockers):
        hit, _ = shapely.STRtree(blockers).query(rects, predicate="intersects")
        blocked[hit] = True
    blocked |= ~shapely.within(rects, city.outline)
    spaced = shapely.buffer(rects, 12.0)
    a_i, b_i = shapely.STRtree(spaced).query(spaced, predicate="intersects")
    keep = a_i > b_i  # neighbours that come earlier
    nbrs: dict[int, list[int]] = {}
    for a, b in zip(a_i[keep], b_i[keep], strict=True):
        nbrs.setdefault(int(a), []).append(int(b))
    red_tree = shapely.STRtree(roads.lines)
    accepted: list[int] = []
    acc = np.zeros(len(rects), dtype=bool)
    geoms: list[BaseGeometry] = []
    overlap: list[bool] = []
    for i in range(len(rects)):
        if len(accepted) >= target:
            break
        if blocked[i] or any(acc[j] for j in nbrs.get(i, ())):
            continue
        near = np.sort(red_tree.query(rects[i], predicate="dwithin", distance=30.0))
        reach = bool(len(near)) and rng.random() < 0.05
        gap = -7.0 if reach else 3.0
        geom = rects[i]
        if len(near):
            cut = shapely.buffer(roads.lines[near], roads.half[near] + gap, cap_style="flat")
            geom = shapely.difference(geom, shapely.union_all(cut))
        geom = _largest_parts(geom, math.inf)  # a compound does not straddle a road
        if geom.is_empty or geom.area < 0.5 * rects[i].area:
            continue
        acc[i] = True
        accepted.append(i)
        geoms.append(geom)
        overlap.append(reach)
    names = _place_names(rng, len(geoms))
    out: list[_Area] = []
    for k, geom in enumerate(geoms):
        suffix = COMPOUND_SUFFIXES[int(rng.integers(len(COMPOUND_SUFFIXES)))]
        owner = "FG" if suffix == "新村" or rng.random() < 0.05 else "WY"
        out.append(
            _Area("residential_compound", f"XQ{k + 1:04d}", names[k] + suffix, owner, geom)
        )
    return out, int(sum(overlap))


def _road_areas(city: _City, roads: _Roads) -> list[_Area]:
    """The red line of every road (roads department), clipped to the district."""
    red = shapely.intersection(
        shapely.buffer(roads.lines, roads.half, cap_style="flat"), city.outline
    )
    return [
        _Area("road_red_line", roads.codes[i], roads.names[i] + "道路红线",
              ROAD_CLASSES[str(roads.cls[i])][1], _largest_parts(red[i], 0.0))
        for i in range(len(red))
        if not red[i].is_empty
    ]  # fmt: skip


# --------------------------------------------------------------------------- assets

# kind -> (lateral = a * half + b, {road class: (spacing m, sides)}, arterials only in town)
ALONG_ROADS: dict[str, tuple[tuple[float, float], dict[str, tuple[float, str]], bool]] = {
    "street_light": ((1, -2.5), {"arterial": (40, "both"), "secondary": (40, "alternate"),
                                 "branch": (45, "alternate"), "rural": (80, "right")}, False),
    "manhole_water": ((1, -6.0), {"arterial": (150, "right"), "secondary": (150, "right"),
                                  "branch": (180, "right"), "rural": (600, "right")}, False),
    "manhole_sewage": ((0, 1.5), {"arterial": (120, "right"), "secondary": (120, "right"),
                                  "branch": (150, "right"), "rural": (600, "right")}, False),
    "manhole_storm": ((1, -7.0), {"arterial": (100, "alternate"), "secondary": (100, "alternate"),
                                  "branch": (100, "alternate"), "rural": (500, "right")}, False),
    "storm_grate": ((1, -4.5), {"arterial": (80, "alternate"), "secondary": (80, "alternate"),
                                "branch": (80, "alternate")}, True),
    "manhole_power": ((1, -3.5), {"arterial": (150, "left"), "secondary": (180, "left"),
                                  "branch": (250, "left"), "rural": (600, "left")}, False),
    "manhole_telecom": ((1, -3.5), {"arterial": (120, "right"), "secondary": (150, "right"),
                                    "branch": (200, "right"), "rural": (600, "right")}, False),
    "manhole_catv": ((1, -2.5), {"arterial": (250, "right"), "secondary": (250, "right"),
                                 "branch": (300, "right")}, True),
    "manhole_gas": ((1, -5.5), {"arterial": (180, "left"), "secondary": (180, "left"),
                                "branch": (250, "left"), "rural": (800, "left")}, False),
    "manhole_police": ((1, -2.0), {"arterial": (500, "right"), "secondary": (700, "right")},
                       True),
    "manhole_fire": ((1, -2.0), {"arterial": (400, "left"), "secondary": (500, "left"),
                                 "branch": (600, "left")}, True),
    "manhole_civil_defence": ((1, -4.0), {"arterial": (2500, "right"),
                                          "secondary": (3000, "right")}, True),
    "hydrant": ((1, -1.5), {"arterial": (150, "alternate"), "secondary": (150, "alternate"),
                            "branch": (150, "alternate"), "rural": (500, "right")}, False),
    "bus_shelter": ((1, -2.0), {"arterial": (600, "both"), "secondary": (800, "alternate"),
                                "rural": (1500, "right")}, False),
    "traffic_sign": ((1, -1.0), {"arterial": (400, "alternate"), "secondary": (500, "alternate"),
                                 "branch": (600, "alternate"), "rural": (800, "alternate")},
                     False),
    "litter_bin": ((1, -1.2), {"arterial": (100, "both"), "secondary": (100, "alternate"),
                               "branch": (120, "alternate"), "rural": (600, "right")}, True),
    "tree": ((1, -3.0), {"arterial": (50, "both"), "secondary": (80, "both"),
                         "branch": (80, "both"), "rural": (300, "right")}, True),
    "postbox": ((1, -1.0), {"arterial": (1500, "right"), "secondary": (1500, "right"),
                            "branch": (2000, "right")}, True),
    "telecom_cabinet": ((1, -0.8), {"arterial": (400, "right"), "secondary": (400, "right"),
                                    "branch": (500, "right"), "rural": (2000, "right")}, False),
    "power_box": ((1, -0.8), {"arterial": (400, "left"), "secondary": (400, "left"),
                              "branch": (450, "left"), "rural": (1200, "left")}, False),
    "bollard": ((1, -4.0), {"branch": (200, "alternate")}, False),
    "billboard": ((1, 6.0), {"arterial": (300, "alternate"), "secondary": (400, "alternate")},
                  True),
    "public_toilet": ((1, 12.0), {"arterial": (1500, "alternate"), "secondary": (1500, "right"),
                                  "branch": (1500, "right"), "rural": (3000, "right")}, False),
    "flower_box": ((0, 0.0), {"arterial": (250, "right")}, True),
    "camera": ((1, -1.0), {"arterial": (300, "alternate"), "secondary": (400, "alternate"),
                           "branch": (500, "alternate"), "rural": (1500, "right")}, False),
}  # fmt: skip


def _years(rng: np.random.Generator, n: int) -> IntArray:
    """Installation years, more recent ones likelier."""
    return np.asarray(2024 - np.floor(rng.exponential(9.0, n)).clip(0, 30), dtype=np.intp)


def _road_assets(
    store: _Assets, city: _City, roads: _Roads, rng: np.random.Generator
) -> None:
    """Place the along-road assets of ALONG_ROADS, plus street-light covers."""
    for kind, ((fa, fb), per_class, town_only) in ALONG_ROADS.items():
        xys: list[FloatArray] = []
        rds: list[IntArray] = []
        for cls, (spacing, sides) in per_class.items():
            idx = np.flatnonzero(roads.cls == cls)
            xy, rd, _ = _along(roads, idx, float(spacing), fa * roads.half + fb, rng, sides=sides)
            if town_only and cls == "arterial" and len(xy):
                inside = shapely.contains_xy(city.urban_mask, xy[:, 0], xy[:, 1])
                xy, rd = xy[inside], rd[inside]
            xys.append(xy)
            rds.append(rd)
        xy = np.concatenate(xys)
        rd = np.concatenate(rds)
        years = _years(rng, len(xy))
        attrs: list[dict[str, Any]] = [
            {"road": roads.codes[r], "installed": int(y)} for r, y in zip(rd, years, strict=True)
        ]
        owner: list[str | None] | None = None
        maint: list[str | None] | None = None
        if kind in ("manhole_telecom", "telecom_cabinet"):
            ops_ = rng.choice(len(TELECOM_OPERATORS), size=len(xy), p=TELECOM_WEIGHTS)
            owner = [TELECOM_OPERATORS[o] for o in ops_]
            tower = rng.random(len(xy)) < 0.2
            maint = ["TT" if t else o for t, o in zip(tower, owner, strict=True)]
        if kind.startswith("manhole_") or kind == "storm_grate":
            for a in attrs:
                a["diameter_mm"] = 700 if kind != "storm_grate" else 0
        elif kind == "street_light":
            for a, r in zip(attrs, rd, strict=True):
                a["height_m"] = 12 if roads.cls[r] == "arterial" else 8
        elif kind == "tree":
            sp = rng.integers(len(TREE_SPECIES), size=len(xy))
            dbh = rng.integers(12, 60, size=len(xy))
            for a, s, d in zip(attrs, sp, dbh, strict=True):
                a["species"] = TREE_SPECIES[s]
                a["dbh_cm"] = int(d)
        store.add(kind, shapely.points(xy), [roads.names[r] for r in rd], attrs, owner, maint)
        if kind == "street_light":
            # One street-light cover next to every sixth lamp post.
            sel = np.arange(0, len(xy), 6)
            cov = xy[sel] + rng.normal(0.0, 0.8, (len(sel), 2))
            store.add(
                "manhole_light",
                shapely.points(cov),
                [roads.names[r] for r in rd[sel]],
                [{"road": roads.codes[r], "diameter_mm": 500} for r in rd[sel]],
            )


def _junction_assets(
    store: _Assets, city: _City, roads: _Roads, rng: np.random.Generator
) -> None:
    """Signals, signal covers, cameras, name signs, sculptures and footbridges at junctions."""
    xy, i, j = _intersections(roads)
    ci, cj = roads.cls[i], roads.cls[j]
    urban = shapely.contains_xy(city.urban_mask, xy[:, 0], xy[:, 1])
    major = np.isin(ci, ("arterial", "secondary")) & np.isin(cj, ("arterial", "secondary"))
    signal = (ci == "arterial") | (cj == "arterial") | (urban & major)
    radius = np.hypot(roads.half[i], roads.half[j]) + 1.0
    corners = city.theta + math.pi / 4 + np.arange(4) * math.pi / 2
    dirs = np.column_stack([np.cos(corners), np.sin(corners)])

    def at(sel: npt.NDArray[np.bool_], corner: IntArray, rad: FloatArray) -> FloatArray:
        d = dirs[corner]
        return xy[sel] + d * rad[sel][:, None] + rng.normal(0.0, 0.5, (int(sel.sum()), 2))

    def junction(sel: npt.NDArray[np.bool_]) -> list[str]:
        return [f"{roads.names[a]}与{roads.names[b]}路口" for a, b in zip(i[sel], j[sel],
                                                                         strict=True)]

    for c in range(4):
        pos = at(signal, np.full(int(signal.sum()), c), radius)
        store.add("traffic_signal", shapely.points(pos), junction(signal),
                  [{"junction": f"{roads.codes[a]}x{roads.codes[b]}"}
                   for a, b in zip(i[signal], j[signal], strict=True)])
    for c in (0, 2):
        pos = at(signal, np.full(int(signal.sum()), c), radius - 4.0)
        store.add("manhole_signal", shapely.points(pos), junction(signal),
                  [{"diameter_mm": 600} for _ in range(int(signal.sum()))])
    cam = urban | signal
    for c in (1, 3):
        pos = at(cam, np.full(int(cam.sum()), c), radius + 1.0)
        store.add("camera", shapely.points(pos), junction(cam),
                  [{"junction": True} for _ in range(int(cam.sum()))])
    named = np.array([roads.names[a] != roads.names[b] for a, b in zip(i, j, strict=True)],
                     dtype=bool)
    for c, which in ((0, i), (2, j)):
        pos = at(named, np.full(int(named.sum()), c), radius + 2.0)
        store.add("street_name_sign", shapely.points(pos), [roads.names[w] for w in which[named]],
                  [{"text": roads.names[w]} for w in which[named]])
    # Sculptures at a few town junctions, footbridges over busy arterials near junctions.
    town = np.flatnonzero(urban & signal)
    pick = np.sort(rng.choice(town, size=min(20, len(town)), replace=False))
    pos = xy[pick] + dirs[np.full(len(pick), 1)] * (radius[pick] + 15.0)[:, None]
    store.add("sculpture", shapely.points(pos), [roads.names[a] for a in i[pick]],
              [{"junction": True} for _ in pick])
    art = np.flatnonzero(urban & (ci == "arterial"))
    pick = np.sort(rng.choice(art, size=min(16, len(art)), replace=False))
    bridges: list[LineString] = []
    for k in pick:
        line = roads.lines[i[k]]
        s = line.project(Point(xy[k])) + 60.0
        p = np.array(line.interpolate(min(s, line.length)).coords[0])
        q = np.array(line.interpolate(min(s + 2.0, line.length)).coords[0])
        t = (q - p) / max(float(np.hypot(*(q - p))), 1e-9)
        n = np.array([-t[1], t[0]]) * (roads.half[i[k]] + 8.0)
        bridges.append(LineString([p - n, p + n]))
    store.add("footbridge", np.array(bridges, dtype=object), [roads.names[a] for a in i[pick]],
              [{"length_m": round(float(b.length), 1)} for b in bridges])


def _linear_assets(store: _Assets, roads: _Roads, rng: np.random.Generator) -> None:
    """Median guardrails on arterial roads and roadside guardrails on rural ones."""
    geoms: list[LineString] = []
    names: list[str] = []
    for r in np.flatnonzero(np.isin(roads.cls, ("arterial", "rural"))):
        line = roads.lines[r]
        step = 700.0 if roads.cls[r] == "arterial" else 2500.0
        s = rng.uniform(0.0, step)
        while s < line.length - 50.0:
            seg = ops.substring(line, s, min(s + rng.uniform(150.0, 350.0), line.length))
            if isinstance(seg, LineString) and seg.length > 20.0:
                if roads.cls[r] == "rural":
                    side = shapely.offset_curve(seg, roads.half[r] - 1.0)
                    seg = side if isinstance(side, LineString) else seg
                geoms.append(seg)
                names.append(roads.names[r])
            s += step
    store.add("guardrail", np.array(geoms, dtype=object), names,
              [{"length_m": round(g.length, 1)} for g in geoms])


def _area_assets(
    store: _Assets,
    city: _City,
    roads: _Roads,
    areas: list[_Area],
    rng: np.random.Generator,
) -> None:
    """Assets inside areas: fitness gear, refuse stations, park toilets, old trees, car parks."""
    compounds = [a for a in areas if a.kind == "residential_compound"]
    parks = [a for a in areas if a.kind == "park"]
    # Fitness equipment: most compounds and every park.
    fit_geoms: list[Point] = []
    fit_names: list[str] = []
    fit_maint: list[str | None] = []
    for a in compounds:
        if rng.random() < 0.7:
            fit_geoms.append(shapely.point_on_surface(a.geom))
            fit_names.append(a.name)
            fit_maint.append(a.owner)
    for a in parks:
        for x, y in _random_points(a.geom, 2, rng):
            fit_geoms.append(Point(x, y))
            fit_names.append(a.name)
            fit_maint.append("LHSR-LH")
    store.add("fitness_equipment", np.array(fit_geoms, dtype=object), fit_names,
              [{"area": n} for n in fit_names], None, fit_maint)
    # Refuse stations: every other compound plus villages (rural grids).
    rs_geoms: list[Polygon] = []
    rs_names: list[str] = []
    rs_maint: list[str | None] = []
    for k, a in enumerate(compounds):
        if k % 2 == 0:
            inner = shapely.buffer(a.geom, -15.0)
            p = shapely.point_on_surface(inner if not inner.is_empty else a.geom)
            rs_geoms.append(_rect(p.x, p.y, 14.0, 9.0, city.theta))
            rs_names.append(a.name)
            rs_maint.append(a.owner)
    rural = [g for g in range(len(city.grids)) if city.grids[g].attributes.get("kind") != "urban"]
    for g in rural[::2]:
        x, y = city.grid_points[g]
        rs_geoms.append(_rect(x + 20.0, y, 12.0, 8.0, city.theta))
        rs_names.append(city.grids[g].name)
        rs_maint.append(f"JD{city.streets[city.grid_street[g]].code}")
    store.add("refuse_station", np.array(rs_geoms, dtype=object), rs_names,
              [{"capacity_t": int(c)} for c in rng.integers(2, 12, len(rs_geoms))], None, rs_maint)
    # A toilet in every park; sculptures in the larger parks.
    store.add("public_toilet", shapely.point_on_surface(np.array([a.geom for a in parks])),
              [a.name for a in parks], [{"area": a.code} for a in parks])
    big = [a for a in parks if a.geom.area > 1.5e5]
    sc = [(_random_points(a.geom, 2, rng), a) for a in big]
    store.add("sculpture", shapely.points(np.concatenate([p for p, _ in sc])),
              [a.name for p, a in sc for _ in p], [{"area": a.code} for p, a in sc for _ in p])
    # Heritage trees: parks, compounds of the old town and the core.
    ht: list[tuple[float, float, str, str | None]] = []
    for a in parks:
        if rng.random() < 0.5:
            for x, y in _random_points(a.geom, int(rng.integers(1, 4)), rng):
                ht.append((x, y, a.name, "LHSR-LH"))
    core_compounds = [a for a in compounds if city.core_mask.contains(a.geom.centroid)]
    for a in core_compounds[:: max(1, len(core_compounds) // 25)]:
        p = shapely.point_on_surface(a.geom)
        ht.append((p.x, p.y, a.name, a.owner))
    for x, y in _random_points(city.core_mask, 20, rng):
        ht.append((x, y, "老城区", "LHSR-LH"))
    species = rng.integers(len(TREE_SPECIES), size=len(ht))
    ages = rng.integers(100, 800, size=len(ht))
    store.add(
        "heritage_tree",
        shapely.points(np.array([(x, y) for x, y, _, _ in ht])),
        [n for _, _, n, _ in ht],
        [{"species": TREE_SPECIES[s], "age_years": int(a)}
         for s, a in zip(species, ages, strict=True)],
        None,
        [m for _, _, _, m in ht],
    )
    # Car parks beside town roads, just outside the red line.
    idx = np.flatnonzero(np.isin(roads.cls, ("arterial", "secondary")))
    xy, rd, ang = _along(roads, idx, 2500.0, roads.half + 28.0, rng, sides="right", jitter=0.2)
    inside = shapely.contains_xy(city.urban_mask, xy[:, 0], xy[:, 1])
    lots = [
        _rect(x, y, rng.uniform(40, 90), rng.uniform(30, 50), a)
        for (x, y), a in zip(xy[inside], ang[inside], strict=True)
    ]
    store.add("parking_lot", np.array(lots, dtype=object), [roads.names[r] for r in rd[inside]],
              [{"spaces": int(p.area // 25)} for p in lots])
    # Heating pipes only in the first industrial parks.
    ind = [a for a in areas if a.kind == "industrial_park"][:3]
    if ind:
        zone = shapely.union_all([a.geom for a in ind])
        near = np.sort(shapely.STRtree(roads.lines).query(zone, predicate="intersects"))
        xy, rd, _ = _along(roads, near, 80.0, roads.half - 5.0, rng, sides="right")
        keep = shapely.contains_xy(zone, xy[:, 0], xy[:, 1])
        store.add("manhole_heat", shapely.points(xy[keep]), [roads.names[r] for r in rd[keep]],
                  [{"road": roads.codes[r], "diameter_mm": 800} for r in rd[keep]])


def _near_duplicates(
    store: _Assets, compounds: list[_Area], rng: np.random.Generator
) -> int:
    """Add covers 1-2 m from existing ones with another owner, so ownership is disputed."""
    geoms = store.geometry()
    kinds = np.asarray(store.kinds)
    tree = shapely.STRtree(np.array([a.geom for a in compounds], dtype=object))
    added = 0

    def pick(kind: str, n: int, near_compound: bool) -> IntArray:
        idx = np.flatnonzero(kinds == kind)
        if near_compound and len(idx):
            hit, _ = tree.query(geoms[idx], predicate="dwithin", distance=40.0)
            idx = idx[np.unique(hit)]
        return np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))

    def twin(src: IntArray, kind: str, owner: list[str], maint: list[str]) -> None:
        pts = shapely.get_coordinates(geoms[src])
        ang = rng.uniform(0.0, 2 * math.pi, len(src))
        dist = rng.uniform(1.0, 2.0, len(src))
        new = pts + np.column_stack([np.cos(ang), np.sin(ang)]) * dist[:, None]
        attrs: list[dict[str, Any]] = [
            {**store.attrs[k], "near_duplicate_of": int(k)} for k in src
        ]
        store.add(kind, shapely.points(new), [store.names[k] for k in src], attrs, owner, maint)

    src = pick("manhole_telecom", 40, False)
    other = [
        [o for o in TELECOM_OPERATORS if o != store.owner[k]][int(rng.integers(3))] for k in src
    ]
    twin(src, "manhole_telecom", other, other)
    added += len(src)
    for kind, n in (("manhole_water", 25), ("manhole_sewage", 20)):
        src = pick(kind, n, True)
        twin(src, kind, ["WY"] * len(src), ["WY"] * len(src))
        added += len(src)
    src = pick("manhole_storm", 25, False)
    twin(src, "manhole_power", ["DL"] * len(src), ["DL"] * len(src))
    return added + len(src)


def _finalize_assets(
    store: _Assets,
    city: _City,
    categories: list[CategorySpec],
    rng: np.random.Generator,
    inv: XY,
) -> list[AssetSpec]:
    """Drop assets outside the district, number them per category, set states, go lon/lat."""
    by_kind = {c.asset_kind: c for c in categories if c.asset_kind}
    geoms = store.geometry()
    kinds = np.asarray(store.kinds)
    unknown = sorted(set(store.kinds) - set(by_kind))
    if unknown:
        raise RuntimeError(f"asset kinds without a category: {unknown}")
    inside = shapely.contains(city.outline, geoms)
    cat = np.array([by_kind[k].code for k in kinds])
    keep = np.flatnonzero(inside)
    keep = keep[np.argsort(cat[keep], kind="stable")]
    serial = np.ones(len(keep), dtype=np.intp)
    if len(keep):
        first = np.r_[True, cat[keep][1:] != cat[keep][:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(keep)), 0))
        serial = np.arange(len(keep)) - start + 1
    if len(keep) and int(serial.max()) > 999_999:
        raise RuntimeError("more than 999,999 assets in one category")
    code_of = {
        int(k): f"{city.district_code}{cat[k][1:5]}{int(s):06d}"
        for k, s in zip(keep, serial, strict=True)
    }
    state = rng.choice(len(STATES), size=len(keep), p=(0.955, 0.025, 0.01, 0.01))
    point = shapely.get_type_id(geoms[keep]) == 0
    state = np.where((state == 2) & ~point, 1, state)
    lonlat = shapely.transform(geoms[keep], inv)
    out: list[AssetSpec] = []
    for n, k in enumerate(keep):
        kind = str(kinds[k])
        sup, own, mnt = ASSET_DEPARTMENTS[kind]
        owner = store.owner[k] or own
        maint = store.maint[k] or (owner if mnt == "*" else mnt)
        attrs = dict(store.attrs[k])
        if "near_duplicate_of" in attrs:
            ref = code_of.get(int(attrs.pop("near_duplicate_of")))
            if ref:
                attrs["near_duplicate_of"] = ref
        attrs["kind"] = kind
        c = by_kind[kind]
        out.append(
            AssetSpec(
                code=code_of[int(k)],
                category_code=c.code,
                name=f"{store.names[k]}{c.name}",
                geometry=lonlat[n],
                supervising_department=sup,
                owner_department=owner,
                maintainer_department=maint,
                state=STATES[int(state[n])],
                attributes=attrs,
            )
        )
    return out


# --------------------------------------------------------------------------- zones


def _hilbert(xy: FloatArray, order: int = 12) -> npt.NDArray[np.int64]:
    """Hilbert-curve index of points in their bounding box (for compact sequential chunks)."""
    n = 1 << order
    lo = xy.min(axis=0)
    span = np.maximum(xy.max(axis=0) - lo, 1e-9)
    x = np.minimum(((xy[:, 0] - lo[0]) / span[0] * n).astype(np.int64), n - 1)
    y = np.minimum(((xy[:, 1] - lo[1]) / span[1] * n).astype(np.int64), n - 1)
    d = np.zeros(len(xy), dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = ((x & s) > 0).astype(np.int64)
        ry = ((y & s) > 0).astype(np.int64)
        d += s * s * ((3 * rx) ^ ry)
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


def _police_beats(city: _City, rng: np.random.Generator, n: int = 60) -> list[ZoneSpec]:
    """Police beats (警务区): a Voronoi diagram of ~n seeds, denser in town, clipped."""
    area = shapely.area(city.grid_geoms)
    cand = rng.permutation(len(city.grid_points))
    radius = np.where(area < 0.35e6, 1500.0, 3000.0)
    seeds: list[int] = []
    factor = 1.0
    while len(seeds) < n and factor > 0.1:
        for g in cand:
            if len(seeds) >= n:
                break
            if seeds:
                d = np.hypot(*(city.grid_points[seeds] - city.grid_points[g]).T)
                if d.min() < factor * radius[g]:
                    continue
            seeds.append(int(g))
        factor *= 0.85
    pts = city.grid_points[seeds] + rng.normal(0.0, 150.0, (len(seeds), 2))
    pts = np.where(
        shapely.contains_xy(city.outline, pts[:, 0], pts[:, 1])[:, None],
        pts,
        city.grid_points[seeds],
    )
    minx, miny, maxx, maxy = city.outline.bounds
    env = box(minx - 5e3, miny - 5e3, maxx + 5e3, maxy + 5e3)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=env))
    src, dst = shapely.STRtree(cells).query(shapely.points(pts), predicate="within")
    cell_of = np.empty(len(pts), dtype=np.intp)
    cell_of[src] = dst
    zones = shapely.intersection(cells[cell_of], city.outline)
    street = city.grid_street[seeds]
    order = np.lexsort((_hilbert(pts), street))
    out: list[ZoneSpec] = []
    count: dict[int, int] = {}
    for k, z in enumerate(order):
        s = int(street[z])
        count[s] = count.get(s, 0) + 1
        name = f"{_street_short(city.streets[s].name)}派出所第{count[s]}警务区"
        out.append(ZoneSpec("PSB", "police_beats", f"PB{k + 1:02d}", name, zones[z]))
    return out


def _merge_small(pieces: list[BaseGeometry], min_area: float) -> list[BaseGeometry]:
    """Merge pieces smaller than ``min_area`` into the neighbour sharing most boundary."""
    pieces = list(pieces)
    while len(pieces) > 1:
        areas = np.array([p.area for p in pieces])
        i = int(areas.argmin())
        if areas[i] >= min_area:
            break
        others = np.array([p.boundary for p in pieces], dtype=object)
        shared = shapely.length(shapely.intersection(pieces[i].boundary, others))
        shared[i] = -1.0
        j = int(shared.argmax())
        if shared[j] <= 0:
            dist = shapely.distance(pieces[i], np.array(pieces, dtype=object))
            dist[i] = np.inf
            j = int(dist.argmin())
        pieces[j] = shapely.union(pieces[j], pieces[i])
        del pieces[i]
    return pieces


def _cgzf_zones(city: _City, rng: np.random.Generator, target: int = 30) -> list[ZoneSpec]:
    """City-management zones: blocks of a rotated square lattice, small pieces merged."""
    angle = float(rng.uniform(0.35, 0.6))
    side = math.sqrt(city.outline.area / target) * 1.05
    minx, miny, maxx, maxy = city.outline.bounds
    centre = np.array([(minx + maxx) / 2, (miny + maxy) / 2]) + rng.uniform(-side, side, 2) / 2
    reach = math.ceil(0.5 * math.hypot(maxx - minx, maxy - miny) / side) + 1
    cells = []
    for a in range(-reach, reach):
        for b in range(-reach, reach):
            sq = box(a * side, b * side, (a + 1) * side, (b + 1) * side)
            sq = affinity.rotate(sq, angle, origin=(0, 0), use_radians=True)
            cells.append(affinity.translate(sq, *centre))
    clipped = shapely.intersection(np.array(cells, dtype=object), city.outline)
    parts = [p for p in shapely.get_parts(clipped) if isinstance(p, Polygon) and p.area > 0]
    pieces = _merge_small(parts, 0.5 * side * side)
    pts = shapely.get_coordinates(shapely.point_on_surface(np.array(pieces, dtype=object)))
    order = np.argsort(_hilbert(pts), kind="stable")
    return [
        ZoneSpec("CGZF", "cgzf_zones", f"CG{k + 1:02d}", f"城管执法第{k + 1}中队责任区",
                 _multi(pieces[z]))
        for k, z in enumerate(order)
    ]  # fmt: skip


def _market_zones(city: _City, rng: np.random.Generator) -> list[ZoneSpec]:
    """Market-regulation zones: street boundaries warped ~150 m in places, then re-polygonised."""
    lines = shapely.segmentize(
        shapely.union_all(shapely.boundary(city.street_geoms)), 80.0
    )
    coords = shapely.get_coordinates(lines)
    dist = shapely.distance(shapely.points(coords), city.outline.boundary)
    taper = np.clip(dist / 700.0, 0.0, 1.0)
    taper = taper * taper * (3.0 - 2.0 * taper)
    interior = coords[dist > 2000.0]
    centres = interior[rng.choice(len(interior), size=min(14, len(interior)), replace=False)]
    disp = np.zeros_like(coords)
    for c in centres:
        amp = rng.uniform(140.0, 220.0)
        ang = rng.uniform(0.0, 2 * math.pi)
        w = np.exp(-((coords - c) ** 2).sum(axis=1) / (2 * 1300.0**2))
        disp += np.column_stack([np.cos(ang), np.sin(ang)]) * (amp * w)[:, None]
    parts = shapely.get_parts(lines).copy()
    warped = shapely.set_coordinates(parts, coords + disp * taper[:, None])
    faces = shapely.get_parts(shapely.polygonize(warped))
    # Each face is one street moved a little: label it by the street it overlaps most.
    src, dst = shapely.STRtree(city.street_geoms).query(faces, predicate="intersects")
    inter = shapely.area(shapely.intersection(faces[src], city.street_geoms[dst]))
    label = np.full(len(faces), -1, dtype=np.intp)
    best = np.zeros(len(faces))
    for f, s, a in zip(src, dst, inter, strict=True):
        if a > best[f]:
            best[f], label[f] = a, s
    out: list[ZoneSpec] = []
    for s, street in enumerate(city.streets):
        mine = faces[label == s]
        if not len(mine):
            raise RuntimeError(f"market zone of {street.code} vanished")
        geom = _multi(shapely.union_all(mine))
        name = f"{_street_short(street.name)}市场监督管理所辖区"
        out.append(ZoneSpec("SCJG", "market_zones", f"SC{street.code[-3:]}", name, geom))
    return out


# --------------------------------------------------------------------------- people on grids


def _chunk_sizes(n: int, lo: int, hi: int, rng: np.random.Generator) -> list[int]:
    """Split ``n`` into chunks of ``lo``..``hi`` (one chunk if ``n`` is at most ``hi``)."""
    if n <= hi:
        return [n]
    k = max(math.ceil(n / hi), min(n // lo, round(2 * n / (lo + hi))))
    sizes = np.full(k, n // k)
    sizes[: n - int(sizes.sum())] += 1
    for _ in range(k):
        a, b = rng.integers(k, size=2)
        if a != b and sizes[a] > lo and sizes[b] < hi:
            sizes[a] -= 1
            sizes[b] += 1
    return [int(x) for x in sizes]


def _street_order(city: _City) -> list[IntArray]:
    """Grid indices of each street along a Hilbert curve, so chunks are compact."""
    h = _hilbert(city.grid_points)
    return [
        np.flatnonzero(city.grid_street == s)[np.argsort(h[city.grid_street == s], kind="stable")]
        for s in range(len(city.streets))
    ]


def _patrols(
    city: _City, rng: np.random.Generator
) -> tuple[list[PatrolTeamSpec], list[AssignmentSpec]]:
    """Day and night patrol teams of each street office, each covering 3-6 neighbouring grids."""
    teams: list[PatrolTeamSpec] = []
    assignments: list[AssignmentSpec] = []
    week = (1, 2, 3, 4, 5, 6, 7)
    for s, order in enumerate(_street_order(city)):
        street = city.streets[s]
        dept = f"JD{street.code}"
        for shift, tag, label, (start, end) in (
            ("day", "D", "日间", DAY),
            ("night", "N", "夜间", NIGHT),
        ):
            pos = 0
            sizes = _chunk_sizes(len(order), 3, 6, rng)
            if shift == "night" and len(sizes) > 1:
                sizes = sizes[::-1]  # a different cut, so day and night teams differ
            for k, size in enumerate(sizes, start=1):
                people = _people(rng, int(rng.integers(3, 7)))
                members = tuple(
                    (nm, ph, "leader" if m == 0 else "member")
                    for m, (nm, ph) in enumerate(people)
                )
                code = f"PT{street.code}{tag}{k:02d}"
                name = f"{street.name}{label}巡管{k}组"
                teams.append(PatrolTeamSpec(code, name, dept, members))
                for g in order[pos : pos + size]:
                    assignments.append(
                        AssignmentSpec(code, city.grids[g].code, shift, week, start, end)
                    )
                pos += size
    return teams, assignments


def _roles(city: _City, rng: np.random.Generator) -> list[GridRoleSpec]:
    """The X (supervisor, auxiliaries, volunteers, building leaders) and Y of every grid."""
    by_grid: list[list[GridRoleSpec]] = [[] for _ in city.grids]
    for g, grid in enumerate(city.grids):
        urban = grid.attributes.get("kind") == "urban"
        pool = ("auxiliary", "volunteer", "building_leader") if urban else ("auxiliary",
                                                                            "volunteer")
        people = _people(rng, int(rng.integers(2, 5)))
        for m, (nm, ph) in enumerate(people):
            role = "supervisor" if m == 0 else pool[int(rng.integers(len(pool)))]
            by_grid[g].append(GridRoleSpec(grid.code, role, nm, ph, None))
    # PSB: one community police officer (社区民警) per community.
    comm: dict[str, list[int]] = {}
    for g, c in enumerate(city.grid_community):
        comm.setdefault(c, []).append(g)
    officers = _people(rng, len(comm))
    for (_, grids), (nm, ph) in zip(comm.items(), officers, strict=True):
        for g in grids:
            by_grid[g].append(GridRoleSpec(city.grids[g].code, "specialist", nm, ph, "PSB"))
    # Other departments: one specialist per run of neighbouring grids of a street.
    for order in _street_order(city):
        for dept, (lo, hi) in SPECIALIST_CHUNKS.items():
            pos = 0
            for size in _chunk_sizes(len(order), lo, hi, rng):
                ((nm, ph),) = _people(rng, 1)
                for g in order[pos : pos + size]:
                    by_grid[g].append(
                        GridRoleSpec(city.grids[g].code, "specialist", nm, ph, dept)
                    )
                pos += size
    return [r for roles in by_grid for r in roles]


# --------------------------------------------------------------------------- entry point


def _street_offices(city: _City, departments: list[DepartmentSpec]) -> list[DepartmentSpec]:
    """Add a street/town office for every street that the department list lacks."""
    known = {d.code for d in departments}
    extra = [
        DepartmentSpec(f"JD{s.code}", f"{s.name}办事处", f"{s.code} street office", 1, None,
                       "", "", s.code)
        for s in city.streets
        if f"JD{s.code}" not in known
    ]  # fmt: skip
    return departments + extra


def demo_layers(units: list[UnitSpec], *, seed: int = 365) -> DemoLayers:
    """Build the demo city's departments, taxonomy, assets, areas, zones, patrols and roles."""

    def rng(k: int) -> np.random.Generator:
        return np.random.default_rng([seed, k])

    city = _city(units, rng(0))
    departments = _street_offices(city, load_departments())
    categories = load_categories(departments=departments)
    inv = _xy_transform(DEMO_METRIC_CRS, "EPSG:4326")

    roads = _roads(city, rng(1))
    red_gap = shapely.buffer(roads.lines, roads.half + 3.0, cap_style="flat")
    water = _water_and_rail(city, rng(17))
    parks = _parks(city, rng(2), red_gap, water)
    campuses = _campuses(city, rng(3), red_gap, water + parks)
    industrial = _industrial(city, rng(4), water + parks + campuses)
    compounds, _ = _compounds(city, roads, rng(5), water + parks + campuses + industrial)
    metric_areas = _road_areas(city, roads) + compounds + parks + water + campuses + industrial

    store = _Assets()
    _road_assets(store, city, roads, rng(6))
    _junction_assets(store, city, roads, rng(7))
    _linear_assets(store, roads, rng(8))
    _area_assets(store, city, roads, metric_areas, rng(9))
    _near_duplicates(store, compounds, rng(10))
    assets = _finalize_assets(store, city, categories, rng(11), inv)

    lonlat = shapely.transform(np.array([a.geom for a in metric_areas], dtype=object), inv)
    areas = [
        AreaSpec(a.kind, a.code, a.name, a.owner, AREA_RULES[a.kind][0], AREA_RULES[a.kind][1],
                 _multi(g))
        for a, g in zip(metric_areas, lonlat, strict=True)
    ]  # fmt: skip
    zones_m = (
        _police_beats(city, rng(12)) + _cgzf_zones(city, rng(13)) + _market_zones(city, rng(14))
    )
    zone_geoms = shapely.transform(np.array([z.geometry for z in zones_m], dtype=object), inv)
    zones = [
        ZoneSpec(z.department, z.layer, z.code, z.name, _multi(g))
        for z, g in zip(zones_m, zone_geoms, strict=True)
    ]
    teams, assignments = _patrols(city, rng(15))
    roles = _roles(city, rng(16))
    layers = DemoLayers(departments, categories, assets, areas, zones, teams, assignments, roles)
    _check_departments(layers)
    return layers


def _check_departments(layers: DemoLayers) -> None:
    """Raise if any generated row names a department that does not exist."""
    known = {d.code for d in layers.departments}
    used = (
        {a.supervising_department for a in layers.assets}
        | {a.owner_department for a in layers.assets}
        | {a.maintainer_department for a in layers.assets}
        | {a.owner_department for a in layers.areas}
        | {z.department for z in layers.zones}
        | {t.department for t in layers.teams}
        | {r.department for r in layers.roles if r.department}
    )
    if missing := sorted(used - known):
        raise RuntimeError(f"unknown departments in the demo layers: {missing}")
