"""Batch points in and answers out: CSV read in chunks by pandas' C parser, answers encoded
as CSV, JSON or GeoJSON a chunk at a time (shared by the API and the command line)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd

from spatial.errors import InvalidInput

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
    except pd.errors.ParserError as e:
        raise InvalidInput(f"CSV: {e}") from None


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
