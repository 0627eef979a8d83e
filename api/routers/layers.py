"""CRUD for every responsibility layer (GeoJSON in and out) and bulk import with a reason
for every refused row. Edits make a new version; deletes retire; history is kept."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import anyio
import numpy as np
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.bodies import parse_json, read_body
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
from api.schemas.common import CSV, GEOJSON, Timestamp, errors, media
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
from layers import gisfile, layer_files
from layers import responsibility as resp
from layers.disclosure import StaffView
from layers.workflow import CENTRE, PLANNER
from spatial.errors import InvalidInput, UnsupportedMediaType

router = APIRouter(route_class=CheckedRoute, tags=["layers"])

ExportFormat = Literal["gpkg", "shp", "geojson", "fgb", "csv"]  # gisfile.FORMATS

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


CSV_GEOMETRY = ("WKT", "wkt", "geometry", "geom", "the_geom")  # a WKT column, as exported


def _rows_from_upload(d: resp.LayerDef, raw: bytes, ctype: str, encoding: str | None = None,
                      crs: str | None = None) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """(line, fields, geometry) from a GeoJSON FeatureCollection, a JSON array or a CSV
    upload; geometries given in `crs` are converted to lon/lat."""
    rows = _parsed_upload(d, raw, ctype, encoding)
    if crs is None and ctype not in ("text/csv", "application/csv"):
        crs = _declared_crs(raw)
    for line, fields, geom in rows:
        fields = layer_files.coerce_fields(d, fields)
        if crs is not None and isinstance(geom, dict):
            geom = _converted(geom, crs, line)
        yield line, fields, geom


def _declared_crs(raw: bytes) -> str | None:
    """The named CRS of a GeoJSON FeatureCollection (the 2008 `crs` member GDAL writes)."""
    head = raw[:4096]
    if b'"crs"' not in head:
        return None
    try:
        name = orjson.loads(raw).get("crs", {}).get("properties", {}).get("name")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(name, str):
        return None
    if "EPSG::" in name:  # urn:ogc:def:crs:EPSG::4549
        return "EPSG:" + name.rsplit("::", 1)[1]
    return None if name.endswith("CRS84") else name


def _converted(geom: dict[str, Any], crs: str, line: int) -> Any:
    import shapely

    try:
        g = shapely.geometry.shape(geom)
    except Exception:
        return geom  # refused by the row check, with its reason
    try:
        return gisfile.to_lonlat(np.array([g], dtype=object), crs, f"line {line}")[0]
    except InvalidInput as e:
        return {"type": "Invalid", "coordinates": e.detail}


def _parsed_upload(d: resp.LayerDef, raw: bytes, ctype: str, encoding: str | None
                   ) -> Iterator[tuple[int, dict[str, Any], Any]]:
    if ctype in ("text/csv", "application/csv"):
        enc = encoding or "utf-8-sig"
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as e:
            raise InvalidInput(f"CSV: not {encoding or 'UTF-8'} (byte 0x{raw[e.start]:02x} at "
                               f"offset {e.start:,}); give its encoding= (GBK, GB18030) or "
                               "save the file as UTF-8") from None
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
                else:
                    col = next((c for c in CSV_GEOMETRY if c in fields), None)
                    if col is not None:
                        geom = _wkt_geojson(fields.pop(col))
            else:
                for c in CSV_GEOMETRY:  # an exported attribute table has none
                    fields.pop(c, None)
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


FILE_CONTENT = {"schema": {"type": "string", "format": "binary"}}
EXPORT_MEDIA = {m: FILE_CONTENT for f, m in gisfile.MEDIA_TYPES.items()
                if m not in (GEOJSON, CSV)}
EXPORT_SUFFIX = {f: ".zip" if f == "shp" else gisfile.FORMATS[f][1] for f in gisfile.FORMATS}


@router.get("/layers/{name}", response_model=LayerItems, responses={
    200: {"description": "Spatial layers: GeoJSON; the others: JSON. With f=: the layer as a "
                         "file (an attachment; a Shapefile is a .zip of its parts)",
          "content": {GEOJSON: {"schema": {"anyOf": [
              media(LayerFeatureCollection)["schema"],
              {"type": "object", "required": ["type", "features"], "description":
               "f=geojson: the layer's file (a FeatureCollection of its fields)"}]}},
              CSV: {"schema": {"type": "string"}}, **EXPORT_MEDIA}},
    **errors(404, 422, 503)})
def list_layer(
    name: str, request: Request, session: SessionDep, settings: SettingsDep, box: BboxDep,
    staff: StaffViewDep,
    at: Annotated[Timestamp | None, Query(description="rows valid at this time")] = None,
    limit: Annotated[int, Query(ge=1)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    f: Annotated[ExportFormat | None, Query(
        description="answer every matching row as a file of this format (limit and offset "
        "do not apply): gpkg, shp (zipped), geojson, fgb, csv (WKT)")] = None,
    crs: Annotated[str | None, Query(
        description="with f=: the file's coordinate reference system (default EPSG:4326)",
        max_length=200)] = None,
) -> Response:
    """Rows of a layer valid at a time: GeoJSON for spatial layers, else a JSON list; or,
    with f=, all of them as a GeoPackage, Shapefile (zip), GeoJSON, FlatGeobuf or CSV file
    that POST /layers/{name}/import reads back unchanged.
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
    unknown = set(request.query_params) - {*FILTERS[name], "at", "bbox", "limit", "offset",
                                           "f", "crs"}
    if unknown:
        raise InvalidInput(f"unknown filter(s) {sorted(unknown)} for {name}; filters are "
                           f"{list(FILTERS[name])}")
    if f is not None:
        data = layer_files.export_layer(session, d, f, at=at, bbox=box, filters=filters,
                                        crs=crs, shown=lambda r: staff.layer_row(name, r))
        return Response(data, media_type=gisfile.MEDIA_TYPES[f], headers={
            "content-disposition": f'attachment; filename="{name}{EXPORT_SUFFIX[f]}"'})
    if crs is not None:
        raise InvalidInput("crs: applies to a file export (f=)")
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


