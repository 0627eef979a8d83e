"""Resolve a CSV file of points of any size in bounded memory, to CSV or GeoJSON."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

from layers.resolver import columns, resolve_rows
from layers.settings import Settings
from spatial.errors import InvalidInput
from spatial.index import GridIndex

ROWS_PER_CHUNK = 200_000


def read_points(fh: TextIO, lon_col: str, lat_col: str, id_col: str | None,
                chunk: int = ROWS_PER_CHUNK
                ) -> Iterator[tuple[list[Any], list[Any], list[Any], dict[int, str]]]:
    """Chunks of (xs, ys, ids, errors) from a CSV with a header row."""
    reader = csv.reader(fh)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidInput("the CSV file is empty; expected a header row") from None
    for col in (lon_col, lat_col):
        if col not in header:
            raise InvalidInput(f"no column {col!r} in the CSV header {header} "
                               "(choose with --lon-col/--lat-col)")
    ix, iy = header.index(lon_col), header.index(lat_col)
    iid = header.index(id_col) if id_col and id_col in header else -1
    xs: list[Any] = []
    ys: list[Any] = []
    ids: list[Any] = []
    errors: dict[int, str] = {}
    for line_no, rec in enumerate(reader, start=2):
        if not rec:
            continue
        n = len(xs)
        try:
            xs.append(float(rec[ix]))
            ys.append(float(rec[iy]))
        except (ValueError, IndexError):
            xs.append(float("nan"))
            ys.append(float("nan"))
            errors[n] = f"line {line_no}: coordinates are missing or not numbers"
        ids.append(rec[iid] if iid >= 0 else line_no)
        if len(xs) >= chunk:
            yield xs, ys, ids, errors
            xs, ys, ids, errors = [], [], [], {}
    if xs:
        yield xs, ys, ids, errors


def resolve_file(idx: GridIndex, src: Path, dst: Path, *, lon_col: str, lat_col: str,
                 id_col: str | None, crs: str, settings: Settings,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Stream src (CSV) through the index into dst (.csv or .geojson); returns counts."""
    geojson = dst.suffix.lower() in (".geojson", ".json")
    cols = columns(idx)
    counts = {"points": 0, "inside": 0, "outside": 0, "errors": 0}
    tmp = dst.with_name(dst.name + ".part")
    with open(src, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh, \
            open(tmp, "wb") as out:
        if geojson:
            ref = idx.meta["generation"]
            out.write(b'{"type":"FeatureCollection","generation":' + orjson.dumps(
                {"id": ref.id, "label": ref.label}) + b',"crs_assumed":' + orjson.dumps(crs)
                + b',"features":[\n')
        else:
            text_out = _csv_writer(out)
            text_out([cols])
        first = True
        pos = 0
        for xs, ys, ids, errors in read_points(fh, lon_col, lat_col, id_col):
            for rows in resolve_rows(idx, xs, ys, ids, errors, crs, settings):
                for row in rows:
                    counts["points"] += 1
                    if row[-1]:
                        counts["errors"] += 1
                    elif row[3]:
                        counts["inside"] += 1
                    else:
                        counts["outside"] += 1
                if geojson:
                    feats = [orjson.dumps({
                        "type": "Feature", "id": r[0],
                        "geometry": ({"type": "Point", "coordinates": [r[1], r[2]]}
                                     if r[1] is not None else None),
                        "properties": dict(zip(cols, r, strict=True))}) for r in rows]
                    if feats:
                        out.write((b"" if first else b",\n") + b",\n".join(feats))
                        first = False
                else:
                    text_out(rows)
            if progress:
                new = raw.tell()
                progress(new - pos)
                pos = new
        if geojson:
            out.write(b"\n]}\n")
    os.replace(tmp, dst)
    return counts


def _csv_writer(out: Any) -> Callable[[list[Any]], None]:
    def write(rows: list[Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        out.write(buf.getvalue().encode("utf-8"))

    return write
