"""Resolve points to the grid chain: one point (GET/POST) and batches (JSON, GeoJSON, CSV)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep
from api.schemas import ResolveIn, ResolveOut
from layers import grids
from layers.resolver import IndexRegistry, Resolved, columns, resolve_points, resolve_rows
from layers.settings import Settings
from spatial import h3index
from spatial.crs import CRSInfo, parse_crs, to_wgs84
from spatial.errors import GridopsError, InvalidInput
from spatial.index import GridIndex

router = APIRouter(tags=["resolve"])

class TooManyPoints(GridopsError):
    """A batch over the configured limit."""

    status = 413
    code = "batch_too_large"


class ServiceUnavailable(GridopsError):
    """Nothing to resolve against yet."""

    status = 503
    code = "no_grid"


def _registry(request: Request) -> IndexRegistry:
    reg: IndexRegistry = request.app.state.indexes
    return reg


def _index(request: Request, session: Session, at: datetime | None,
           generation: int | None) -> GridIndex:
    """The index for the generation a request names (default: the active one)."""
    reg = _registry(request)
    if at is None and generation is None:
        idx = reg.active or reg.refresh()
        if idx is None:
            raise ServiceUnavailable("no active generation: load a grid first (gridops demo)")
        return idx
    gen = grids.generation_at(session, generation=generation, at=at)
    return reg.for_generation(gen)


def _chain(idx: GridIndex, g: int) -> list[dict[str, Any]]:
    return idx.chain(g) if g >= 0 else []


def _answer(idx: GridIndex, r: Resolved, i: int, info: CRSInfo,
            raw: dict[str, Any]) -> dict[str, Any]:
    g = int(r.grid[i])
    chain = _chain(idx, g)
    ref = idx.meta["generation"]
    nearest = None
    if g < 0 and r.nearest[i] >= 0:
        n = int(r.nearest[i])
        nearest = {"code": str(idx.codes[n]), "name": str(idx.names[n]),
                   "distance_m": round(float(r.distance_m[i]), 2)}
    return {
        "inside": g >= 0,
        "grid": chain[-1] if chain else None,
        "chain": chain,
        "nearest": nearest,
        "h3": {"cell": h3index.cell_str(r.cells[i]), "resolution": idx.resolution},
        "wgs84": {"lon": float(r.lon[i]), "lat": float(r.lat[i])},
        "crs": {"key": info.key, "name": info.name},
        "input": raw,
        "generation": {"id": ref.id, "label": ref.label, "activated_at": ref.activated_at},
    }


def _one(request: Request, session: Session, settings: Settings, body: ResolveIn) -> dict:
    info = parse_crs(body.crs)
    names = ("x", "y") if info.projected else ("lon", "lat")
    first = body.x if body.x is not None else body.lon
    second = body.y if body.y is not None else body.lat
    if first is None or second is None:
        missing = names[0] if first is None else names[1]
        raise InvalidInput(f"{missing}: required (give lon and lat, or x and y for a "
                           f"projected CRS)")
    lon, lat, info = to_wgs84(np.array([first]), np.array([second]), body.crs, fields=names)
    idx = _index(request, session, body.at, body.generation)
    r = resolve_points(idx, lon, lat, settings)
    raw = {names[0]: first, names[1]: second, "crs": body.crs}
    return _answer(idx, r, 0, info, raw)


@router.get("/resolve", response_model=ResolveOut)
def resolve_get(
    request: Request, session: SessionDep, settings: SettingsDep,
    lon: Annotated[float | None, Query(description="longitude (or x in metres)")] = None,
    lat: Annotated[float | None, Query(description="latitude (or y in metres)")] = None,
    x: Annotated[float | None, Query()] = None,
    y: Annotated[float | None, Query()] = None,
    crs: Annotated[str, Query(description="EPSG:4326 (default), EPSG:4490, GCJ-02, BD-09, "
                                          "EPSG:4549, ...")] = "EPSG:4326",
    at: Annotated[datetime | None, Query(description="the grid as of this time")] = None,
    generation: Annotated[int | None, Query(ge=1)] = None,
) -> dict:
    """Resolve one point to its grid at every level."""
    body = ResolveIn(lon=lon, lat=lat, x=x, y=y, crs=crs, at=at, generation=generation)
    return _one(request, session, settings, body)


@router.post("/resolve", response_model=ResolveOut)
def resolve_post(request: Request, session: SessionDep, settings: SettingsDep,
                 body: ResolveIn) -> dict:
    """Resolve one point (JSON body) to its grid at every level."""
    return _one(request, session, settings, body)


# ---------------------------------------------------------------- batch


class _Batch:
    """Parsed batch input: coordinates, optional ids, and the output format."""

    def __init__(self) -> None:
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.ids: list[Any] = []
        self.errors: dict[int, str] = {}
        self.kind = "json"

    def add(self, x: Any, y: Any, ident: Any, limit: int, row: str) -> None:
        n = len(self.xs)
        if n >= limit:
            raise TooManyPoints(f"the batch has more than {limit:,} points; the limit is "
                                f"{limit:,} per request (split the input)")
        try:
            fx, fy = float(x), float(y)
        except (TypeError, ValueError):
            self.errors[n] = f"{row}: coordinates are not numbers ({x!r}, {y!r})"
            fx, fy = math.nan, math.nan
        self.xs.append(fx)
        self.ys.append(fy)
        self.ids.append(ident)


async def _read_json(request: Request, limit: int, max_bytes: int) -> _Batch:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise TooManyPoints(f"the request body is over {max_bytes:,} bytes; send at most "
                                f"{limit:,} points, as CSV for the largest batches")
    try:
        data = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"body: not valid JSON ({e})") from None
    b = _Batch()
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        b.kind = "geojson"
        for i, f in enumerate(data.get("features") or []):
            geom = (f or {}).get("geometry") or {}
            if geom.get("type") != "Point" or len(geom.get("coordinates") or []) < 2:
                raise InvalidInput(f"features[{i}]: geometry must be a Point, got "
                                   f"{geom.get('type')!r}")
            c = geom["coordinates"]
            b.add(c[0], c[1], f.get("id", (f.get("properties") or {}).get("id")), limit,
                  f"features[{i}]")
        return b
    if isinstance(data, dict) and "points" in data:
        data = data["points"]
    if not isinstance(data, list):
        raise InvalidInput("body: expected a JSON array of points, {\"points\": [...]}, or a "
                           "GeoJSON FeatureCollection")
    for i, p in enumerate(data):
        if isinstance(p, list | tuple) and len(p) >= 2:
            b.add(p[0], p[1], None, limit, f"[{i}]")
        elif isinstance(p, dict):
            x = p.get("lon", p.get("x"))
            y = p.get("lat", p.get("y"))
            if x is None or y is None:
                raise InvalidInput(f"[{i}]: needs lon and lat (or x and y)")
            b.add(x, y, p.get("id"), limit, f"[{i}]")
        else:
            raise InvalidInput(f"[{i}]: a point is [lon, lat] or {{\"lon\":..,\"lat\":..}}")
    return b


async def _read_csv(request: Request, limit: int, lon_col: str, lat_col: str,
                    id_col: str) -> _Batch:
    b = _Batch()
    b.kind = "csv"
    header: list[str] | None = None
    ix = iy = iid = -1
    pending = b""
    line_no = 0

    def take(lines: list[str]) -> None:
        nonlocal header, ix, iy, iid, line_no
        for rec in csv.reader(lines):
            line_no += 1
            if header is None:
                header = [h.strip() for h in rec]
                for want, alt in ((lon_col, "x"), (lat_col, "y")):
                    if want not in header and alt not in header:
                        raise InvalidInput(f"CSV header: no column {want!r}; columns are "
                                           f"{header} (choose with lon_col/lat_col)")
                ix = header.index(lon_col) if lon_col in header else header.index("x")
                iy = header.index(lat_col) if lat_col in header else header.index("y")
                iid = header.index(id_col) if id_col in header else -1
                continue
            if not rec:
                continue
            if len(rec) <= max(ix, iy):
                raise InvalidInput(f"CSV line {line_no}: {len(rec)} fields, expected "
                                   f"{len(header)}")
            b.add(rec[ix], rec[iy], rec[iid] if iid >= 0 else None, limit,
                  f"line {line_no}")

    async for chunk in request.stream():
        pending += chunk
        cut = pending.rfind(b"\n")
        if cut < 0:
            continue
        block, pending = pending[: cut + 1], pending[cut + 1:]
        take(block.decode("utf-8-sig" if line_no == 0 else "utf-8").splitlines())
    if pending.strip():
        take(pending.decode("utf-8").splitlines())
    if header is None:
        raise InvalidInput("CSV: empty body, expected a header line with lon,lat columns")
    return b


def _stream(idx: GridIndex, b: _Batch, crs: str, settings: Settings) -> Iterator[bytes]:
    ref = idx.meta["generation"]
    if b.kind == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(columns(idx))
        yield buf.getvalue().encode()
        for rows in resolve_rows(idx, b.xs, b.ys, b.ids, b.errors, crs, settings):
            buf = io.StringIO()
            csv.writer(buf).writerows(rows)
            yield buf.getvalue().encode()
        return
    head = {"generation": {"id": ref.id, "label": ref.label},
            "crs": parse_crs(crs).key, "h3_resolution": idx.resolution, "count": len(b.xs)}
    if b.kind == "geojson":
        yield b'{"type":"FeatureCollection",' + orjson.dumps(head)[1:-1] + b',"features":['
    else:
        yield orjson.dumps(head)[:-1] + b',"results":['
    first = True
    cols = columns(idx)
    for rows in resolve_rows(idx, b.xs, b.ys, b.ids, b.errors, crs, settings):
        parts = []
        for row in rows:
            props = dict(zip(cols, row, strict=True))
            if b.kind == "geojson":
                geom = ({"type": "Point", "coordinates": [row[1], row[2]]}
                        if row[1] is not None else None)
                item = {"type": "Feature", "id": row[0], "geometry": geom, "properties": props}
            else:
                item = props
            parts.append(orjson.dumps(item))
        if parts:
            yield (b"" if first else b",") + b",".join(parts)
            first = False
    yield b"]}"


@router.post("/resolve/batch")
async def resolve_batch(
    request: Request, settings: SettingsDep, session: SessionDep,
    crs: Annotated[str, Query(description="CRS of every point")] = "EPSG:4326",
    at: Annotated[datetime | None, Query()] = None,
    generation: Annotated[int | None, Query(ge=1)] = None,
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
        b = await _read_csv(request, limit, lon_col, lat_col, id_col)
        media = "text/csv; charset=utf-8"
    elif ctype in ("application/json", "application/geo+json"):
        b = await _read_json(request, limit, settings.batch_max_bytes)
        media = "application/geo+json" if b.kind == "geojson" else "application/json"
    else:
        raise InvalidInput(f"content-type {ctype!r} is not supported: send application/json, "
                           "application/geo+json or text/csv")
    idx = _index(request, session, at, generation)
    ref = idx.meta["generation"]
    headers = {"X-Gridops-Generation": str(ref.id), "X-Gridops-CRS": parse_crs(crs).key,
               "X-Gridops-Count": str(len(b.xs))}
    return StreamingResponse(_astream(_stream(idx, b, crs, settings)), media_type=media,
                             headers=headers)


async def _astream(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    import anyio

    while True:
        chunk = await anyio.to_thread.run_sync(next, it, None)
        if chunk is None:
            return
        yield chunk
