"""Batch points in and answers out: CSV read in blocks by pandas' C parser, answers encoded
as CSV, JSON or GeoJSON a chunk at a time (shared by the API and the command line); the
command line's CSV answers are written by a compiled encoder (encode_answers_csv)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import ijson
import numpy as np
import orjson
import pandas as pd
from numba import njit

from spatial.errors import InvalidInput, TooLarge

if TYPE_CHECKING:
    from spatial.index import GridIndex

READ_BLOCK = 4 << 20  # bytes of CSV parsed at a time (about 130,000 rows of id,lon,lat)
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Fragments:
    """Byte strings, ready to go into a CSV line: value i is data[start[i]:end[i]]."""

    data: np.ndarray  # uint8
    start: np.ndarray  # int64
    end: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, s: slice) -> Fragments:
        return Fragments(self.data, self.start[s], self.end[s])

    @classmethod
    def of(cls, values: Sequence[Any] | np.ndarray) -> Fragments:
        """Values as CSV fields: str(v) (None: empty), quoted as pandas' to_csv quotes."""
        enc = [b"" if v is None or (isinstance(v, float) and v != v)
               else csv_field(str(v)).encode("utf-8") for v in values]
        end = np.cumsum(np.fromiter(map(len, enc), dtype=np.int64, count=len(enc)))
        start = end - np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        return cls(np.frombuffer(b"".join(enc), dtype=np.uint8), start, end)


def csv_field(s: str) -> str:
    """One CSV field as pandas' to_csv writes it (Python's csv, QUOTE_MINIMAL, "\\n")."""
    if "," in s or '"' in s or "\n" in s:
        return '"' + s.replace('"', '""') + '"'
    return s


