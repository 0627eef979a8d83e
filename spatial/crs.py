"""Every coordinate system a report can come in, normalised to WGS84 lon/lat (vectorised)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from spatial.errors import InvalidCoordinate, InvalidInput

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "CRSInfo",
    "UnknownCRS",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "out_of_china",
    "parse_crs",
    "to_wgs84",
    "validate_lonlat",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

# GCJ-02 constants: the Krasovsky 1940 ellipsoid as used by the published formulas.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = math.pi * 3000.0 / 180.0
# The rectangle the providers treat as "China"; outside it GCJ-02 is plain WGS84.
_CHINA_LON = (73.66, 135.05)
_CHINA_LAT = (3.86, 53.55)
# Iterative inverses stop once the forward image is this close to the target (degrees).
_INVERSE_TOL = 1e-10
_INVERSE_MAX_ITER = 30
# A projected point may lie this far (degrees) outside its CRS's published area of use.
_AREA_MARGIN_DEG = 2.0
# A projected point must survive the round trip through lon/lat within this (CRS units).
_ROUND_TRIP_TOL = 1e-3

WGS84_KEY = "EPSG:4326"
GCJ02_KEY = "GCJ-02"
BD09_KEY = "BD-09"

_ALIASES = {
    "wgs84": WGS84_KEY,
    "crs84": WGS84_KEY,
    "ogc:crs84": WGS84_KEY,
    "cgcs2000": "EPSG:4490",
    "gcj02": GCJ02_KEY,
    "bd09": BD09_KEY,
}
_ACCEPTED = (
    "'WGS84' (EPSG:4326, the default), 'CGCS2000' (EPSG:4490), 'GCJ02' or 'GCJ-02' "
    "(AMap/Tencent), 'BD09' or 'BD-09' (Baidu), or any geographic or projected EPSG code "
    "known to PROJ written 'EPSG:4549' or 4549"
)
_EPSG_RE = re.compile(r"^(?:epsg:{1,2})?(\d{1,9})$")


class UnknownCRS(InvalidInput):
    """The named coordinate reference system is not one gridops can read."""

    code = "unknown_crs"


@dataclass(frozen=True)
class CRSInfo:
    """A coordinate reference system as gridops knows it: canonical key, human name, kind."""

    key: str
    name: str
    projected: bool


@dataclass(frozen=True)
class _Limits:
    """What input and output checks need to know about a PROJ CRS."""

    half_turn: float  # 180 degrees in the CRS's angular unit (geographic only)
    unit: str  # that unit's name, "" for degrees
    area: tuple[float, float, float, float] | None  # west, south, east, north in degrees


_SPECIAL = {
    WGS84_KEY: CRSInfo(WGS84_KEY, "WGS 84", projected=False),
    GCJ02_KEY: CRSInfo(GCJ02_KEY, "GCJ-02 (AMap/Tencent)", projected=False),
    BD09_KEY: CRSInfo(BD09_KEY, "BD-09 (Baidu)", projected=False),
}


# --------------------------------------------------------------------------- CRS names


def _unknown(value: object, why: str) -> UnknownCRS:
    """An UnknownCRS naming the field, the value and the accepted forms."""
    shown = value if isinstance(value, str | int) else str(value)
    return UnknownCRS(
        f"crs = {value!r} {why}; accepted: {_ACCEPTED}",
        extra={"field": "crs", "value": shown, "accepted": _ACCEPTED},
    )


def parse_crs(value: str | int | None) -> CRSInfo:
    """The CRS named by `value` (a name, 'EPSG:n' or an integer code); None means WGS84."""
    if value is None:
        return _SPECIAL[WGS84_KEY]
    if isinstance(value, bool) or not isinstance(value, str | int | np.integer):
        raise _unknown(value, "is not a coordinate reference system name or EPSG code")
    if isinstance(value, int | np.integer):
        return _parse_epsg(int(value), value)
    token = re.sub(r"[\s_\-]", "", value.strip().lower())
    if token in _ALIASES:
        return _parse_epsg_or_special(_ALIASES[token], value)
    match = _EPSG_RE.match(token)
    if match is None:
        raise _unknown(value, "is not a known coordinate reference system")
    return _parse_epsg(int(match.group(1)), value)


def _parse_epsg_or_special(key: str, value: object) -> CRSInfo:
    """The CRSInfo for a canonical key reached through an alias."""
    if key in _SPECIAL:
        return _SPECIAL[key]
    return _parse_epsg(int(key.split(":")[1]), value)


def _parse_epsg(code: int, value: object) -> CRSInfo:
    """The CRSInfo for an EPSG code, or UnknownCRS if PROJ lacks it or it is not 2-D."""
    if code == 4326:
        return _SPECIAL[WGS84_KEY]
    try:
        return _epsg_info(code)
    except CRSError:
        raise _unknown(value, f"is not an EPSG code known to PROJ (EPSG:{code})") from None
    except ValueError as exc:
        raise _unknown(value, str(exc)) from None


@lru_cache(maxsize=256)
def _epsg_info(code: int) -> CRSInfo:
    """CRSInfo of a PROJ-known geographic or projected EPSG CRS (cached)."""
    crs = CRS.from_epsg(code)
    if not (crs.is_geographic or crs.is_projected):
        raise ValueError(f"is a {crs.type_name} (EPSG:{code}), not a geographic or projected CRS")
    return CRSInfo(key=f"EPSG:{code}", name=crs.name, projected=bool(crs.is_projected))


@lru_cache(maxsize=256)
def _limits(key: str) -> _Limits:
    """Angular unit and area of use of a PROJ CRS (cached)."""
    crs = CRS.from_user_input(key)
    half_turn, unit = 180.0, ""
    if crs.is_geographic:
        axis = crs.axis_info[0]
        if axis.unit_name != "degree":
            half_turn, unit = math.pi / axis.unit_conversion_factor, f" {axis.unit_name}"
    aou = crs.area_of_use
    return _Limits(half_turn=half_turn, unit=unit, area=None if aou is None else aou.bounds)


@lru_cache(maxsize=128)
def _transformer(src: str, dst: str) -> Transformer:
    """A cached lon/lat-ordered PROJ transformer (thread-safe in pyproj >= 3.1)."""
    return Transformer.from_crs(src, dst, always_xy=True)


# ------------------------------------------------------------------- array handling


def _as_array(value: npt.ArrayLike, field: str) -> FloatArray:
    """`value` as a float64 array of at least one dimension, or InvalidCoordinate."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidCoordinate(
            f"{field} = {value!r} is not a number",
            extra={"field": field, "value": str(value), "index": None},
        ) from None
    return np.atleast_1d(arr)


