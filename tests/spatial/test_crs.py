"""spatial.crs: CRS names, GCJ-02/BD-09 against published pairs, PROJ CRSs, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from spatial.crs import (
    CRSInfo,
    UnknownCRS,
    bd09_to_gcj02,
    bd09_to_wgs84,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    out_of_china,
    parse_crs,
    point_to_wgs84,
    to_wgs84,
    validate_lonlat,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from spatial.errors import InvalidCoordinate, InvalidInput

GEOD = Geod(ellps="WGS84")
SONGJIANG = (121.2277, 31.0322)


def metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Geodesic distances in metres between paired points."""
    lon1, lat1, lon2, lat2 = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=float)) for v in (lon1, lat1, lon2, lat2))
    )
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def one(pair) -> tuple[float, float]:
    """The single point of a (lon_array, lat_array) result."""
    return float(pair[0][0]), float(pair[1][0])


# ------------------------------------------------------------------------ CRS names


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (None, "EPSG:4326"),
        ("wgs84", "EPSG:4326"),
        ("WGS84", "EPSG:4326"),
        ("WGS-84", "EPSG:4326"),
        ("epsg:4326", "EPSG:4326"),
        ("4326", "EPSG:4326"),
        (4326, "EPSG:4326"),
        (np.int64(4326), "EPSG:4326"),
        ("cgcs2000", "EPSG:4490"),
        ("CGCS2000", "EPSG:4490"),
        ("epsg:4490", "EPSG:4490"),
        ("gcj02", "GCJ-02"),
        ("gcj-02", "GCJ-02"),
        ("GCJ_02", "GCJ-02"),
        ("bd09", "BD-09"),
        ("BD-09", "BD-09"),
        ("EPSG:4549", "EPSG:4549"),
        (" epsg:3857 ", "EPSG:3857"),
        (3857, "EPSG:3857"),
    ],
)
def test_parse_crs_accepts_names_and_codes(value, key):
    assert parse_crs(value).key == key


def test_parse_crs_names_and_kinds():
    assert parse_crs(None) == CRSInfo("EPSG:4326", "WGS 84", projected=False)
    assert parse_crs("gcj02") == CRSInfo("GCJ-02", "GCJ-02 (AMap/Tencent)", projected=False)
    assert parse_crs("bd09").name == "BD-09 (Baidu)"
    gk = parse_crs("EPSG:4549")
    assert gk.name == "CGCS2000 / 3-degree Gauss-Kruger CM 120E"
    assert gk.projected
    assert parse_crs(3857).projected
    assert not parse_crs("cgcs2000").projected


@pytest.mark.parametrize("value", ["EPSG:999999", "mars", 999999, "", "epsg:", "4326x", 4978, True])
def test_unknown_crs_names_field_value_and_accepted_forms(value):
    with pytest.raises(UnknownCRS) as info:
        parse_crs(value)
    err = info.value
    assert isinstance(err, InvalidInput)
    assert err.status == 422
    assert err.code == "unknown_crs"
    assert err.detail.startswith(f"crs = {value!r} ")
    for form in ("WGS84", "CGCS2000", "GCJ-02", "BD-09", "EPSG:4549"):
        assert form in err.detail
    assert err.extra["field"] == "crs"
    json.dumps(err.extra)


def test_unknown_crs_reaches_to_wgs84():
    with pytest.raises(UnknownCRS, match="'mars'"):
        to_wgs84(121.0, 31.0, "mars")


# ------------------------------------------------------- GCJ-02 / BD-09 reference pairs

