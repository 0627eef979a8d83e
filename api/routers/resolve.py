"""Resolve points to the grid chain: one point (GET/POST) and batches (JSON, GeoJSON, CSV)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import IO, Annotated

import anyio
import numpy as np
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Scope, Send

from api.bodies import limited_stream
from api.deps import IndexesDep, ServicesDep, SettingsDep
from api.params import At, Crs, GenerationParam
from api.routing import CheckedRoute, media_type, reads
from api.schemas.common import CSV, CSV_CONTENT, GEOJSON, errors, media
from api.schemas.resolve import BatchFeatureCollection, BatchOut, ResolveIn, ResolveOut
from api.visibility import readable_index
from layers.batch_io import (
    Points,
    encode_csv,
    encode_json_items,
    read_csv_batch,
    read_json_points,
)
from layers.resolution import point_answer_json
from layers.resolver import IndexRegistry, columns, resolve_columns
from layers.settings import Settings
from spatial.crs import parse_crs, to_wgs84
from spatial.errors import InvalidInput
from spatial.index import GridIndex

router = APIRouter(route_class=CheckedRoute, tags=["resolve"])

async def _one(request: Request, services: ServicesDep, indexes: IndexRegistry,
               body: ResolveIn) -> Response:
    info = parse_crs(body.crs)
    names = ("x", "y") if info.projected else ("lon", "lat")
    first = body.x if body.x is not None else body.lon
    second = body.y if body.y is not None else body.lat
    if first is None or second is None:
        missing = names[0] if first is None else names[1]
        raise InvalidInput(f"{missing}: required (give lon and lat, or x and y for a "
                           f"projected CRS)")
    lon, lat, info = to_wgs84(np.array([first]), np.array([second]), body.crs, fields=names)
    # a draft only for a planner or centre token (api.visibility: a draft never leaks)
    idx = await readable_index(request, services, indexes, body.at, body.generation)
    raw = {names[0]: first, names[1]: second, "crs": body.crs}
    return Response(point_answer_json(idx, float(lon[0]), float(lat[0]), info, raw),
                    media_type="application/json")


@router.get("/resolve", response_model=ResolveOut, responses=errors(401, 404, 422, 503))
async def resolve_get(
    request: Request, services: ServicesDep, indexes: IndexesDep,
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
    return await _one(request, services, indexes, body)


@router.post("/resolve", response_model=ResolveOut, responses=errors(401, 404, 422, 503))
async def resolve_post(request: Request, services: ServicesDep, indexes: IndexesDep,
                       body: ResolveIn) -> Response:
    """Resolve one point (JSON body) to its grid at every level."""
    return await _one(request, services, indexes, body)


# ---------------------------------------------------------------- the fast path

# a decimal number both Python's float() and pydantic read alike: no sign but a leading '-',
# no '+' (a space in a query string), no underscores, spaces, percent escapes, nan or inf
_NUMBER = re.compile(rb"-?[0-9]{1,20}(?:\.[0-9]{1,30})?(?:[eE]-?[0-9]{1,3})?")
_WGS84 = parse_crs("EPSG:4326")
_JSON = b"application/json"


def _plain_lonlat(qs: bytes) -> tuple[float, float] | None:
    """lon and lat of a query string that is exactly `lon=<number>&lat=<number>` (either
    order; plain decimals, finite and in range); None for anything else."""
    a, sep, b = qs.partition(b"&")
    if not sep or len(qs) > 120:
        return None
    ka, _, va = a.partition(b"=")
    kb, _, vb = b.partition(b"=")
    if ka == b"lat" and kb == b"lon":
        va, vb = vb, va
    elif ka != b"lon" or kb != b"lat":
        return None
    if _NUMBER.fullmatch(va) is None or _NUMBER.fullmatch(vb) is None:
        return None
    lon, lat = float(va), float(vb)
    if not (abs(lon) <= 180.0 and abs(lat) <= 90.0):  # inf too (1e999)
        return None
    return lon, lat


class ResolveFastPath:
    """`GET /resolve?lon=..&lat=..` (the hot path: WGS84, the active grid, nothing else
    asked) answered straight from the index, ahead of FastAPI's middleware, routing,
    dependencies and validation (api.app.GridopsAPI calls `handle` first). The answer is
    the route's own: the same point_answer_json, the same headers. Any other request, and
    any such one this cannot answer (an error to report, no active grid yet, another
    parameter, an unusual spelling, anything raised), is left to the app, which answers it
    as it always does; the route above stays what the OpenAPI document describes."""

    def __init__(self, indexes: IndexRegistry) -> None:
        self.indexes = indexes

    async def handle(self, scope: Scope, send: Send) -> bool:
        """Answer the request if it is the hot path's (True), else leave it (False)."""
        if (scope["path"] != "/resolve" or scope["method"] != "GET"
                or scope.get("root_path")):
            return False
        try:
            body = self.answer(scope["query_string"])
        except Exception:  # the route will say what it is
            return False
        if body is None:
            return False
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]})
        await send({"type": "http.response.body", "body": body})
        return True

    def answer(self, qs: bytes) -> bytes | None:
        """The answer's body, or None when the full route must answer."""
        idx = self.indexes.active
        if idx is None:
            return None
        point = _plain_lonlat(qs)
        if point is None:
            return None
        lon, lat = point
        return point_answer_json(idx, lon, lat, _WGS84,
                                 {"lon": lon, "lat": lat, "crs": "EPSG:4326"})


# ---------------------------------------------------------------- batch


async def _spooled(request: Request, max_bytes: int, hint: str) -> IO[bytes]:
    """The body in a spooled file (memory up to 32 MB, then disk), read within the limit."""
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115
    try:
        async for chunk in limited_stream(request, max_bytes, hint):
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


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
    **errors(401, 404, 413, 415, 422, 503)},
    openapi_extra=reads("application/json", "application/geo+json", "text/csv",
                       "application/csv", limit="batch_max_bytes"))
async def resolve_batch(
    request: Request, settings: SettingsDep, services: ServicesDep, indexes: IndexesDep,
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
    kind_in = media_type(request) or "application/json"
    hint = f"send at most {limit:,} points, as CSV for the largest batches"
    # the body is parsed a row at a time in a worker thread: the loop keeps serving others
    with await _spooled(request, settings.batch_max_bytes, hint) as spool:
        if kind_in in ("text/csv", "application/csv"):
            pts = await anyio.to_thread.run_sync(read_csv_batch, spool, limit, lon_col,
                                                 lat_col, id_col)
            kind, media = "csv", "text/csv; charset=utf-8"
        else:
            pts, kind = await anyio.to_thread.run_sync(read_json_points, spool, limit)
            media = "application/geo+json" if kind == "geojson" else "application/json"
    idx = await readable_index(request, services, indexes, at, generation)
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