def _as_pair(
    x: npt.ArrayLike, y: npt.ArrayLike, fields: tuple[str, str]
) -> tuple[FloatArray, FloatArray]:
    """Both coordinates as float arrays broadcast to one shape (copies, never views)."""
    xa, ya = _as_array(x, fields[0]), _as_array(y, fields[1])
    try:
        xb, yb = np.broadcast_arrays(xa, ya)
    except ValueError:
        raise InvalidInput(
            f"{fields[0]} and {fields[1]} have different lengths ({xa.size} and {ya.size})",
            extra={"field": fields[0], "value": [xa.size, ya.size], "index": None},
        ) from None
    return np.array(xb, dtype=np.float64), np.array(yb, dtype=np.float64)


def _fmt(v: float) -> str:
    """A coordinate as shown in a message: 91.0, nan, inf, -inf."""
    return repr(float(v))


def _json_value(v: float) -> float | str:
    """A coordinate as JSON can carry it (non-finite values become strings)."""
    f = float(v)
    return f if math.isfinite(f) else str(f)


def _label(field: str, i: int, n: int) -> str:
    """`field` or `field[i]` when the batch has more than one point."""
    return f"{field}[{i}]" if n > 1 else field


def _first(bad: BoolArray) -> int | None:
    """Flat index of the first True, or None."""
    flat = np.flatnonzero(bad)
    return int(flat[0]) if flat.size else None


def _check_finite(x: FloatArray, y: FloatArray, fields: tuple[str, str]) -> None:
    """InvalidCoordinate for the first NaN or infinite value."""
    bad_x, bad_y = ~np.isfinite(x), ~np.isfinite(y)
    i = _first(bad_x | bad_y)
    if i is None:
        return
    n = x.size
    field, arr = (fields[0], x) if bad_x.flat[i] else (fields[1], y)
    v = arr.flat[i]
    raise InvalidCoordinate(
        f"{_label(field, i, n)} = {_fmt(v)} is not a finite number",
        extra={"field": field, "value": _json_value(v), "index": i if n > 1 else None},
    )