# Forward formulas (deterministic): the published outputs, to better than 1e-6 degrees.
# (function, input lon/lat, expected lon/lat, tolerance in degrees, source)
FORWARD_PAIRS = [
    # wandergis/coordtransform README.md, "result" block for (116.404, 39.915).
    (wgs84_to_gcj02, (116.404, 39.915), (116.41024449916938, 39.91640428150164), 1e-9),
    (gcj02_to_bd09, (116.404, 39.915), (116.41036949371029, 39.92133699351021), 1e-9),
    # googollee/eviltransform go/transform_test.go (same table in python/test.py and
    # javascript/test.js): Shanghai, Shenzhen, Beijing, wgs -> gcj.
    (wgs84_to_gcj02, (121.5272106, 31.1774276), (121.531541859215, 31.17530398364597), 1e-9),
    (wgs84_to_gcj02, (113.912316, 22.543847), (113.9171764808363, 22.540796131694766), 1e-9),
    (wgs84_to_gcj02, (116.377817, 39.911954), (116.38404722455657, 39.91334545536069), 1e-9),
    # hujiulong/gcoord test/unit/crs/WGS84.spec.ts and GCJ02.spec.ts, point [123, 45]
    # (published to 7-8 decimals).
    (wgs84_to_gcj02, (123.0, 45.0), (123.00607541, 45.00197815), 1e-7),
    (wgs84_to_bd09, (123.0, 45.0), (123.0124491, 45.0083293), 1e-6),
    (gcj02_to_bd09, (123.0, 45.0), (123.00636499, 45.00636899), 1e-7),
]


@pytest.mark.parametrize(("func", "given_", "expected", "tol"), FORWARD_PAIRS)
def test_forward_formulas_match_published_pairs(func, given_, expected, tol):
    lon, lat = one(func(*given_))
    assert abs(lon - expected[0]) <= tol
    assert abs(lat - expected[1]) <= tol


# The libraries' inverses are approximations: coordtransform and gcoord's bd09->gcj02
# subtract the offset once (eviltransform documents 1-2 m for that), gcoord's gcj02->wgs84
# iterates only to 1e-6 degrees. So ours may differ from their numbers by a few
# centimetres (measured: 2-10 cm) and we only ask for < 0.5 m; the strict test is that our
# result maps forward onto the input (test_inverses_are_exact_where_the_libraries_are_not).
# (function, input, library's approximate output, source)
APPROX_INVERSE_PAIRS = [
    # wandergis/coordtransform README.md, (116.404, 39.915).
    (gcj02_to_wgs84, (116.404, 39.915), (116.39775550083061, 39.91359571849836)),
    (bd09_to_gcj02, (116.404, 39.915), (116.39762729119315, 39.90865673957631)),
    # hujiulong/gcoord test/unit/crs/GCJ02.spec.ts and BD09.spec.ts, [123, 45].
    (gcj02_to_wgs84, (123.0, 45.0), (122.99395597, 44.99804071)),
    (bd09_to_gcj02, (123.0, 45.0), (122.99363304, 44.99365430)),
    (bd09_to_wgs84, (123.0, 45.0), (122.98762210, 44.99171540)),
]


@pytest.mark.parametrize(("func", "given_", "theirs"), APPROX_INVERSE_PAIRS)
def test_inverses_agree_loosely_with_library_approximations(func, given_, theirs):
    ours = one(func(*given_))
    assert metres(*ours, *theirs)[0] < 0.5


def test_inverses_are_exact_where_the_libraries_are_not():
    # coordtransform's one-step gcj02towgs84(116.404, 39.915) maps forward to a point
    # ~5 cm away from where it started; ours maps back to within 1e-10 degrees.
    theirs = wgs84_to_gcj02(116.39775550083061, 39.91359571849836)
    assert metres(*one(theirs), 116.404, 39.915)[0] > 0.01
    ours = wgs84_to_gcj02(*gcj02_to_wgs84(116.404, 39.915))
    assert np.allclose(one(ours), (116.404, 39.915), rtol=0, atol=1e-10)
    ours_bd = gcj02_to_bd09(*bd09_to_gcj02(116.404, 39.915))
    assert np.allclose(one(ours_bd), (116.404, 39.915), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("wgs", "gcj"),
    [
        ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),
        ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),
        ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),
    ],
)
def test_gcj02_to_wgs84_recovers_eviltransform_points(wgs, gcj):
    # eviltransform asks < 5 m of its fast inverse and < 0.5 m of its "exact" one;
    # ours must be within 0.1 m.
    assert metres(*one(gcj02_to_wgs84(*gcj)), *wgs)[0] < 0.1


