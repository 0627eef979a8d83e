"""CRUD for every responsibility layer (GeoJSON in and out) and bulk import with a reason
for every refused row. Edits make a new version; deletes retire; history is kept."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.bodies import read_body
from api.deps import (
    CurrentUser,
    SessionDep,
    SettingsDep,
    StaffViewDep,
    WriteSessionDep,
    require,
)
from api.geojson import GeoJSONResponse, json_response
from api.params import BboxDep
from api.routing import CheckedRoute, reads
from api.schemas.common import Timestamp, errors, geojson
from api.schemas.layers import (
    ImportReportOut,
    LayerFeature,
    LayerFeatureCollection,
    LayerInfo,
    LayerItems,
    LayerRowOut,
    LayerVersions,
    RetiredOut,
)
from layers import responsibility as resp
from layers.disclosure import StaffView
from layers.workflow import CENTRE, PLANNER
from spatial.errors import InvalidInput

router = APIRouter(route_class=CheckedRoute, tags=["layers"])

FILTERS: dict[str, tuple[str, ...]] = {
    "departments": ("tier", "parent_code"),
    "categories": ("kind", "major_code", "owner_rule", "default_department"),
    "assets": ("kind", "category_code", "owner_department", "maintainer_department",
               "state", "grid_code"),
    "areas": ("kind", "owner_department"),
    "zones": ("layer", "department_code"),
    "teams": ("department_code",),
    "assignments": ("grid_code", "team_code", "shift"),
    "roles": ("grid_code", "role", "department_code"),
}
INT_FIELDS = {"tier"}


def _feature(session: Any, d: resp.LayerDef, row: Any, geo: dict[int, Any] | None = None,
             staff: StaffView | None = None) -> dict[str, Any]:
    props = resp.as_dict(d, row) if staff is None else staff.layer_row(d.name,
                                                                        resp.as_dict(d, row))
    if not d.geometry:
        return props
    geo = geo if geo is not None else resp.geojson_of(session, d, [row])
    return {"type": "Feature", "id": "/".join(str(props[k]) for k in d.key),
            "geometry": geo.get(row.id), "properties": props}


def _split(d: resp.LayerDef, key: str) -> list[str]:
    parts = key.split("/")
    if len(parts) != len(d.key):
        raise InvalidInput(f"{d.name}: the path names {'/'.join(d.key)}, got {key!r}")
    return parts


def _props_geometry(d: resp.LayerDef, payload: Any) -> tuple[dict[str, Any], Any]:
    """A Feature -> (properties, geometry); a plain object -> (itself, None)."""
    if not isinstance(payload, dict):
        raise InvalidInput("body: expected a JSON object (or a GeoJSON Feature)")
    if payload.get("type") == "Feature":
        return dict(payload.get("properties") or {}), payload.get("geometry")
    return payload, None


def _rows_from_upload(d: resp.LayerDef, raw: bytes, ctype: str
                      ) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """(line, fields, geometry) from a GeoJSON FeatureCollection or a CSV upload."""
    if ctype in ("text/csv", "application/csv"):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InvalidInput(f"CSV: not UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                               f"{e.start:,}); save the file as UTF-8 (a GBK file: "
                               "iconv -f GBK -t UTF-8)") from None
        reader = csv.DictReader(io.StringIO(text))
        for i, rec in enumerate(reader, start=2):
            fields: dict[str, Any] = {k: v for k, v in rec.items() if k and v not in ("", None)}
            geom = None
            if d.geometry:
                if "lon" in fields and "lat" in fields:
                    try:
                        geom = {"type": "Point", "coordinates": [float(fields.pop("lon")),
                                                                 float(fields.pop("lat"))]}
                    except ValueError:
                        geom = {"type": "Point", "coordinates": "not numbers"}
                elif "geometry" in fields:
                    geom = _wkt_geojson(fields.pop("geometry"))
            for k in ("area_kinds", "applies_to", "weekdays"):
                if k in fields and isinstance(fields[k], str):
                    fields[k] = [x for x in fields[k].split("|") if x]
            for k in ("members", "attributes"):
                if k in fields and isinstance(fields[k], str):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        fields[k] = orjson.loads(fields[k])
            yield i, fields, geom
        return
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"body: not valid JSON ({e})") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        for i, f in enumerate(data.get("features") or [], start=1):
            if not isinstance(f, dict):
                yield i, {}, None
                continue
            props = f.get("properties")
            yield i, dict(props) if isinstance(props, dict) else {}, f.get("geometry")
        return
    if isinstance(data, list):
        for i, item in enumerate(data, start=1):
            props, geom = _props_geometry(d, item) if isinstance(item, dict) else ({}, None)
            yield i, props, geom
        return
    raise InvalidInput("body: expected a GeoJSON FeatureCollection, a JSON array or CSV")


def _wkt_geojson(wkt: str) -> Any:
    import shapely

    try:
        return orjson.loads(shapely.to_geojson(shapely.from_wkt(wkt)))
    except shapely.errors.GEOSException as e:
        return {"type": "Invalid", "coordinates": str(e)}


@router.get("/layers", response_model=dict[str, LayerInfo])
def list_layers() -> dict[str, Any]:
    """The responsibility layers and how they are keyed."""
    return {n: {"title": d.title, "key": list(d.key), "geometry": list(d.geometry),
                "filters": list(FILTERS[n])} for n, d in resp.LAYERS.items()}


@router.get("/layers/{name}", response_model=LayerItems, responses={
    200: {"description": "Spatial layers: GeoJSON; the others: JSON",
          **geojson(LayerFeatureCollection)},
    **errors(404, 422, 503)})
def list_layer(
    name: str, request: Request, session: SessionDep, settings: SettingsDep, box: BboxDep,
    staff: StaffViewDep,
    at: Annotated[Timestamp | None, Query(description="rows valid at this time")] = None,
    limit: Annotated[int, Query(ge=1)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Rows of a layer valid at a time: GeoJSON for spatial layers, else a JSON list.
    Filter by any field listed in GET /layers (e.g. ?owner_department=SW-GS)."""
    d = resp.layer(name)
    if limit > settings.page_size_max:
        raise InvalidInput(f"limit: at most {settings.page_size_max} per page, got {limit}")
    filters: dict[str, Any] = {}
    for k in FILTERS[name]:
        v = request.query_params.get(k)
        if v is not None:
            if k in INT_FIELDS:
                try:
                    filters[k] = int(v)
                except ValueError:
                    raise InvalidInput(f"{k}: {v[:40]!r} is not a whole number") from None
                if not -2**31 <= filters[k] < 2**31:
                    raise InvalidInput(f"{k}: {filters[k]} is out of range")
            else:
                filters[k] = v
    unknown = set(request.query_params) - {*FILTERS[name], "at", "bbox", "limit", "offset"}
    if unknown:
        raise InvalidInput(f"unknown filter(s) {sorted(unknown)} for {name}; filters are "
                           f"{list(FILTERS[name])}")
    rows, total = resp.list_rows(session, d, at=at, bbox=box, filters=filters, limit=limit,
                                 offset=offset)
    head = {"numberMatched": total, "numberReturned": len(rows), "layer": name}
    if d.geometry:
        geo = resp.geojson_of(session, d, rows)
        return GeoJSONResponse({"type": "FeatureCollection", **head,
                                "features": [_feature(session, d, r, geo, staff)
                                             for r in rows]})
    return json_response({**head, "items": [_feature(session, d, r, staff=staff)
                                            for r in rows]})


