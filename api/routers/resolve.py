"""Resolve points to the grid chain: one point (GET/POST) and batches (JSON, GeoJSON, CSV)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import numpy as np
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from api.bodies import limited_stream, read_body
from api.deps import IndexesDep, SettingsDep
from api.params import At, Crs, GenerationParam, get_index
from api.schemas.common import CSV, CSV_CONTENT, GEOJSON, ValidationErrorOut, errors, media
from api.schemas.resolve import BatchFeatureCollection, BatchOut, ResolveIn, ResolveOut
from layers.batch_io import Points, encode_csv, encode_json_items, read_csv_points
from layers.resolution import nearest_grid
from layers.resolver import IndexRegistry, columns, resolve_columns
from layers.settings import Settings
from spatial import h3index
from spatial.crs import CRSInfo, parse_crs, to_wgs84
from spatial.errors import InvalidInput, TooLarge
from spatial.index import GridIndex

router = APIRouter(tags=["resolve"])

def _answer_one(idx: GridIndex, lon: float, lat: float, info: CRSInfo,
                raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    g, cell = idx.lookup_one(lon, lat)
    chain = idx.chain(g) if g >= 0 else []
    ref = idx.meta["generation"]
    nearest = None if g >= 0 else nearest_grid(idx, lon, lat)
    return {
        "inside": g >= 0,
        "grid": chain[-1] if chain else None,
        "chain": chain,
        "nearest": nearest,
        "h3": {"cell": h3index.cell_str(cell), "resolution": idx.resolution},
        "wgs84": {"lon": lon, "lat": lat},
        "crs": {"key": info.key, "name": info.name},
        "input": raw,
        "generation": {"id": ref.id, "label": ref.label,
                       "activated_at": ref.activated_at.isoformat() if ref.activated_at
                       else None},
    }


async def _one(indexes: IndexRegistry, settings: Settings, body: ResolveIn) -> Response:
    info = parse_crs(body.crs)
    names = ("x", "y") if info.projected else ("lon", "lat")
    first = body.x if body.x is not None else body.lon
    second = body.y if body.y is not None else body.lat
    if first is None or second is None:
        missing = names[0] if first is None else names[1]
        raise InvalidInput(f"{missing}: required (give lon and lat, or x and y for a "
                           f"projected CRS)")
    lon, lat, info = to_wgs84(np.array([first]), np.array([second]), body.crs, fields=names)
    idx = await get_index(indexes, body.at, body.generation)
    raw = {names[0]: first, names[1]: second, "crs": body.crs}
    answer = _answer_one(idx, float(lon[0]), float(lat[0]), info, raw, settings)
    return Response(orjson.dumps(answer), media_type="application/json")


@router.get("/resolve", response_model=ResolveOut, responses=errors(404, 422, 503))
async def resolve_get(
    indexes: IndexesDep, settings: SettingsDep,
    lon: Annotated[float | None, Query(description="longitude (or x in metres)")] = None,
    lat: Annotated[float | None, Query(description="latitude (or y in metres)")] = None,
    x: Annotated[float | None, Query()] = None,
    y: Annotated[float | None, Query()] = None,
    crs: Crs = "EPSG:4326",
    at: At = None,
    generation: GenerationParam = None,
) -> Response:
    """Resolve one point to its grid at every level (in memory: microseconds)."""
    body = ResolveIn(lon=lon, lat=lat, x=x, y=y, crs=crs, at=at, generation=generation)
    return await _one(indexes, settings, body)


@router.post("/resolve", response_model=ResolveOut, responses=errors(404, 422, 503))
async def resolve_post(indexes: IndexesDep, settings: SettingsDep, body: ResolveIn) -> Response:
    """Resolve one point (JSON body) to its grid at every level."""
    return await _one(indexes, settings, body)


# ---------------------------------------------------------------- batch


async def _read_json(request: Request, limit: int, max_bytes: int) -> tuple[Points, str]:
    """A JSON array of [lon, lat] / {"lon", "lat", "id"}, or a FeatureCollection of Points."""
    body = await read_body(request, max_bytes, f"send at most {limit:,} points, as CSV for "
                                               "the largest batches")
    try:
        data = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"body: not valid JSON ({e})") from None
    kind = "json"
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        kind = "geojson"
        feats = data.get("features") or []
        _check_limit(len(feats), limit)
        xy, ids = [], []
        for i, f in enumerate(feats):
            geom = (f or {}).get("geometry") or {}
            c = geom.get("coordinates") or []
            if geom.get("type") != "Point" or len(c) < 2:
                raise InvalidInput(f"features[{i}]: geometry must be a Point, got "
                                   f"{geom.get('type')!r}")
            xy.append(c[:2])
            ids.append(f.get("id", (f.get("properties") or {}).get("id")))
        return _points(xy, ids), kind
    if isinstance(data, dict) and "points" in data:
        data = data["points"]
    if not isinstance(data, list):
        raise InvalidInput("body: expected a JSON array of points, {\"points\": [...]}, or a "
                           "GeoJSON FeatureCollection")
    _check_limit(len(data), limit)
    if all(isinstance(p, list) for p in data):
        bad = next((i for i, p in enumerate(data) if len(p) < 2), None)
        if bad is not None:
            raise InvalidInput(f"[{bad}]: a point is [lon, lat]")
        return _points([p[:2] for p in data], None), kind
    xy, ids = [], []
    for i, p in enumerate(data):
        if not isinstance(p, dict):
            raise InvalidInput(f"[{i}]: a point is [lon, lat] or {{\"lon\":..,\"lat\":..}}")
        x, y = p.get("lon", p.get("x")), p.get("lat", p.get("y"))
        if x is None or y is None:
            raise InvalidInput(f"[{i}]: needs lon and lat (or x and y)")
        xy.append([x, y])
        ids.append(p.get("id"))
    return _points(xy, ids), kind


def _points(xy: list[Any], ids: list[Any] | None) -> Points:
    """Coordinates to float arrays; non-numbers become NaN with a per-row error."""
    errors: dict[int, str] = {}
    try:
        arr = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        arr = np.full((len(xy), 2), np.nan)
        for i, (x, y) in enumerate(xy):
            try:
                arr[i] = (float(x), float(y))
            except (TypeError, ValueError):
                errors[i] = f"[{i}]: coordinates are not numbers ({x!r}, {y!r})"
    return Points(arr[:, 0].copy(), arr[:, 1].copy(),
                  np.asarray(ids, dtype=object) if ids is not None else None, errors)


def _check_limit(n: int, limit: int) -> None:
    if n > limit:
        raise TooLarge(f"the batch has {n:,} points; the limit is {limit:,} per request "
                            "(split the input)")


async def _read_csv(request: Request, limit: int, max_bytes: int, lon_col: str, lat_col: str,
                    id_col: str) -> Points:
    """CSV streamed to a spooled file (memory-bounded), then parsed in chunks."""
    with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as spool:
        async for chunk in limited_stream(request, max_bytes):
            spool.write(chunk)
        spool.seek(0)
        parts: list[Points] = []
        n = 0
        for pts in read_csv_points(spool, lon_col, lat_col, id_col):
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
                  np.concatenate([p.ids for p in parts if p.ids is not None]) if has_ids else None,
                  errors)


def _stream(idx: GridIndex, pts: Points, kind: str, crs: str,
            settings: Settings) -> Iterator[bytes]:
    """The answer, a chunk at a time, in the family of the input format."""
    ref = idx.meta["generation"]
    ids = pts.ids if pts.ids is not None else np.arange(len(pts))
    chunks = resolve_columns(idx, pts.x, pts.y, ids, pts.errors, crs, settings)
    if kind == "csv":
        first = True
        for cols in chunks:
            yield encode_csv(cols, header=first)
            first = False
        if first:
            yield (",".join(columns(idx)) + "\n").encode()
        return
    head = {"generation": {"id": ref.id, "label": ref.label},
            "crs": parse_crs(crs).key, "h3_resolution": idx.resolution, "count": len(pts)}
    if kind == "geojson":
        yield b'{"type":"FeatureCollection",' + orjson.dumps(head)[1:-1] + b',"features":['
    else:
        yield orjson.dumps(head)[:-1] + b',"results":['
    first = True
    for cols in chunks:
        items = encode_json_items(cols, geojson=kind == "geojson")
        if items:
            yield (b"" if first else b",") + b",".join(items)
            first = False
    yield b"]}"


@router.post("/resolve/batch", response_model=BatchOut, responses={
    200: {"description": "JSON for a JSON array, GeoJSON for a FeatureCollection, CSV for "
                         "CSV (the answer is streamed)",
          "content": {GEOJSON: media(BatchFeatureCollection), CSV: CSV_CONTENT}},
    **errors(404, 413, 503),
    422: {"model": ValidationErrorOut,
          "description": "Invalid input, and a content-type other than application/json, "
                         "application/geo+json or text/csv (code invalid_input)"}})
async def resolve_batch(
    request: Request, settings: SettingsDep, indexes: IndexesDep,
    crs: Annotated[str, Query(description="CRS of every point")] = "EPSG:4326",
    at: At = None,
    generation: GenerationParam = None,
    lon_col: Annotated[str, Query(description="CSV column of lon (or x)")] = "lon",
    lat_col: Annotated[str, Query(description="CSV column of lat (or y)")] = "lat",
    id_col: Annotated[str, Query(description="CSV column passed through as id")] = "id",
) -> StreamingResponse:
    """Resolve up to `batch_max_points` points: a JSON array, a GeoJSON FeatureCollection of
    Points, or CSV (text/csv). The answer is streamed in the same family of format."""
    parse_crs(crs)
    limit = settings.batch_max_points
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if ctype in ("text/csv", "application/csv"):
        pts = await _read_csv(request, limit, settings.batch_max_bytes, lon_col, lat_col,
                              id_col)
        kind, media = "csv", "text/csv; charset=utf-8"
    elif ctype in ("application/json", "application/geo+json"):
        pts, kind = await _read_json(request, limit, settings.batch_max_bytes)
        media = "application/geo+json" if kind == "geojson" else "application/json"
    else:
        raise InvalidInput(f"content-type {ctype!r} is not supported: send application/json, "
                           "application/geo+json or text/csv")
    idx = await get_index(indexes, at, generation)
    ref = idx.meta["generation"]
    headers = {"X-Gridops-Generation": str(ref.id), "X-Gridops-CRS": parse_crs(crs).key,
               "X-Gridops-Count": str(len(pts))}
    return StreamingResponse(_astream(_stream(idx, pts, kind, crs, settings)), media_type=media,
                             headers=headers)


async def _astream(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    while True:
        chunk = await anyio.to_thread.run_sync(next, it, None)
        if chunk is None:
            return
        yield chunk
