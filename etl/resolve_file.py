"""Resolve a CSV file of points of any size in bounded memory, to CSV or GeoJSON."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from layers.batch_io import (
    CsvLayout,
    Fragments,
    encode_answers_csv,
    encode_json_items,
    int_fields,
    read_csv_points,
)
from layers.resolver import columns, resolve_chunks, resolve_columns
from layers.settings import Settings
from spatial.index import GridIndex


def resolve_file(idx: GridIndex, src: Path, dst: Path, *, lon_col: str, lat_col: str,
                 id_col: str | None, crs: str, settings: Settings,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Stream src (CSV) through the index into dst (.csv or .geojson); returns counts.

    Written to dst.part first and renamed at the end, so a failed run leaves no half file.
    CSV answers are written by the compiled encoder straight from the grid indexes (ids
    copied from the input's bytes); GeoJSON goes through the answer columns."""
    geojson = dst.suffix.lower() in (".geojson", ".json")
    counts = {"points": 0, "inside": 0, "outside": 0, "errors": 0}
    tmp = dst.with_name(dst.name + ".part")
    first = True
    pos = 0
    try:
        with open(src, "rb") as fh, open(tmp, "wb") as out:
            layout = None if geojson else CsvLayout.of(idx, columns(idx))
            if layout is not None:
                out.write(layout.header)
            else:
                ref = idx.meta["generation"]
                out.write(b'{"type":"FeatureCollection","generation":'
                          + orjson.dumps({"id": ref.id, "label": ref.label})
                          + b',"crs_assumed":' + orjson.dumps(crs) + b',"features":[\n')
            offset = 0
            for pts in read_csv_points(fh, lon_col, lat_col, id_col, raw_ids=not geojson):
                if layout is not None:
                    ids = (pts.id_frags if pts.id_frags is not None
                           else Fragments.of(pts.ids) if pts.ids is not None
                           else int_fields(offset + 2, len(pts)))  # the CSV line number
                    for start, r, ok, errs in resolve_chunks(
                            idx, pts.x, pts.y, pts.errors, crs, settings,
                            first_row=offset + 1):
                        n = len(ok)
                        ins = ok & (r.grid >= 0)
                        counts["points"] += n
                        counts["errors"] += n - int(ok.sum())
                        counts["inside"] += int(ins.sum())
                        counts["outside"] += int((ok & ~ins).sum())
                        out.write(encode_answers_csv(
                            layout, ids[start:start + n], r.lon, r.lat, ok, r.grid, r.cells,
                            r.nearest, r.distance_m, errs).data)
                else:
                    id_arr = pts.ids if pts.ids is not None else np.arange(
                        offset + 2, offset + 2 + len(pts))  # the CSV line number
                    for cols in resolve_columns(idx, pts.x, pts.y, id_arr, pts.errors, crs,
                                                settings, first_row=offset + 1):
                        err = cols["error"] != None  # noqa: E711 - elementwise
                        ins = (cols["inside"] == True) & ~err  # noqa: E712
                        counts["points"] += len(err)
                        counts["errors"] += int(err.sum())
                        counts["inside"] += int(ins.sum())
                        counts["outside"] += int((~ins & ~err).sum())
                        feats = encode_json_items(cols, geojson=True)
                        if feats:
                            out.write((b"" if first else b",\n") + b",\n".join(feats))
                            first = False
                offset += len(pts)
                if progress:
                    progress(pts.consumed - pos)
                    pos = pts.consumed
            if geojson:
                out.write(b"\n]}\n")
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return counts