@router.post("/layers/{name}/import", response_model=ImportReportOut,
             responses=errors(401, 403, 404, 409, 413, 415, 422, 503),
             openapi_extra=reads("application/json", "application/geo+json", "text/csv",
                                "application/csv", limit="upload_max_bytes"))
async def import_layer(name: str, request: Request, session: WriteSessionDep,
                       settings: SettingsDep, user: CurrentUser) -> Response:
    """Bulk import: a GeoJSON FeatureCollection, a JSON array, or CSV (lon,lat columns or a
    WKT `geometry` column). Every refused row is reported with its line and reason; the
    valid rows are created."""
    d = resp.layer(name)
    require(user, PLANNER, CENTRE)
    raw = await read_body(request, settings.upload_max_bytes, "split it")
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    actor = _actor(request)
    # parsing and inserting thousands of rows: in a worker thread, the loop keeps serving
    report = await anyio.to_thread.run_sync(
        lambda: resp.import_rows(session, d, _rows_from_upload(d, raw, ctype), actor=actor))
    return json_response(report.as_dict(), status=200)


@router.post("/layers/{name}", status_code=201, response_model=LayerFeature | LayerRowOut,
             responses=errors(401, 403, 404, 409, 413, 415, 422, 503),
             openapi_extra=reads("application/json", "application/geo+json",
                                limit="upload_max_bytes"))