def _check_range(
    lon: FloatArray,
    lat: FloatArray,
    fields: tuple[str, str],
    half_turn: float = 180.0,
    unit: str = "",
) -> None:
    """InvalidCoordinate for the first longitude beyond ±180° or latitude beyond ±90°."""
    lim_lon, lim_lat = half_turn, half_turn / 2.0
    bad_lon, bad_lat = np.abs(lon) > lim_lon, np.abs(lat) > lim_lat
    i = _first(bad_lon | bad_lat)
    if i is None:
        return
    n = lon.size
    if bad_lon.flat[i]:
        field, v, what, lim = fields[0], lon.flat[i], "longitude", lim_lon
    else:
        field, v, what, lim = fields[1], lat.flat[i], "latitude", lim_lat
    raise InvalidCoordinate(
        f"{_label(field, i, n)} = {_fmt(v)} is out of range: a {what} must be within "
        f"[-{lim:g}, {lim:g}]{unit}",
        extra={"field": field, "value": _json_value(v), "index": i if n > 1 else None},
    )


def _outside_area(
    bad: BoolArray, x: FloatArray, y: FloatArray, fields: tuple[str, str], info: CRSInfo
) -> None:
    """InvalidCoordinate naming the first point flagged `bad` as outside the area of `info`."""
    i = _first(bad)
    if i is None:
        return
    n = x.size
    fx, fy = _label(fields[0], i, n), _label(fields[1], i, n)
    vx, vy = x.flat[i], y.flat[i]
    raise InvalidCoordinate(
        f"{fx} = {_fmt(vx)}, {fy} = {_fmt(vy)} is outside the area of {info.key} ({info.name})",
        extra={
            "field": f"{fields[0]},{fields[1]}",
            "value": [_json_value(vx), _json_value(vy)],
            "index": i if n > 1 else None,
            "crs": info.key,
        },
    )


def validate_lonlat(
    lon: npt.ArrayLike, lat: npt.ArrayLike, fields: tuple[str, str] = ("lon", "lat")
) -> None:
    """Raise InvalidCoordinate unless every point is finite with |lon| <= 180 and |lat| <= 90."""
    x, y = _as_pair(lon, lat, fields)
    _check_finite(x, y, fields)
    _check_range(x, y, fields)


# ------------------------------------------------------------------ GCJ-02 and BD-09


