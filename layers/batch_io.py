"""Batch points in and answers out: CSV read in chunks by pandas' C parser, answers encoded
as CSV, JSON or GeoJSON a chunk at a time (shared by the API and the command line)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import ijson
import numpy as np
import orjson
import pandas as pd

from spatial.errors import InvalidInput, TooLarge

READ_CHUNK = 200_000


@dataclass
class Points:
    """Coordinates as read (x/lon, y/lat), ids, and per-row parse errors."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray | None
    errors: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)


def read_csv_points(fh: IO[bytes], lon_col: str, lat_col: str, id_col: str | None,
                    *, chunk: int = READ_CHUNK, first_line: int = 2) -> Iterator[Points]:
    """Chunks of points from a CSV with a header; unparseable rows carry an error."""
    try:
        reader = pd.read_csv(fh, chunksize=chunk, dtype=str, keep_default_na=False,
                             encoding="utf-8-sig", skip_blank_lines=True)
        line = first_line
        for df in reader:
            cols = list(df.columns)
            xcol = lon_col if lon_col in cols else ("x" if "x" in cols else None)
            ycol = lat_col if lat_col in cols else ("y" if "y" in cols else None)
            if xcol is None or ycol is None:
                missing = lon_col if xcol is None else lat_col
                raise InvalidInput(f"CSV header: no column {missing!r}; columns are {cols} "
                                   "(choose with lon_col/lat_col)")
            x = pd.to_numeric(df[xcol], errors="coerce").to_numpy(dtype=np.float64)
            y = pd.to_numeric(df[ycol], errors="coerce").to_numpy(dtype=np.float64)
            bad = np.flatnonzero(np.isnan(x) | np.isnan(y))
            raw_x, raw_y = df[xcol].to_numpy(), df[ycol].to_numpy()
            errors = {int(i): f"line {line + int(i)}: {xcol}={raw_x[i]!r}, {ycol}={raw_y[i]!r} "
                              "are not numbers" for i in bad
                      if raw_x[i].lower() not in ("nan", "inf", "-inf")
                      and raw_y[i].lower() not in ("nan", "inf", "-inf")}
            ids = df[id_col].to_numpy(dtype=object) if id_col and id_col in cols else None
            yield Points(x, y, ids, errors)
            line += len(df)
    except pd.errors.EmptyDataError:
        raise InvalidInput("CSV: empty input, expected a header line with lon,lat "
                           "columns") from None
    except UnicodeDecodeError as e:
        raise InvalidInput(f"CSV: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset "
                           f"{e.start} of a chunk); save the file as UTF-8 (a GBK file: "
                           "iconv -f GBK -t UTF-8)") from None
    except pd.errors.ParserError as e:
        raise InvalidInput(f"CSV: {e}") from None


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