# hujiulong/gcoord test/fixtures/china-cities.json (Zhumadian, Shaoyang, Xingtai, Nagqu,
# Shenyang): coordinates the providers gave, rounded to 7 decimals. GCJ-02 -> BD-09 is
# the published formula to the last digit; the public WGS84 -> GCJ-02 formula sits a
# systematic ~5e-6 degrees (~0.5 m) off these provider values (gcoord only checks 4
# decimals), so that column is compared loosely.
CITIES = np.array(
    [
        # WGS84 lon, lat; GCJ02 lon, lat; BD09 lon, lat
        [114.0164322, 33.0133556, 114.022306, 33.0115324, 114.0287781, 33.0176697],
        [111.4622119, 27.242124, 111.4677938, 27.2388981, 111.4742271, 27.2451662],
        [114.498916, 37.0700925, 114.5048503, 37.0705911, 114.5113116, 37.0766797],
        [92.0499619, 31.4784436, 92.0512438, 31.4762063, 92.0576832, 31.4824421],
        [123.4253306, 41.8032629, 123.4314787, 41.8057023, 123.438095, 41.8114013],
    ]
)


def test_gcoord_city_fixture():
    w_lon, w_lat, g_lon, g_lat, b_lon, b_lat = CITIES.T
    bd = gcj02_to_bd09(g_lon, g_lat)
    np.testing.assert_allclose(bd[0], b_lon, rtol=0, atol=1e-6)
    np.testing.assert_allclose(bd[1], b_lat, rtol=0, atol=1e-6)
    gcj = wgs84_to_gcj02(w_lon, w_lat)
    np.testing.assert_allclose(gcj[0], g_lon, rtol=0, atol=1e-5)
    np.testing.assert_allclose(gcj[1], g_lat, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ outside China


OUTSIDE = [(-0.1276, 51.5072), (139.6917, 35.6895), (151.2093, -33.8688), (135.06, 35.0),
           (100.0, 53.6), (73.6, 40.0), (100.0, 3.8), (0.0, 0.0)]  # fmt: skip


def test_outside_china_gcj02_is_wgs84():
    lon, lat = np.array(OUTSIDE).T
    assert out_of_china(lon, lat).all()
    for func in (wgs84_to_gcj02, gcj02_to_wgs84):
        out_lon, out_lat = func(lon, lat)
        assert np.array_equal(out_lon, lon)
        assert np.array_equal(out_lat, lat)
    out_lon, out_lat, info = to_wgs84(lon, lat, "gcj02")
    assert info.key == "GCJ-02"
    assert np.array_equal(out_lon, lon) and np.array_equal(out_lat, lat)


def test_out_of_china_box():
    assert not out_of_china(*SONGJIANG)[0]
    assert out_of_china([73.66, 135.05, 100.0, 100.0], [30.0, 30.0, 3.86, 53.55]).all()
    assert out_of_china(np.nan, 30.0)[0]


def test_bd09_offsets_everywhere_like_baidu():
    # BD-09 is GCJ-02 plus Baidu's own shift, which the formula applies worldwide.
    lon, lat = -0.1276, 51.5072
    assert np.allclose(wgs84_to_bd09(lon, lat), gcj02_to_bd09(lon, lat), rtol=0, atol=0)
    assert np.allclose(one(bd09_to_wgs84(*wgs84_to_bd09(lon, lat))), (lon, lat), atol=1e-9)


# ---------------------------------------------------------------- PROJ CRSs


def test_cgcs2000_and_wgs84_agree_in_shanghai():
    lon = np.array([121.4737, 121.2277, 121.8])
    lat = np.array([31.2304, 31.0322, 31.15])
    c_lon, c_lat, info = to_wgs84(lon, lat, "cgcs2000")
    assert info.key == "EPSG:4490"
    assert (metres(c_lon, c_lat, lon, lat) < 1.0).all()
    assert (metres(*from_wgs84(lon, lat, "EPSG:4490"), lon, lat) < 1.0).all()


@pytest.mark.parametrize("crs", ["EPSG:4549", 3857])
def test_projected_round_trip_songjiang(crs):
    x, y = from_wgs84(*SONGJIANG, crs)
    lon, lat, info = to_wgs84(x, y, crs)
    assert info.projected
    x2, y2 = from_wgs84(lon, lat, crs)
    assert abs(x2[0] - x[0]) < 1e-6 and abs(y2[0] - y[0]) < 1e-6
    assert metres(lon, lat, *SONGJIANG)[0] < 1e-6


def test_gauss_kruger_coordinates_are_plausible():
    # CM 120E with a 500 km false easting: Songjiang (1.23 degrees east) is ~117 km east.
    x, y = from_wgs84(*SONGJIANG, "EPSG:4549")
    assert 600_000 < x[0] < 630_000
    assert 3_400_000 < y[0] < 3_470_000


def test_wgs84_pseudo_mercator_matches_gcoord():
    # hujiulong/gcoord test/unit/crs/WGS84.spec.ts: [123, 45] -> EPSG:3857.
    x, y = from_wgs84(123.0, 45.0, "EPSG:3857")
    assert abs(x[0] - 13692297.367572648) < 1e-5
    assert abs(y[0] - 5621521.486192066) < 1e-5


def test_to_wgs84_default_and_dispatch():
    lon, lat, info = to_wgs84(121.0, 31.0)
    assert info.key == "EPSG:4326"
    assert lon.shape == (1,) and lon[0] == 121.0 and lat[0] == 31.0
    assert np.array_equal(to_wgs84(*SONGJIANG, "gcj-02")[0], gcj02_to_wgs84(*SONGJIANG)[0])
    assert np.array_equal(to_wgs84(*SONGJIANG, "bd-09")[1], bd09_to_wgs84(*SONGJIANG)[1])
    g_lon, g_lat = from_wgs84(*SONGJIANG, "gcj02")
    assert metres(*to_wgs84(g_lon, g_lat, "gcj02")[:2], *SONGJIANG)[0] < 0.1
    b_lon, b_lat = from_wgs84(*SONGJIANG, "bd09")
    assert metres(*to_wgs84(b_lon, b_lat, "bd09")[:2], *SONGJIANG)[0] < 0.1


def test_batch_shapes_are_kept():
    lon = np.full(5, SONGJIANG[0])
    out = to_wgs84(lon, np.full(5, SONGJIANG[1]), "gcj02")
    assert out[0].shape == (5,) and out[1].shape == (5,)
    # A scalar broadcasts against an array.
    assert to_wgs84(lon, SONGJIANG[1])[1].shape == (5,)


def test_geographic_range_is_checked_in_the_crs_unit():
    # NTF (Paris), EPSG:4807, counts in grads: a quarter turn is 100, not 90.
    lon, lat, _ = to_wgs84(2.5, 48.0, "EPSG:4807")
    assert 4.0 < lon[0] < 5.0 and 43.0 < lat[0] < 43.5
    with pytest.raises(InvalidCoordinate, match=r"^lat = 150\.0 .* \[-100, 100\] grad$"):
        to_wgs84(2.5, 150.0, "EPSG:4807")


@pytest.mark.parametrize("crs", [None, "gcj02", "bd09", "EPSG:4490", "EPSG:4549"])
def test_empty_batch(crs):
    lon, lat, _ = to_wgs84(np.array([]), np.array([]), crs)
    assert lon.shape == lat.shape == (0,)


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("crs", [None, "gcj02", "bd09", "cgcs2000"])
@pytest.mark.parametrize(("field", "bad", "shown"), [
    ("lon", np.nan, "nan"), ("lat", np.nan, "nan"),
    ("lon", np.inf, "inf"), ("lat", -np.inf, "-inf"),
])  # fmt: skip
def test_non_finite_is_rejected(crs, field, bad, shown):
    point = {"lon": 121.0, "lat": 31.0, field: bad}
    with pytest.raises(InvalidCoordinate) as info:
        to_wgs84(point["lon"], point["lat"], crs)
    err = info.value
    assert err.status == 422
    assert err.detail == f"{field} = {shown} is not a finite number"
    assert err.extra == {"field": field, "value": shown, "index": None}
    json.dumps(err.extra, allow_nan=False)


@pytest.mark.parametrize("crs", [None, "gcj02", "bd09", "cgcs2000"])
@pytest.mark.parametrize(("field", "bad", "text"), [
    ("lat", 91.0, "lat = 91.0 is out of range: a latitude must be within [-90, 90]"),
    ("lat", -90.5, "lat = -90.5 is out of range: a latitude must be within [-90, 90]"),
    ("lon", 181.0, "lon = 181.0 is out of range: a longitude must be within [-180, 180]"),
    ("lon", -200.0, "lon = -200.0 is out of range: a longitude must be within [-180, 180]"),
])  # fmt: skip
def test_out_of_range_is_rejected(crs, field, bad, text):
    point = {"lon": 121.0, "lat": 31.0, field: bad}
    with pytest.raises(InvalidCoordinate) as info:
        to_wgs84(point["lon"], point["lat"], crs)
    assert info.value.detail == text
    assert info.value.extra == {"field": field, "value": bad, "index": None}


def test_batch_error_names_the_index_of_the_first_bad_point():
    lat = np.full(20, 31.0)
    lat[17] = np.nan
    lat[18] = 95.0
    with pytest.raises(InvalidCoordinate) as info:
        to_wgs84(np.full(20, 121.0), lat)
    assert info.value.detail == "lat[17] = nan is not a finite number"
    assert info.value.extra == {"field": "lat", "value": "nan", "index": 17}
    lat[17] = 31.0
    with pytest.raises(InvalidCoordinate, match=r"^lat\[18\] = 95\.0 is out of range"):
        to_wgs84(np.full(20, 121.0), lat)


def test_first_bad_point_wins_across_fields():
    with pytest.raises(InvalidCoordinate, match=r"^lon\[1\] = 181\.0 "):
        to_wgs84([121.0, 181.0, 121.0], [31.0, 31.0, 91.0])


def test_bounds_themselves_are_valid():
    validate_lonlat([-180.0, 180.0, 0.0], [-90.0, 90.0, 0.0])


def test_validate_lonlat_uses_given_field_names():
    with pytest.raises(InvalidCoordinate, match=r"^latitude\[1\] = 91\.0 ") as info:
        validate_lonlat([1.0, 2.0], [0.0, 91.0], fields=("longitude", "latitude"))
    assert info.value.extra["field"] == "latitude"


def test_not_a_number_and_mismatched_lengths():
    with pytest.raises(InvalidCoordinate, match=r"^lon = 'abc' is not a number"):
        to_wgs84("abc", 31.0)
    with pytest.raises(InvalidInput, match="different lengths"):
        to_wgs84([121.0, 121.1], [31.0, 31.1, 31.2])


@pytest.mark.parametrize(
    ("crs", "x", "y"),
    [
        ("EPSG:4549", 5_000_000.0, 3_500_000.0),  # 4,500 km east of CM 120E: lon ~162E
        ("EPSG:4549", 5e7, 5e7),  # PROJ returns inf
        ("EPSG:4549", 500_000.0, 1e8),  # wraps to a meaningless point
        ("EPSG:3857", 3e7, 0.0),  # beyond the antimeridian: PROJ wraps the longitude
        ("EPSG:3857", 0.0, 3e7),  # lat ~89 degrees, beyond the Mercator square
    ],
)
def test_projected_point_outside_area_is_rejected(crs, x, y):
    info = parse_crs(crs)
    with pytest.raises(InvalidCoordinate) as exc:
        to_wgs84(x, y, crs)
    err = exc.value
    assert err.status == 422
    assert err.detail == (f"x = {x!r}, y = {y!r} is outside the area of {info.key} ({info.name})")
    assert err.extra["value"] == [x, y]
    json.dumps(err.extra, allow_nan=False)


def test_projected_batch_errors_name_index_and_fields():
    x = np.array([617215.4, 617215.4, 5e7])
    y = np.array([3435191.8, np.nan, 5e7])
    with pytest.raises(InvalidCoordinate) as exc:
        to_wgs84(x, y, "EPSG:4549")
    assert exc.value.detail == "y[1] = nan is not a finite number"
    x[1], y[1] = 617215.4, 3435191.8
    with pytest.raises(InvalidCoordinate, match=r"^easting\[2\] = 50000000\.0, northing\[2\]"):
        to_wgs84(x, y, "EPSG:4549", fields=("easting", "northing"))


def test_projected_fields_follow_the_callers_names():
    with pytest.raises(InvalidCoordinate, match=r"^lon = nan "):
        to_wgs84(np.nan, 3435191.8, "EPSG:4549", fields=("lon", "lat"))


def test_from_wgs84_validates_and_reports_unrepresentable_points():
    with pytest.raises(InvalidCoordinate, match=r"^lat = 91\.0 "):
        from_wgs84(0.0, 91.0, "EPSG:3857")
    with pytest.raises(InvalidCoordinate, match="outside the area of EPSG:3857"):
        from_wgs84(0.0, 90.0, "EPSG:3857")


# ------------------------------------------------------------------ property tests

# China's rectangle shrunk by 0.05 degrees, so that no point's GCJ-02 image (offsets are
# below 0.01 degrees) leaves the box where GCJ-02 switches to identity.
LONS = st.floats(73.71, 135.0, allow_nan=False)
LATS = st.floats(3.91, 53.5, allow_nan=False)
POINTS = st.lists(st.tuples(LONS, LATS), min_size=1, max_size=40)


def _arrays(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.array(points, dtype=float)
    return arr[:, 0], arr[:, 1]


@settings(max_examples=150, deadline=None)
@given(POINTS)
def test_gcj02_round_trip_within_a_decimetre(points):
    lon, lat = _arrays(points)
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert (metres(*back, lon, lat) < 0.1).all()
    fwd = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    np.testing.assert_allclose(fwd, (lon, lat), rtol=0, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(POINTS)
def test_bd09_round_trip_within_a_decimetre(points):
    lon, lat = _arrays(points)
    back = bd09_to_wgs84(*wgs84_to_bd09(lon, lat))
    assert (metres(*back, lon, lat) < 0.1).all()
    back_gcj = bd09_to_gcj02(*gcj02_to_bd09(lon, lat))
    assert (metres(*back_gcj, lon, lat) < 0.1).all()
    fwd = gcj02_to_bd09(*bd09_to_gcj02(lon, lat))
    np.testing.assert_allclose(fwd, (lon, lat), rtol=0, atol=1e-9)


ANY_POINTS = st.lists(
    st.tuples(st.floats(-180, 180, allow_nan=False), st.floats(-90, 90, allow_nan=False)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(st.one_of(POINTS, ANY_POINTS))
def test_vectorised_equals_elementwise(points):
    lon, lat = _arrays(points)
    funcs = (wgs84_to_gcj02, gcj02_to_wgs84, gcj02_to_bd09, bd09_to_gcj02,
             wgs84_to_bd09, bd09_to_wgs84)  # fmt: skip
    for func in funcs:
        v_lon, v_lat = func(lon, lat)
        s = np.array([one(func(a, b)) for a, b in zip(lon, lat, strict=True)])
        np.testing.assert_allclose(v_lon, s[:, 0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(v_lat, s[:, 1], rtol=0, atol=1e-12)
    assert np.array_equal(
        out_of_china(lon, lat), [out_of_china(a, b)[0] for a, b in zip(lon, lat, strict=True)]
    )


def test_large_batch_converges():
    rng = np.random.default_rng(7)
    lon = rng.uniform(73.71, 135.0, 200_000)
    lat = rng.uniform(3.91, 53.5, 200_000)
    w_lon, w_lat = gcj02_to_wgs84(lon, lat)
    g_lon, g_lat = wgs84_to_gcj02(w_lon, w_lat)
    assert np.abs(g_lon - lon).max() <= 1e-10 and np.abs(g_lat - lat).max() <= 1e-10
    b_lon, b_lat = gcj02_to_bd09(*bd09_to_gcj02(lon, lat))
    assert np.abs(b_lon - lon).max() <= 1e-10 and np.abs(b_lat - lat).max() <= 1e-10


ONE = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.sampled_from(
    [180.0, -180.0, 90.0, -90.0, 180.0000001, -90.0000001, 121.2277, 31.0322, 0.0, -0.0])


@given(ONE, ONE, st.sampled_from(["EPSG:4326", "WGS84", "GCJ-02", "BD-09", "EPSG:4490",
                                  "EPSG:3857"]))
@settings(max_examples=400)
def test_one_point_fast_path_equals_the_batch_path(x, y, crs):
    """point_to_wgs84 (the intake's single point, without arrays when it can) answers
    exactly what to_wgs84 answers for a batch of one: the same point or the same error."""
    try:
        lon, lat, info = to_wgs84(np.array([x]), np.array([y]), crs)
        want: object = (float(lon[0]), float(lat[0]), info.key)
    except (InvalidCoordinate, InvalidInput) as e:
        want = (type(e), str(e))
    try:
        a, b, info = point_to_wgs84(x, y, crs)
        got: object = (a, b, info.key)
    except (InvalidCoordinate, InvalidInput) as e:
        got = (type(e), str(e))
    assert got == want