async def create_row(name: str, request: Request, session: WriteSessionDep,
                     settings: SettingsDep, user: CurrentUser) -> Response:
    """Create a row: a GeoJSON Feature for spatial layers, else a JSON object."""
    d = resp.layer(name)
    require(user, PLANNER, CENTRE)
    raw = await read_body(request, settings.upload_max_bytes, "split it")
    props, geom = _props_geometry(d, _parse(raw))
    row = resp.create(session, d, props, geom, actor=_actor(request))
    return json_response(_feature(session, d, row), status=201)


@router.get("/layers/{name}/{key:path}/history", response_model=LayerVersions,
            responses=errors(404, 422, 503))
def row_history(name: str, key: str, session: SessionDep, staff: StaffViewDep) -> Response:
    """Every version of a row, oldest first."""
    d = resp.layer(name)
    rows = resp.history(session, d, _split(d, key))
    geo = resp.geojson_of(session, d, rows)
    return json_response({"layer": name, "key": key,
                  "versions": [_feature(session, d, r, geo, staff) for r in rows]})


@router.get("/layers/{name}/{key:path}", response_model=LayerFeature | LayerRowOut,
            responses=errors(404, 422, 503))
def get_row(name: str, key: str, session: SessionDep, staff: StaffViewDep,
            at: Annotated[Timestamp | None, Query()] = None) -> Response:
    """One row as valid now or at a time."""
    d = resp.layer(name)
    return json_response(_feature(session, d, resp.get(session, d, _split(d, key), at),
                                  staff=staff))


@router.put("/layers/{name}/{key:path}", response_model=LayerFeature | LayerRowOut,
            responses=errors(401, 403, 404, 409, 413, 415, 422, 503),
            openapi_extra=reads("application/json", "application/geo+json",
                               limit="upload_max_bytes"))
async def update_row(name: str, key: str, request: Request, session: WriteSessionDep,
                     settings: SettingsDep, user: CurrentUser) -> Response:
    """Change a row: the current version ends, a new one starts (give only what changes)."""
    d = resp.layer(name)
    require(user, PLANNER, CENTRE)
    raw = await read_body(request, settings.upload_max_bytes, "split it")
    props, geom = _props_geometry(d, _parse(raw))
    row = resp.update(session, d, _split(d, key), props, geom, actor=_actor(request))
    return json_response(_feature(session, d, row))


@router.delete("/layers/{name}/{key:path}", response_model=RetiredOut,
               responses=errors(401, 403, 404, 422, 503))
def retire_row(name: str, key: str, request: Request, session: WriteSessionDep,
               user: CurrentUser) -> Response:
    """Retire a row now (its history stays)."""
    d = resp.layer(name)
    require(user, PLANNER, CENTRE)
    row = resp.retire(session, d, _split(d, key), actor=_actor(request))
    return json_response({"retired": key, "valid_to": row.valid_to})


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"body: not valid JSON ({e})") from None


def _actor(request: Request) -> str:
    return str(request.state.user_name) if hasattr(request.state, "user_name") else "api"