def _pair_in(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Unvalidated float arrays of one shape for the pure formulas."""
    x, y = np.broadcast_arrays(
        np.atleast_1d(np.asarray(lon, dtype=np.float64)),
        np.atleast_1d(np.asarray(lat, dtype=np.float64)),
    )
    return np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)


def out_of_china(lon: npt.ArrayLike, lat: npt.ArrayLike) -> BoolArray:
    """True where a point lies outside the rectangle in which GCJ-02 differs from WGS84."""
    x, y = _pair_in(lon, lat)
    inside = (x > _CHINA_LON[0]) & (x < _CHINA_LON[1]) & (y > _CHINA_LAT[0]) & (y < _CHINA_LAT[1])
    return np.asarray(~inside, dtype=np.bool_)


def _gcj_offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The published GCJ-02 offset (dlon, dlat) in degrees at a WGS84 point, no box test."""
    x, y = lon - 105.0, lat - 35.0
    xpi, ypi = x * np.pi, y * np.pi
    shared = (20.0 * np.sin(6.0 * xpi) + 20.0 * np.sin(2.0 * xpi)) * 2.0 / 3.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    t_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
    t_lat += shared
    t_lat += (20.0 * np.sin(ypi) + 40.0 * np.sin(ypi / 3.0)) * 2.0 / 3.0
    t_lat += (160.0 * np.sin(ypi / 12.0) + 320.0 * np.sin(ypi / 30.0)) * 2.0 / 3.0
    t_lng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
    t_lng += shared
    t_lng += (20.0 * np.sin(xpi) + 40.0 * np.sin(xpi / 3.0)) * 2.0 / 3.0
    t_lng += (150.0 * np.sin(xpi / 12.0) + 300.0 * np.sin(xpi / 30.0)) * 2.0 / 3.0
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (t_lat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (t_lng * 180.0) / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """WGS84 -> GCJ-02 by the published formula; unchanged outside China's rectangle."""
    x, y = _pair_in(lon, lat)
    inside = ~out_of_china(x, y)
    dlon, dlat = _gcj_offset(x, y)
    return np.where(inside, x + dlon, x), np.where(inside, y + dlat, y)


def _gcj_raw(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """WGS84 -> GCJ-02 without the box test (what the inverse iterates on)."""
    dlon, dlat = _gcj_offset(lon, lat)
    return lon + dlon, lat + dlat


def _bd_raw(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 -> BD-09 by the published formula."""
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _invert(
    forward: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    tx: FloatArray,
    ty: FloatArray,
    gx: FloatArray,
    gy: FloatArray,
    active: BoolArray,
) -> tuple[FloatArray, FloatArray]:
    """Invert a near-identity `forward` by fixed-point steps x <- x - (forward(x) - target)."""
    # Starts from the guess (gx, gy); only points still active are recomputed, and a point
    # leaves once its forward image is within _INVERSE_TOL degrees of the target (tx, ty).
    # The offsets' derivatives are ~1e-3 (GCJ-02) and ~1e-2 (BD-09), so each step gains
    # two or more digits and 3-5 steps suffice; _INVERSE_MAX_ITER is only a backstop.
    shape = tx.shape
    tx, ty = tx.ravel(), ty.ravel()
    x, y = gx.ravel().copy(), gy.ravel().copy()
    todo = np.flatnonzero(active.ravel() & np.isfinite(tx) & np.isfinite(ty))
    for _ in range(_INVERSE_MAX_ITER):
        if todo.size == 0:
            break
        fx, fy = forward(x[todo], y[todo])
        ex, ey = fx - tx[todo], fy - ty[todo]
        x[todo] -= ex
        y[todo] -= ey
        converged = (np.abs(ex) <= _INVERSE_TOL) & (np.abs(ey) <= _INVERSE_TOL)
        todo = todo[~converged]
    return x.reshape(shape), y.reshape(shape)


def gcj02_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 -> WGS84, iterated until wgs84_to_gcj02 of the result is within 1e-10 degrees."""
    x, y = _pair_in(lon, lat)
    inside = ~out_of_china(x, y)
    dlon, dlat = _gcj_offset(x, y)
    # The libraries' one-step guess (metre-level) seeds the iteration.
    gx, gy = np.where(inside, x - dlon, x), np.where(inside, y - dlat, y)
    return _invert(_gcj_raw, x, y, gx, gy, inside)


def gcj02_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 -> BD-09 by the published formula (Baidu applies it everywhere)."""
    return _bd_raw(*_pair_in(lon, lat))


def bd09_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """BD-09 -> GCJ-02, iterated until gcj02_to_bd09 of the result is within 1e-10 degrees."""
    bx, by = _pair_in(lon, lat)
    x, y = bx - 0.0065, by - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    gx, gy = z * np.cos(theta), z * np.sin(theta)  # the published approximate inverse
    return _invert(_bd_raw, bx, by, gx, gy, np.ones(bx.shape, dtype=np.bool_))


def wgs84_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """WGS84 -> BD-09 (through GCJ-02)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """BD-09 -> WGS84 (through GCJ-02), both inverses iterative."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


# ---------------------------------------------------------------- public conversions

_Kind = Literal["wgs84", "gcj02", "bd09", "proj"]


def _kind(info: CRSInfo) -> _Kind:
    """Which code path converts `info`."""
    if info.key == WGS84_KEY:
        return "wgs84"
    if info.key == GCJ02_KEY:
        return "gcj02"
    if info.key == BD09_KEY:
        return "bd09"
    return "proj"


def to_wgs84(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    crs: str | int | None = None,
    *,
    fields: tuple[str, str] | None = None,
) -> tuple[FloatArray, FloatArray, CRSInfo]:
    """Validate points given in `crs` and return them as WGS84 (lon, lat) plus the CRS."""
    # `fields` names the two inputs in error messages; by default ("lon", "lat") for
    # geographic input and ("x", "y") for projected input.
    info = parse_crs(crs)
    if fields is None:
        fields = ("x", "y") if info.projected else ("lon", "lat")
    xa, ya = _as_pair(x, y, fields)
    _check_finite(xa, ya, fields)
    kind = _kind(info)
    if kind == "wgs84":
        _check_range(xa, ya, fields)
        return xa, ya, info
    if kind in ("gcj02", "bd09"):
        _check_range(xa, ya, fields)
        lon, lat = gcj02_to_wgs84(xa, ya) if kind == "gcj02" else bd09_to_wgs84(xa, ya)
        bad = (np.abs(lon) > 180.0) | (np.abs(lat) > 90.0)
        _outside_area(bad, xa, ya, fields, info)
        return lon, lat, info
    limits = _limits(info.key)
    if not info.projected:
        _check_range(xa, ya, fields, limits.half_turn, limits.unit)
    lon, lat = _transformer(info.key, WGS84_KEY).transform(xa, ya)
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    bad = ~(np.isfinite(lon) & np.isfinite(lat)) | (np.abs(lon) > 180.0) | (np.abs(lat) > 90.0)
    if info.projected:
        bad |= ~_in_area(lon, lat, limits.area)
        # Points PROJ cannot invert faithfully (wrapped longitudes, clamped poles) are
        # caught by going back again.
        with np.errstate(invalid="ignore"):
            bx, by = _transformer(WGS84_KEY, info.key).transform(lon, lat)
            tol = _ROUND_TRIP_TOL * np.maximum(1.0, 1e-6 * np.maximum(np.abs(xa), np.abs(ya)))
            bad |= ~((np.abs(bx - xa) <= tol) & (np.abs(by - ya) <= tol))
    _outside_area(bad, xa, ya, fields, info)
    return lon, lat, info


def point_to_wgs84(
    x: float, y: float, crs: str | int | None = None, *, fields: tuple[str, str] | None = None
) -> tuple[float, float, CRSInfo]:
    """One point as to_wgs84 gives it; a WGS84 point in range (most reports) is taken as is,
    without arrays, anything else goes the whole way (and gets its precise error there)."""
    info = parse_crs(crs)
    if (info.key == WGS84_KEY and math.isfinite(x) and math.isfinite(y)
            and abs(x) <= 180.0 and abs(y) <= 90.0):
        return float(x), float(y), info
    lon, lat, info = to_wgs84(np.array([x]), np.array([y]), crs, fields=fields)
    return float(lon[0]), float(lat[0]), info


def _in_area(
    lon: FloatArray, lat: FloatArray, area: tuple[float, float, float, float] | None
) -> BoolArray:
    """True where (lon, lat) lies within a CRS's area of use widened by _AREA_MARGIN_DEG."""
    if area is None:
        return np.ones(lon.shape, dtype=np.bool_)
    west, south, east, north = area
    m = _AREA_MARGIN_DEG
    with np.errstate(invalid="ignore"):
        lat_ok = (lat >= south - m) & (lat <= north + m)
        if west <= east:
            lon_ok = (lon >= west - m) & (lon <= east + m)
        else:  # the area crosses the antimeridian
            lon_ok = (lon >= west - m) | (lon <= east + m)
    return np.asarray(lat_ok & lon_ok, dtype=np.bool_)


def from_wgs84(
    lon: npt.ArrayLike, lat: npt.ArrayLike, crs: str | int | None
) -> tuple[FloatArray, FloatArray]:
    """WGS84 (lon, lat) -> coordinates in `crs` (the inverse of to_wgs84, for exports)."""
    info = parse_crs(crs)
    fields = ("lon", "lat")
    x, y = _as_pair(lon, lat, fields)
    _check_finite(x, y, fields)
    _check_range(x, y, fields)
    kind = _kind(info)
    if kind == "wgs84":
        return x, y
    if kind == "gcj02":
        return wgs84_to_gcj02(x, y)
    if kind == "bd09":
        return wgs84_to_bd09(x, y)
    ox, oy = _transformer(WGS84_KEY, info.key).transform(x, y)
    ox, oy = np.asarray(ox, dtype=np.float64), np.asarray(oy, dtype=np.float64)
    bad = ~(np.isfinite(ox) & np.isfinite(oy))
    if info.projected:
        bad |= ~_in_area(x, y, _limits(info.key).area)
    _outside_area(bad, x, y, fields, info)
    return ox, oy
