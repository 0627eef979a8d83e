"""Resolve a CSV file of points of any size in bounded memory, to CSV or GeoJSON."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from layers.batch_io import encode_csv, encode_json_items, read_csv_points
from layers.resolver import resolve_columns
from layers.settings import Settings
from spatial.index import GridIndex


def resolve_file(idx: GridIndex, src: Path, dst: Path, *, lon_col: str, lat_col: str,
                 id_col: str | None, crs: str, settings: Settings,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Stream src (CSV) through the index into dst (.csv or .geojson); returns counts.

    Written to dst.part first and renamed at the end, so a failed run leaves no half file."""
    geojson = dst.suffix.lower() in (".geojson", ".json")
    counts = {"points": 0, "inside": 0, "outside": 0, "errors": 0}
    tmp = dst.with_name(dst.name + ".part")
    first = True
    pos = 0
    try:
        with open(src, "rb") as fh, open(tmp, "wb") as out:
            if geojson:
                ref = idx.meta["generation"]
                out.write(b'{"type":"FeatureCollection","generation":'
                          + orjson.dumps({"id": ref.id, "label": ref.label})
                          + b',"crs_assumed":' + orjson.dumps(crs) + b',"features":[\n')
            offset = 0
            for pts in read_csv_points(fh, lon_col, lat_col, id_col):
                ids = pts.ids if pts.ids is not None else np.arange(
                    offset + 2, offset + 2 + len(pts))  # the CSV line number
                for cols in resolve_columns(idx, pts.x, pts.y, ids, pts.errors, crs, settings):
                    err = cols["error"] != None  # noqa: E711 - elementwise
                    ins = (cols["inside"] == True) & ~err  # noqa: E712
                    counts["points"] += len(err)
                    counts["errors"] += int(err.sum())
                    counts["inside"] += int(ins.sum())
                    counts["outside"] += int((~ins & ~err).sum())
                    if geojson:
                        feats = encode_json_items(cols, geojson=True)
                        if feats:
                            out.write((b"" if first else b",\n") + b",\n".join(feats))
                    else:
                        out.write(encode_csv(cols, header=first))
                    first = False
                offset += len(pts)
                if progress:
                    new = fh.tell()
                    progress(new - pos)
                    pos = new
            if geojson:
                out.write(b"\n]}\n")
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return counts