@dataclass
class Points:
    """Coordinates as read (x/lon, y/lat), ids, and per-row parse errors.

    With `raw_ids`, the reader leaves the ids as `id_frags` (the CSV fields as they are in
    the file, byte ranges, no Python strings) where it can, and `ids` is None."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray | None
    errors: dict[int, str] = field(default_factory=dict)
    id_frags: Fragments | None = None
    consumed: int = 0  # bytes of the input read so far (for a progress bar)

    def __len__(self) -> int:
        return len(self.x)


def _quote_free_cut(buf: bytes, start: int = 0) -> int:
    """The end (after the newline) of the last line of buf[start:] that ends outside quotes
    (buf[start] being outside quotes), or -1 when there is none."""
    pos = len(buf)
    quotes = buf.count(b'"', start)
    while True:
        nl = buf.rfind(b"\n", start, pos)
        if nl < 0:
            return -1
        quotes -= buf.count(b'"', nl, pos)
        if quotes % 2 == 0:
            return nl + 1
        pos = nl


def _first_line_end(buf: bytes) -> int:
    """The end (after the newline) of the first line of buf that ends outside quotes, or -1."""
    nl = buf.find(b"\n")
    while nl >= 0 and buf.count(b'"', 0, nl) % 2:
        nl = buf.find(b"\n", nl + 1)
    return nl + 1 if nl >= 0 else -1


def _blocks(fh: IO[bytes], size: int) -> Iterator[tuple[bytes, bytes, int]]:
    """(header line, block of whole data lines, bytes read so far): the stream cut at line
    breaks outside quotes, about `size` bytes a block."""
    buf = fh.read(size)
    total = len(buf)
    if buf.startswith(_BOM):
        buf = buf[len(_BOM):]
    while True:  # the header: the first line that is not blank
        stripped = buf.lstrip(b"\r\n")
        end = _first_line_end(stripped)
        more = b"" if end >= 0 else fh.read(size)
        if end >= 0 or not more:
            buf = stripped
            break
        buf = stripped + more
        total += len(more)
    if end < 0:
        yield buf, b"", total
        return
    header, buf = buf[:end], buf[end:]
    while True:
        more = fh.read(size)
        total += len(more)
        if not more:
            yield header, buf, total
            return
        buf += more
        cut = _quote_free_cut(buf)
        if cut > 0:
            yield header, buf[:cut], total
            buf = buf[cut:]


@njit(cache=True, nogil=True)
def _field_ranges(b: np.ndarray, ncol: int, k: int
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
    """(start, end) of field k on every line, one pass; False when the block is not plain
    (a quote, a line without ncol fields, a carriage return not before a newline)."""
    lines = 0
    for j in range(len(b)):
        if b[j] == 10:
            lines += 1
    if len(b) and b[len(b) - 1] != 10:
        lines += 1
    start = np.empty(lines, dtype=np.int64)
    end = np.empty(lines, dtype=np.int64)
    line = 0
    f = 0
    s = 0
    e = 0
    for j in range(len(b) + 1):
        c = b[j] if j < len(b) else 10
        if j == len(b) and (len(b) == 0 or b[len(b) - 1] == 10):
            break
        if c == 44:
            if f == k:
                e = j
            f += 1
            if f == k:
                s = j + 1
        elif c == 10:
            stop = j - 1 if j > 0 and b[j - 1] == 13 else j
            if f != ncol - 1:  # a blank or short line: not plain
                return start, end, False
            if f == k:
                e = stop
            start[line] = s
            end[line] = e
            line += 1
            f = 0
            s = j + 1
        elif c == 34 or (c == 13 and (j + 1 >= len(b) or b[j + 1] != 10)):
            return start, end, False
    return start, end, line == lines


def _raw_field(block: bytes, ncol: int, k: int) -> Fragments | None:
    """Field k of every line of a block as byte ranges, when the block is plain (no quotes,
    no blank lines, ncol fields a line, no carriage return but before a newline)."""
    b = np.frombuffer(block, dtype=np.uint8)
    start, end, ok = _field_ranges(b, ncol, k)
    return Fragments(b, start, end) if ok and len(start) else None


def _header(head: bytes, lon_col: str, lat_col: str, id_col: str | None
            ) -> tuple[list[str], str, str, str | None]:
    """The columns of the header line and which are x, y and the id."""
    cols = [str(c) for c in pd.read_csv(io.BytesIO(head), nrows=0, encoding="utf-8").columns]
    xcol = lon_col if lon_col in cols else ("x" if "x" in cols else None)
    ycol = lat_col if lat_col in cols else ("y" if "y" in cols else None)
    if xcol is None or ycol is None:
        missing = lon_col if xcol is None else lat_col
        raise InvalidInput(f"CSV header: no column {missing!r}; columns are {cols} "
                           "(choose with lon_col/lat_col)")
    return cols, xcol, ycol, (id_col if id_col and id_col in cols else None)


def read_csv_points(fh: IO[bytes], lon_col: str, lat_col: str, id_col: str | None,
                    *, block: int = READ_BLOCK, first_line: int = 2,
                    raw_ids: bool = False) -> Iterator[Points]:
    """Blocks of points from a CSV with a header; unparseable rows carry an error.

    Each block is parsed by pandas' C parser with the header put before it, coordinates as
    float64 (the fast path); a block with a value that is not a number is parsed again as
    text and the bad rows get their errors."""
    try:
        line = first_line
        names: tuple[list[str], str, str, str | None] | None = None
        for head, data, consumed in _blocks(fh, block):
            if names is None:
                names = _header(head, lon_col, lat_col, id_col)
            cols, xcol, ycol, icol = names
            if not data.strip(b"\r\n"):
                continue
            if not data.isascii():
                data.decode("utf-8")  # a UnicodeDecodeError names the byte
            pts = _parse_block(head, data, cols, xcol, ycol, icol, line, raw_ids)
            pts.consumed = consumed
            yield pts
            line += len(pts)
    except pd.errors.EmptyDataError:
        raise InvalidInput("CSV: empty input, expected a header line with lon,lat "
                           "columns") from None
    except UnicodeDecodeError as e:
        raise InvalidInput(f"CSV: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset "
                           f"{e.start} of a chunk); save the file as UTF-8 (a GBK file: "
                           "iconv -f GBK -t UTF-8)") from None
    except pd.errors.ParserError as e:
        raise InvalidInput(f"CSV: {e}") from None


def _parse_block(head: bytes, data: bytes, cols: list[str], xcol: str, ycol: str,
                 icol: str | None, line: int, raw_ids: bool) -> Points:
    frags = _raw_field(data, len(cols), cols.index(icol)) if raw_ids and icol else None
    use = list(dict.fromkeys([xcol, ycol] + ([icol] if icol and frags is None else [])))
    try:
        df = pd.read_csv(io.BytesIO(head + data), usecols=use, encoding="utf-8",
                         dtype={xcol: np.float64, ycol: np.float64, **(
                             {icol: object} if icol else {})},
                         keep_default_na=False, skip_blank_lines=True)
        x = df[xcol].to_numpy(dtype=np.float64)
        y = df[ycol].to_numpy(dtype=np.float64)
        fast = not (np.isnan(x).any() or np.isnan(y).any()) and (
            frags is None or len(frags) == len(df))
    except ValueError:
        fast = False
    if fast:
        ids = df[icol].to_numpy(dtype=object) if icol and frags is None else None
        return Points(x, y, ids, {}, frags)
    # a value that is not a number (or a blank or short line): the block again, as text
    df = pd.read_csv(io.BytesIO(head + data), usecols=[c for c in dict.fromkeys(use + (
        [icol] if icol else []))], dtype=str, keep_default_na=False, encoding="utf-8",
        skip_blank_lines=True)
    x = pd.to_numeric(df[xcol], errors="coerce").to_numpy(dtype=np.float64)
    y = pd.to_numeric(df[ycol], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(x) | np.isnan(y))
    raw_x, raw_y = df[xcol].to_numpy(), df[ycol].to_numpy()
    errors = {int(i): f"line {line + int(i)}: {xcol}={raw_x[i]!r}, {ycol}={raw_y[i]!r} "
                      "are not numbers" for i in bad
              if raw_x[i].lower() not in ("nan", "inf", "-inf")
              and raw_y[i].lower() not in ("nan", "inf", "-inf")}
    ids = df[icol].to_numpy(dtype=object) if icol else None
    return Points(x, y, ids, errors)


def read_csv_batch(fh: IO[bytes], limit: int, lon_col: str, lat_col: str,
                   id_col: str | None) -> Points:
    """A whole CSV batch (at most limit points), its chunks joined, errors by row."""
    parts: list[Points] = []
    n = 0
    for pts in read_csv_points(fh, lon_col, lat_col, id_col):
        parts.append(pts)
        n += len(pts)
        if n > limit:
            raise TooLarge(f"the batch has more than {limit:,} points; the limit is "
                           f"{limit:,} per request (split the input)")
    if not parts:
        return Points(np.empty(0), np.empty(0), None, {})
    errors: dict[int, str] = {}
    off = 0
    for p in parts:
        errors.update({off + k: v for k, v in p.errors.items()})
        off += len(p)
    has_ids = all(p.ids is not None for p in parts)
    return Points(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                  np.concatenate([p.ids for p in parts if p.ids is not None]) if has_ids
                  else None, errors)


def encode_csv(cols: dict[str, np.ndarray], header: bool) -> bytes:
    """One chunk of answers as CSV (UTF-8)."""
    buf = io.StringIO()
    pd.DataFrame(cols).to_csv(buf, header=header, index=False)
    return buf.getvalue().encode("utf-8")


# ---------------------------------------------------------------- CSV answers, compiled

_POW10 = np.array([10.0 ** d for d in range(16)])
_FLOAT_MAX = 25  # bytes of the longest repr of a float64 ("-2.2250738585072014e-308")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()


@njit(cache=True, nogil=True)
def _round_trips(a: float, d: int) -> bool:
    return math.floor(a * _POW10[d] + 0.5) / _POW10[d] == a


@njit(cache=True, nogil=True)
def _decimals(v: float) -> int:
    """The fewest decimals d whose rounding of |v| reads back as |v| (repr's digits), or -1
    where repr uses an exponent or the decimal is not unique at that precision.

    Exact: m / 10**d is correctly rounded, and while 10**-d >= 4 ulp(v) at most one
    decimal of d places lies within half an ulp of v, found by rounding v * 10**d; reading
    back is monotone in d, so the fewest is found by bisection."""
    a = abs(v)
    if not (a >= 1e-4 and a < 1e15):
        return -1
    ulp = math.ldexp(1.0, math.frexp(a)[1] - 53)
    hi = -1
    for d in range(16):
        if ulp * _POW10[d] > 0.25:
            break
        hi = d
    if hi < 0 or not _round_trips(a, hi):
        return -1
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if _round_trips(a, mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


_EMPTY, _ZERO, _REPR = -2, -3, -1


@njit(cache=True, nogil=True)
def _float_codes(v: np.ndarray) -> np.ndarray:
    """How each value is written: decimals (>= 0), _EMPTY (NaN), _ZERO, or _REPR (by
    Python's repr: exponents, 17 digits, infinities)."""
    out = np.empty(len(v), dtype=np.int8)
    for i in range(len(v)):
        x = v[i]
        if x != x:
            out[i] = _EMPTY
        elif x == 0.0:
            out[i] = _ZERO
        elif abs(x) == math.inf:
            out[i] = _REPR
        else:
            out[i] = _decimals(x)
    return out


@njit(cache=True, nogil=True)
def _write_float(out: np.ndarray, p: int, v: float, d: int) -> int:
    """repr(v) at out[p:], v finite, d = _decimals(v) >= 0 or _ZERO; the new end."""
    if d == _ZERO:
        if math.copysign(1.0, v) < 0:
            out[p] = 45
            p += 1
        out[p] = 48
        out[p + 1] = 46
        out[p + 2] = 48
        return p + 3
    if v < 0:
        out[p] = 45
        p += 1
    m = np.int64(math.floor(abs(v) * _POW10[d] + 0.5))
    digits = 1
    t = m // 10
    while t > 0:
        digits += 1
        t //= 10
    width = max(digits, d + 1)  # at least one digit before the point
    q = p + width + 1  # one more for the point
    if d == 0:
        q += 1  # "x.0"
        out[q - 1] = 48
        out[q - 2] = 46
        k = q - 3
    else:
        k = q - 1
    for j in range(width):
        if d > 0 and j == d:
            out[k] = 46
            k -= 1
        out[k] = 48 + m % 10
        m //= 10
        k -= 1
    return q


@njit(cache=True, nogil=True)
def _copy(out: np.ndarray, p: int, data: np.ndarray, a: int, b: int) -> int:
    for j in range(a, b):
        out[p] = data[j]
        p += 1
    return p


@njit(cache=True, nogil=True)
def _float_field(out: np.ndarray, p: int, v: float, code: int, fb: int, fb_data: np.ndarray,
                 fb_start: np.ndarray, fb_end: np.ndarray) -> int:
    if fb >= 0:
        return _copy(out, p, fb_data, fb_start[fb], fb_end[fb])
    if code == _EMPTY:
        return p
    return _write_float(out, p, v, code)


@njit(cache=True, nogil=True)
def _write_rows(out: np.ndarray, id_data: np.ndarray, id_start: np.ndarray,
                id_end: np.ndarray, lon: np.ndarray, lat: np.ndarray, chain: np.ndarray,
                ch_data: np.ndarray, ch_start: np.ndarray, ch_end: np.ndarray,
                cells: np.ndarray, near: np.ndarray, code_data: np.ndarray,
                code_start: np.ndarray, code_end: np.ndarray, dist: np.ndarray,
                codes: np.ndarray, fb: np.ndarray, fb_data: np.ndarray, fb_start: np.ndarray,
                fb_end: np.ndarray, hexd: np.ndarray) -> int:
    """CSV lines: id, lon, lat, the chain fragment (inside .. grid_name), h3, nearest grid,
    distance, error; codes[i, 0..2] say how lon, lat and distance are written
    (_float_codes), fb[i, 0..3] index fallback texts (repr of lon, lat, distance and the
    error), -1 for none. Returns the bytes written."""
    p = 0
    for i in range(len(lon)):
        p = _copy(out, p, id_data, id_start[i], id_end[i])
        out[p] = 44
        p = _float_field(out, p + 1, lon[i], codes[i, 0], fb[i, 0], fb_data, fb_start, fb_end)
        out[p] = 44
        p = _float_field(out, p + 1, lat[i], codes[i, 1], fb[i, 1], fb_data, fb_start, fb_end)
        out[p] = 44
        c = chain[i]
        p = _copy(out, p + 1, ch_data, ch_start[c], ch_end[c])
        out[p] = 44
        p += 1
        cell = cells[i]
        if cell != 0:
            n = 0
            t = cell
            while t != 0:
                n += 1
                t >>= np.uint64(4)
            t = cell
            for j in range(n):
                out[p + n - 1 - j] = hexd[np.int64(t & np.uint64(15))]
                t >>= np.uint64(4)
            p += n
        out[p] = 44
        g = near[i]
        p += 1
        if g >= 0:
            p = _copy(out, p, code_data, code_start[g], code_end[g])
        out[p] = 44
        p += 1
        if g >= 0:
            p = _float_field(out, p, dist[i], codes[i, 2], fb[i, 2], fb_data, fb_start, fb_end)
        out[p] = 44
        p += 1
        if fb[i, 3] >= 0:
            p = _copy(out, p, fb_data, fb_start[fb[i, 3]], fb_end[fb[i, 3]])
        out[p] = 10
        p += 1
    return p


@njit(cache=True, nogil=True)
def _int_fields(first: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The integers first .. first + n - 1 as decimal CSV fields (line numbers as ids)."""
    data = np.empty(n * 20, dtype=np.uint8)
    start = np.empty(n, dtype=np.int64)
    end = np.empty(n, dtype=np.int64)
    p = 0
    for i in range(n):
        v = first + i
        start[i] = p
        if v < 0:
            data[p] = 45
            p += 1
            v = -v
        digits = 1
        t = v // 10
        while t > 0:
            digits += 1
            t //= 10
        for j in range(digits):
            data[p + digits - 1 - j] = 48 + v % 10
            v //= 10
        p += digits
        end[i] = p
    return data, start, end


def int_fields(first: int, n: int) -> Fragments:
    """Line numbers (or any run of integers) as CSV fields."""
    data, start, end = _int_fields(first, n)
    return Fragments(data, start, end)


@dataclass(frozen=True)
class CsvLayout:
    """What every answer line of one index takes from its finest grid, made once: the
    fragment `inside,<code of each level>,grid_name` of each grid (then one for outside
    and one for a row with an error), and each grid's code (for nearest_grid)."""

    header: bytes
    chain: Fragments  # len = grids + 2
    codes: Fragments

    @classmethod
    def of(cls, idx: GridIndex, columns: list[str]) -> CsvLayout:
        n = len(idx.codes)
        empty = "," * (len(idx.levels) + 1)
        chains = []
        for g in range(n):
            parts = ["True"]
            for lv in idx.levels:
                k = int(lv.of_finest[g])
                parts.append(csv_field(str(lv.codes[k])) if k >= 0 else "")
            parts.append(csv_field(str(idx.names[g])))
            chains.append(",".join(parts))
        chains += ["False" + empty, empty]
        enc = [c.encode("utf-8") for c in chains]
        lens = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        end = np.cumsum(lens)
        frag = Fragments(np.frombuffer(b"".join(enc), dtype=np.uint8), end - lens, end)
        head = (",".join(csv_field(c) for c in columns) + "\n").encode("utf-8")
        return cls(head, frag, Fragments.of(list(idx.codes)))


def encode_answers_csv(layout: CsvLayout, ids: Fragments, lon: np.ndarray, lat: np.ndarray,
                       ok: np.ndarray, grid: np.ndarray, cells: np.ndarray,
                       nearest: np.ndarray, distance_m: np.ndarray,
                       errors: np.ndarray) -> np.ndarray:
    """One chunk of answers as CSV lines (a uint8 array), byte for byte what encode_csv
    writes for `resolver.resolve_columns`' columns, compiled: fragments made once per grid,
    floats written as repr writes them (repr itself for the few it must)."""
    n = len(lon)
    grids = len(layout.codes)
    chain = np.where(ok, np.where(grid >= 0, grid, grids), grids + 1).astype(np.int64)
    wlon = np.where(ok, lon, np.nan)
    wlat = np.where(ok, lat, np.nan)
    has_near = nearest >= 0
    dist = np.where(has_near, np.round(distance_m, 2), np.nan)
    fb = np.full((n, 4), -1, dtype=np.int64)
    codes = np.empty((n, 3), dtype=np.int8)
    texts: list[str] = []
    for j, v in enumerate((wlon, wlat, dist)):
        codes[:, j] = _float_codes(v)
        for i in np.flatnonzero(codes[:, j] == _REPR):
            fb[i, j] = len(texts)
            texts.append(repr(float(v[i])))
    for i in np.flatnonzero(errors != None):  # noqa: E711 - elementwise
        fb[i, 3] = len(texts)
        texts.append(str(errors[i]))
    fbf = Fragments.of(texts) if texts else Fragments(np.zeros(1, np.uint8),
                                                      np.zeros(1, np.int64),
                                                      np.zeros(1, np.int64))
    ch = layout.chain
    size = (int((ids.end - ids.start).sum()) + int((ch.end - ch.start)[chain].sum())
            + int((layout.codes.end - layout.codes.start)[np.maximum(nearest, 0)].sum())
            + int(fbf.end[-1]) + n * (3 * _FLOAT_MAX + 16 + 10))
    out = np.empty(size, dtype=np.uint8)
    k = _write_rows(out, ids.data, ids.start, ids.end, wlon, wlat, chain,
                    ch.data, ch.start, ch.end,
                    np.where(ok, cells, 0).astype(np.uint64),
                    np.where(has_near, nearest, -1).astype(np.int64),
                    layout.codes.data, layout.codes.start, layout.codes.end, dist,
                    codes, fb, fbf.data, fbf.start, fbf.end, _HEX)
    return out[:k]


def _nulls(c: np.ndarray) -> np.ndarray:
    """Float NaN -> None, for JSON."""
    if c.dtype.kind != "f":
        return c
    o = c.astype(object)
    o[np.isnan(c)] = None
    return o


def _records(cols: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    names = list(cols)
    lists = [_nulls(c).tolist() for c in cols.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


def encode_json_items(cols: dict[str, np.ndarray], geojson: bool) -> list[bytes]:
    """One chunk of answers as JSON objects, or GeoJSON Point features (WGS84)."""
    recs = _records(cols)
    if not geojson:
        return [orjson.dumps(r) for r in recs]
    return [orjson.dumps({
        "type": "Feature", "id": r["id"],
        "geometry": ({"type": "Point", "coordinates": [r["wgs84_lon"], r["wgs84_lat"]]}
                     if r["wgs84_lon"] is not None else None),
        "properties": r}) for r in recs]


# ---------------------------------------------------------------- JSON batches, streamed

ROW_FIELDS = {"id", "lon", "lat", "x", "y"}


def _json_error(e: Exception) -> InvalidInput:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return InvalidInput(f"body: not valid JSON ({first[:200]})")


def _top_level(fh: IO[bytes]) -> tuple[str, str | None, Any]:
    """What a JSON batch is: ('array', None, None) or ('object', <key of its points>, <its
    crs member if one came before the points>); the file is left at its start."""
    crs: Any = None
    try:
        events = ijson.parse(fh, use_float=True)
        prefix, event, _ = next(events)
        if event == "start_array":
            fh.seek(0)
            return "array", None, None
        if event != "start_map":
            raise InvalidInput("body: expected a JSON array of points, {\"points\": [...]}, "
                               "or a GeoJSON FeatureCollection")
        for prefix, event, value in events:
            if prefix == "" and event == "map_key" and value in ("features", "points"):
                key = str(value)
                fh.seek(0)
                return "object", key, crs
            if prefix == "crs" and event == "start_map":
                crs = {}
            if prefix == "crs.properties.name" and event == "string":
                crs = {"name": value}
    except StopIteration:
        raise InvalidInput("body: empty") from None
    except ijson.JSONError as e:
        raise _json_error(e) from None
    raise InvalidInput("body: a JSON object must hold \"points\": [...] or be a GeoJSON "
                       "FeatureCollection with \"features\": [...]")


def _safe_id(v: Any) -> tuple[Any, str | None]:
    """An id passed through to the answer: a string, a number or null; else an error."""
    if v is None or isinstance(v, bool | int | float):
        return v, None
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return None, "id: not valid Unicode (an unpaired surrogate)"
        return v, None
    return None, f"id: must be a string or a number, got {type(v).__name__}"


def _pair(c: Any) -> tuple[float, float] | str:
    """[x, y] (a third coordinate, a height, is allowed and not used) or an error."""
    if not isinstance(c, list) or not 2 <= len(c) <= 3:
        return "a point is [lon, lat] (or [x, y]; a third value, the height, is ignored)"
    x, y = c[0], c[1]
    if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, int | float) \
            or not isinstance(y, int | float):
        return f"coordinates are not numbers ({x!r:.40}, {y!r:.40})"
    return float(x), float(y)


def read_json_points(fh: IO[bytes], limit: int) -> tuple[Points, str]:
    """Points of a JSON batch, parsed a row at a time (ijson, C): `[[lon, lat], ...]`,
    `[{"id", "lon", "lat"}, ...]`, `{"points": [...]}` or a GeoJSON FeatureCollection of
    Points. Bad rows get an error of their own; a field a row may not carry (its own
    `crs`, say) is an error for that row, never silently dropped. Returns (points, kind)."""
    kind, key, crs = _top_level(fh)
    if crs is not None:
        name = crs.get("name") if isinstance(crs, dict) else None
        raise InvalidInput(f"crs: the body names its own CRS ({name!r}); give the batch's "
                           "CRS as ?crs= (GeoJSON is WGS84 lon/lat by RFC 7946)")
    geojson = key == "features"
    xs: list[float] = []
    ys: list[float] = []
    ids: list[Any] = []
    errors: dict[int, str] = {}
    any_id = False
    prefix = "item" if kind == "array" else f"{key}.item"
    try:
        for i, row in enumerate(ijson.items(fh, prefix, use_float=True)):
            if i >= limit:
                raise TooLarge(f"the batch has more than {limit:,} points; the limit is "
                               f"{limit:,} per request (split the input)")
            where = f"features[{i}]" if geojson else f"[{i}]"
            rid: Any = None
            pt: tuple[float, float] | str
            if geojson:
                if not isinstance(row, dict):
                    pt = "a feature is a JSON object"
                else:
                    geom = row.get("geometry")
                    props = row.get("properties")
                    rid = row.get("id", props.get("id") if isinstance(props, dict) else None)
                    if not isinstance(geom, dict) or geom.get("type") != "Point":
                        got = geom.get("type") if isinstance(geom, dict) else geom
                        pt = f"geometry must be a Point, got {got!r:.40}"
                    else:
                        pt = _pair(geom.get("coordinates"))
            elif isinstance(row, list):
                pt = _pair(row)
            elif isinstance(row, dict):
                rid = row.get("id")
                extra = sorted(set(row) - ROW_FIELDS)
                if extra:
                    pt = (f"field(s) {', '.join(repr(k)[:40] for k in extra[:5])} are not read"
                          " here (a point is {\"id\", \"lon\", \"lat\"}; the CRS is the batch's"
                          " ?crs=)")
                else:
                    x, y = row.get("lon", row.get("x")), row.get("lat", row.get("y"))
                    pt = ("needs lon and lat (or x and y)" if x is None or y is None
                          else _pair([x, y]))
            else:
                pt = "a point is [lon, lat] or {\"lon\": .., \"lat\": ..}"
            rid, id_error = _safe_id(rid)
            any_id = any_id or rid is not None
            if isinstance(pt, str) or id_error:
                errors[i] = f"{where}: {id_error or pt}"
                xs.append(np.nan)
                ys.append(np.nan)
            else:
                xs.append(pt[0])
                ys.append(pt[1])
            ids.append(rid)
    except ijson.JSONError as e:
        raise _json_error(e) from None
    out_kind = "geojson" if geojson else "json"
    return Points(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64),
                  np.asarray(ids, dtype=object) if any_id else None, errors), out_kind
