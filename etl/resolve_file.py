"""Resolve a CSV file of points of any size in bounded memory, to CSV or GeoJSON."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import orjson

from layers.batch_io import (
    CsvLayout,
    Fragments,
    Points,
    encode_answers_csv,
    encode_json_items,
    int_fields,
    read_csv_points,
)
from layers.resolver import columns, resolve_chunks, resolve_columns
from layers.settings import Settings
from spatial.index import GridIndex

CHUNK = 50_000  # rows resolved and encoded as one task
WORKERS = min(2, os.cpu_count() or 1)  # tasks at once
IN_FLIGHT = 2 * WORKERS  # tasks submitted and not yet written (bounds the memory)


def resolve_file(idx: GridIndex, src: Path, dst: Path, *, lon_col: str, lat_col: str,
                 id_col: str | None, crs: str, settings: Settings,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Stream src (CSV) through the index into dst (.csv or .geojson); returns counts.

    Written to dst.part first and renamed at the end, so a failed run leaves no half file.
    CSV answers are written by the compiled encoder straight from the grid indexes (ids
    copied from the input's bytes), chunks resolved and encoded by WORKERS threads (the
    compiled parts and numpy let go of the GIL) and written in order; GeoJSON goes through
    the answer columns."""
    geojson = dst.suffix.lower() in (".geojson", ".json")
    counts = {"points": 0, "inside": 0, "outside": 0, "errors": 0}
    tmp = dst.with_name(dst.name + ".part")
    first = True
    pos = 0
    pending: deque[Future[tuple[np.ndarray, dict[str, int]]]] = deque()
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="resolve")
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
                    for a in range(0, len(pts), CHUNK):
                        pending.append(pool.submit(_csv_chunk, idx, layout, pts, ids, a,
                                                   crs, settings, offset + 1))
                        while len(pending) > IN_FLIGHT:
                            _collect(pending.popleft(), out, counts)
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
            while pending:
                _collect(pending.popleft(), out, counts)
            if geojson:
                out.write(b"\n]}\n")
        os.replace(tmp, dst)
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)
        if tmp.exists():
            tmp.unlink()
    return counts


def _csv_chunk(idx: GridIndex, layout: CsvLayout, pts: Points, ids: Fragments, a: int,
               crs: str, settings: Settings, first_row: int
               ) -> tuple[np.ndarray, dict[str, int]]:
    """Rows a .. a + CHUNK of a block, resolved and encoded (in a worker thread)."""
    b = min(a + CHUNK, len(pts))
    errors = {k - a: v for k, v in pts.errors.items() if a <= k < b}
    parts: list[np.ndarray] = []
    counts = {"points": 0, "inside": 0, "outside": 0, "errors": 0}
    for start, r, ok, errs in resolve_chunks(idx, pts.x[a:b], pts.y[a:b], errors, crs,
                                             settings, first_row=first_row + a):
        n = len(ok)
        ins = ok & (r.grid >= 0)
        counts["points"] += n
        counts["errors"] += n - int(ok.sum())
        counts["inside"] += int(ins.sum())
        counts["outside"] += int((ok & ~ins).sum())
        parts.append(encode_answers_csv(layout, ids[a + start:a + start + n], r.lon, r.lat,
                                        ok, r.grid, r.cells, r.nearest, r.distance_m, errs))
    return np.concatenate(parts), counts  # a copy the size of the text, not the estimate


def _collect(f: Future[tuple[np.ndarray, dict[str, int]]], out: IO[bytes],
             counts: dict[str, int]) -> None:
    data, c = f.result()
    out.write(data.data)
    for k, v in c.items():
        counts[k] += v