JSON_BODIES = ("application/json", "application/geo+json")
CSV_BODIES = ("text/csv", "application/csv")
FILE_BODIES = ("application/geopackage+sqlite3", "application/zip", "application/flatgeobuf")


@router.post("/layers/{name}/import", response_model=ImportReportOut,
             responses=errors(401, 403, 404, 409, 413, 415, 422, 503),
             openapi_extra=reads(*JSON_BODIES, *CSV_BODIES, *FILE_BODIES,
                                 limit="import_max_bytes"))
async def import_layer(
    name: str, request: Request, session: WriteSessionDep, settings: SettingsDep,
    user: CurrentUser,
    layer: Annotated[str | None, Query(
        description="the file's layer to read (a GeoPackage of several)", max_length=200)]
    = None,
    encoding: Annotated[str | None, Query(
        description="the text encoding of a Shapefile without .cpg or of a CSV (e.g. GBK)",
        max_length=40)] = None,
    crs: Annotated[str | None, Query(
        description="the coordinates' CRS, over what the file declares (e.g. EPSG:4549, "
        "GCJ-02)", max_length=200)] = None,
) -> Response:
    """Bulk import: a GeoJSON FeatureCollection, a JSON array, CSV (lon,lat columns or a
    WKT column), a GeoPackage, a zipped Shapefile or a FlatGeobuf (at most
    GRIDOPS_IMPORT_MAX_BYTES). Every refused row is reported with its line (a file's
    feature number) and reason; a row identical to the current one changes nothing, a
    different one becomes its new version, the others are created. A file that is no GIS
    file, has no features, or holds no geometry of the layer's types is a 422 and stores
    nothing."""
    d = resp.layer(name)
    require(user, PLANNER, CENTRE)
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    ctype = ctype.lower() or "application/json"
    raw = await read_body(request, settings.import_max_bytes,
                          "split it or run `gridops layers import` on the server")
    actor = _actor(request)
    if crs is not None:
        from spatial.crs import parse_crs

        parse_crs(crs)
        if not d.geometry:
            raise InvalidInput(f"crs: {d.name} have no geometry")
    layer_files._check_encoding(encoding)

    def run() -> resp.ImportReport:
        if ctype in FILE_BODIES:
            table = layer_files.read_upload(d, raw, name=None, media_type=ctype,
                                            max_bytes=settings.import_max_bytes, layer=layer,
                                            encoding=encoding, crs=crs)
            return layer_files.import_layer_file(session, d, table, actor=actor)
        if layer is not None:
            raise InvalidInput("layer: applies to a GeoPackage, Shapefile or FlatGeobuf")
        if ctype not in (*JSON_BODIES, *CSV_BODIES):
            raise UnsupportedMediaType(f"content-type {ctype!r} is not read here")
        return resp.import_rows(session, d, _rows_from_upload(d, raw, ctype, encoding, crs),
                                actor=actor)

    # parsing and inserting thousands of rows: in a worker thread, the loop keeps serving
    report = await anyio.to_thread.run_sync(run)
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
    props, geom = _props_geometry(d, parse_json(raw))
    actor = _actor(request)

    def run() -> Response:  # off the loop: a write may wait for another's row lock
        row = resp.create(session, d, props, geom, actor=actor)
        return json_response(_feature(session, d, row), status=201)

    return await anyio.to_thread.run_sync(run)


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
    props, geom = _props_geometry(d, parse_json(raw))
    actor = _actor(request)

    def run() -> Response:  # off the loop: it may wait for another write's row lock
        row = resp.update(session, d, _split(d, key), props, geom, actor=actor)
        return json_response(_feature(session, d, row))

    return await anyio.to_thread.run_sync(run)


@router.delete("/layers/{name}/{key:path}", response_model=RetiredOut,
               responses=errors(401, 403, 404, 422, 503))
def retire_row(name: str, key: str, request: Request, session: WriteSessionDep,
               user: CurrentUser) -> Response:
    """Retire a row now (its history stays)."""
    d = resp.layer(name)
    require(user, PLANNER, CENTRE)
    row = resp.retire(session, d, _split(d, key), actor=_actor(request))
    return json_response({"retired": key, "valid_to": row.valid_to})


def _actor(request: Request) -> str:
    return str(request.state.user_name) if hasattr(request.state, "user_name") else "api"
