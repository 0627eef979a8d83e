"""OGC API Features (Part 1, Core) under /ogc: the landing page, conformance, the API
definition of these paths, the collections (the grid per level, the responsibility layers),
their items with bbox, datetime, property filters and paging links, one item; JSON by
default (OWSLib sends no Accept header), HTML with f=html or a browser's Accept.

Coordinates are at full precision (15 significant decimals), in CRS84 (lon, lat)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import CurrentUser, SessionDep, SettingsDep, StaffViewDep
from api.geojson import GeoJSONResponse, json_response
from api.ogc_shared import (
    CRS84,
    GEOJSON,
    BadRequest,
    Collection,
    case_feature,
    crs_list,
    etag,
    grid_feature,
    grid_generation,
    layer_feature,
    readable_collection,
)
from api.ogc_shared import base as ogc_base
from api.routing import CheckedRoute
from api.schemas.common import errors, media
from api.schemas.ogc import (
    CollectionOut,
    CollectionsOut,
    ConformanceOut,
    LandingPage,
    OgcFeature,
    OgcFeatureCollection,
    QueryablesOut,
)
from api.visibility import may_read_drafts, readable
from layers import cql, ogc, tiles
from layers.workflow import ADMIN, CENTRE
from map_ui import ogc_pages
from map_ui.pages import BaseMap

router = APIRouter(route_class=CheckedRoute, prefix="/ogc", tags=["ogc"])

LIMIT_DEFAULT = 100
LIMIT_MAX = 10_000
JSON = "application/json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    # Part 3's queryables, and the Part 1 property filters they define (?name=value)
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    # Part 3's filter= in CQL2 (text and JSON), what QGIS checks before it pushes a filter
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-operators",  # its older name
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/arithmetic",
    # Part 4: POST/PUT/DELETE, PATCH (merge-patch), ETag and If-Match (412 when stale)
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/optimistic-locking-etags",
    # OGC API Tiles: the grid levels and the layers with geometry as vector tiles
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
]
SCHEMA_JSON = "application/schema+json"
# query parameters every items request may carry; the rest must be queryables
ITEMS_PARAMS = {"limit", "offset", "after", "bbox", "bbox-crs", "crs", "datetime", "f",
                "generation", "filter", "filter-lang", "filter-crs"}



Format = Annotated[Literal["json", "html"] | None, Query(
    description="json (the default; GeoJSON for features) or html")]


def _html_wanted(request: Request, f: str | None) -> bool:
    """f= decides; else a browser's Accept (text/html before any JSON)."""
    if f is not None:
        return f == "html"
    accept = request.headers.get("accept", "")
    if HTML not in accept:
        return False
    html_at = accept.find(HTML)
    json_at = min((i for i in (accept.find("json"),) if i >= 0), default=len(accept))
    return html_at < json_at


def _link(href: str, rel: str, typ: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": typ}
    if title:
        out["title"] = title
    return out


def _self_links(request: Request, json_type: str, f: str | None) -> list[dict[str, str]]:
    """self and alternate for the current URL, in JSON and HTML."""
    as_json = str(request.url.include_query_params(f="json"))
    as_html = str(request.url.include_query_params(f="html"))
    here_html = _html_wanted(request, f)
    return [_link(as_html if here_html else as_json, "self", HTML if here_html else json_type,
                  "this document"),
            _link(as_json if here_html else as_html, "alternate",
                  json_type if here_html else HTML,
                  "this document as " + ("JSON" if here_html else "HTML"))]


def _map_base(settings: Any) -> BaseMap:
    return BaseMap(settings.map_tiles, settings.map_attribution)


def _html(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers={"cache-control": "no-cache"})


def _no_cache(r: Response) -> Response:
    """Metadata may change with an activation: clients (QGIS keeps a network cache) ask
    again every time."""
    r.headers["cache-control"] = "no-cache"
    return r


# ---------------------------------------------------------------- landing, conformance, api


@router.get("", responses={200: {"content": {JSON: media(LandingPage), HTML: {}}},
                            **errors(422)})
def landing(request: Request, f: Format = None) -> Response:
    """The landing page: what this service is and where everything else is."""
    base = ogc_base(request)
    doc = {"title": "gridops: OGC API Features",
           "description": "The city grid at every level and the responsibility layers "
                          "(assets, ownership areas, department zones, patrol shifts, "
                          "departments, categories) of gridops.",
           "links": [*_self_links(request, JSON, f),
                     _link(f"{base}/api", "service-desc", OPENAPI, "the API definition"),
                     _link(f"{base}/api?f=html", "service-doc", HTML,
                           "the API documentation"),
                     _link(f"{base}/conformance", "conformance", JSON,
                           "the conformance classes"),
                     _link(f"{base}/collections", "data", JSON, "the collections")]}
    if _html_wanted(request, f):
        return _html(ogc_pages.landing(doc))
    return _no_cache(json_response(doc))


@router.get("/conformance", responses={200: {"content": {JSON: media(ConformanceOut), HTML: {}}},
                                       **errors(422)})
def conformance(request: Request, f: Format = None) -> Response:
    """The conformance classes this service implements."""
    doc = {"conformsTo": CONFORMANCE}
    if _html_wanted(request, f):
        return _html(ogc_pages.conformance(doc))
    return _no_cache(json_response(doc))


class OpenAPIResponse(Response):
    media_type = OPENAPI


class SchemaResponse(Response):
    media_type = "application/schema+json"


@router.get("/api", response_class=OpenAPIResponse,
            responses={200: {"content": {OPENAPI: {"schema": {"type": "object"}},
                                         HTML: {}}}, 307: {"description": "f=html: to the "
                                                                "API's documentation page"},
                       **errors(422)})
def api_definition(request: Request, f: Format = None) -> Response:
    """The OpenAPI 3.0 document of the /ogc paths (QGIS reads the items' limit default and
    maximum from it)."""
    if _html_wanted(request, f):
        return Response(status_code=307, headers={"location": "/docs#/ogc"})
    full = request.app.openapi()
    paths = orjson.loads(orjson.dumps({p: v for p, v in full["paths"].items()
                                       if p.startswith("/ogc")}))
    limit: dict[str, Any] = {}
    for ops in paths.values():  # the items' limit, once, where QGIS reads it
        for op in ops.values():
            for i, prm in enumerate(op.get("parameters", [])):
                if prm.get("name") == "limit" and prm.get("in") == "query":
                    limit = prm
                    op["parameters"][i] = {"$ref": "#/components/parameters/limit"}
    limit["schema"] = {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX,
                       "default": LIMIT_DEFAULT}
    limit["style"], limit["explode"] = "form", False
    components = {**full.get("components", {}), "parameters": {"limit": limit}}
    doc = {**full, "paths": paths, "components": components,
           "info": {**full["info"], "title": "gridops: OGC API Features"}}
    return _no_cache(json_response(doc, media_type=OPENAPI))


# ---------------------------------------------------------------- collections


def _describe(request: Request, session: Any, c: ogc.Collection, gen_id: int | None,
              offered: tuple[ogc.Crs, ...]) -> dict[str, Any]:
    base = f"{ogc_base(request)}/collections/{c.id}"
    items_type = GEOJSON if c.geometry else JSON
    doc: dict[str, Any] = {
        "id": c.id, "title": c.title, "description": c.description,
        "itemType": "feature",
        "links": [_link(base, "self", JSON, "this collection"),
                  _link(f"{base}?f=html", "alternate", HTML, "this collection as HTML"),
                  _link(f"{base}/items", "items", items_type, "the features"),
                  _link(f"{base}/items?f=html", "items", HTML, "the features as HTML"),
                  _link(f"{base}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/"
                        "queryables", SCHEMA_JSON, "the properties a filter may name")],
    }
    if tiles.has_tiles(c):
        doc["links"].append(_link(f"{base}/tiles", "http://www.opengis.net/def/rel/ogc/1.0/"
                                  "tilesets-vector", JSON, "the vector tiles"))
    if c.geometry:
        doc["crs"] = [k.uri for k in offered]
        doc["storageCrs"] = CRS84
        box = ogc.extent(session, c, c.generation or gen_id)
        doc["extent"] = {"spatial": {"bbox": [box] if box else [], "crs": CRS84}}
    temporal = ogc.temporal(session, c)
    if temporal is not None:
        doc.setdefault("extent", {})["temporal"] = {
            "interval": [temporal], "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    if c.kind == "grid":
        doc["generation"] = c.generation or gen_id
    return doc


@router.get("/collections", responses={200: {"content": {JSON: media(CollectionsOut), HTML: {}}},
                                       **errors(401, 422, 503)})
def list_collections(request: Request, session: SessionDep, user: CurrentUser,
                     f: Format = None) -> Response:
    """Every collection: the grid levels of the active generation, then the layers (and,
    for a planner or the centre, the grid levels of each draft, to edit)."""
    gen = readable(session, user)
    offered = crs_list(session, gen.id)  # once for every collection
    doc = {"links": _self_links(request, JSON, f),
           "collections": [_describe(request, session, c, gen.id, offered) for c in
                           ogc.catalogue(session, drafts=may_read_drafts(user),
                                         cases=user.role in (CENTRE, ADMIN))]}
    if _html_wanted(request, f):
        return _html(ogc_pages.collections(doc))
    return _no_cache(json_response(doc))


@router.get("/collections/{collection_id}", responses={
    200: {"content": {JSON: media(CollectionOut), HTML: {}}},
                                                        **errors(401, 404, 422, 503)})
def describe_collection(request: Request, session: SessionDep, user: CurrentUser,
                        collection_id: Collection, f: Format = None) -> Response:
    """One collection: its extent, CRS and links."""
    c = readable_collection(session, user, collection_id)
    gen = readable(session, user, generation=c.generation)
    doc = _describe(request, session, c, gen.id, crs_list(session, gen.id))
    if _html_wanted(request, f):
        return _html(ogc_pages.collection(doc))
    return _no_cache(json_response(doc))


@router.get("/collections/{collection_id}/queryables", response_class=SchemaResponse,
            responses={200: {"content": {SCHEMA_JSON: media(QueryablesOut), HTML: {}}},
                       **errors(404, 422, 503)})
def queryables(request: Request, session: SessionDep, user: CurrentUser,
               collection_id: Collection, f: Format = None) -> Response:
    """The properties a filter may name (?name=value on items), as a JSON Schema; the
    geometry as the GeoJSON schema of its type."""
    c = readable_collection(session, user, collection_id)
    props: dict[str, Any] = {k: {"title": k, "type": t} for k, t in c.queryables.items()}
    if c.geometry:
        # Part 3 names the geometry by its format; QGIS (3.32+) recognises it only by the
        # $ref to GeoJSON's schema of its type: both are given
        props["geometry"] = {"title": "geometry", "x-ogc-role": "primary-geometry",
                             "format": f"geometry-{c.geometry.lower()}",
                             "$ref": f"https://geojson.org/schema/{c.geometry}.json"}
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema",
           "$id": f"{ogc_base(request)}/collections/{c.id}/queryables",
           "type": "object", "title": c.title, "properties": props,
           "additionalProperties": False}
    if _html_wanted(request, f):
        return _html(ogc_pages.queryables(doc))
    return _no_cache(json_response(doc, media_type=SCHEMA_JSON))


# ---------------------------------------------------------------- items


def _bbox(raw: str | None, crs: ogc.Crs | None) -> ogc.Box | None:
    """bbox: 4 numbers (or 6, with heights, which are ignored) in bbox-crs's axis order
    (CRS84 by default: lon, lat)."""
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) not in (4, 6):
        raise BadRequest(f"bbox: expected 4 (or 6) comma-separated numbers, got {len(parts)}")
    try:
        v = [float(p) for p in parts]
    except ValueError:
        raise BadRequest(f"bbox: {raw[:80]!r} holds something that is not a number") from None
    if not all(math.isfinite(x) for x in v):
        raise BadRequest("bbox: every number must be finite")
    a0, b0, a1, b1 = (v[0], v[1], v[3], v[4]) if len(v) == 6 else v
    crs = crs or ogc.crs_list(None)[0]
    x0, y0, x1, y1 = (b0, a0, b1, a1) if crs.flip else (a0, b0, a1, b1)
    if crs.geographic:
        for name, x, lim in (("minlon", x0, 180), ("minlat", y0, 90), ("maxlon", x1, 180),
                             ("maxlat", y1, 90)):
            if not -lim <= x <= lim:
                raise BadRequest(f"bbox: {name} {x} is outside [-{lim}, {lim}]")
    if y0 > y1:
        raise BadRequest(f"bbox: the lower {'latitude' if crs.geographic else 'y'} {y0} is "
                         f"above the upper {y1}")
    if x0 > x1:
        raise BadRequest(f"bbox: the west edge {x0} is east of the east edge {x1} (a box "
                         "across the antimeridian is not supported)")
    return ogc.Box(x0, y0, x1, y1, crs.srid)


def _crs(offered: tuple[ogc.Crs, ...], value: str | None, where: str) -> ogc.Crs | None:
    return None if value is None else ogc.parse_crs(value, offered, where)


def _offered(session: Any, user: Any, *values: str | None) -> tuple[ogc.Crs, ...]:
    """The CRSs offered, looked up only when a request names one."""
    if all(v is None for v in values):
        return ()
    return crs_list(session, readable(session, user).id)


def _properties(request: Request, c: ogc.Collection) -> dict[str, str]:
    props = {k: v for k, v in request.query_params.items() if k not in ITEMS_PARAMS}
    for k in props:
        if k not in c.queryables:
            raise BadRequest(f"{k}: not a parameter of items, nor a queryable of {c.id} "
                             f"(queryables: {', '.join(c.queryables)})")
    return props


def _html_features(fc: dict[str, Any]) -> dict[str, Any]:
    """The FeatureCollection with its geometry fragments parsed (for the HTML map)."""
    parsed: dict[str, Any] = orjson.loads(orjson.dumps(fc, default=str))
    return parsed


def _content_crs(r: Response, crs: ogc.Crs | None, c: ogc.Collection) -> Response:
    """Content-Crs: the CRS of the answer's coordinates (Part 2), when it has geometry."""
    if c.geometry is not None:
        r.headers["content-crs"] = f"<{crs.uri if crs else CRS84}>"
    return r


ITEMS_RESPONSES = {200: {"content": {GEOJSON: media(OgcFeatureCollection), HTML: {}},
                         "description": "a FeatureCollection (a page of features)"},
                   **errors(400, 401, 404, 422, 503)}


@router.get("/collections/{collection_id}/items", response_class=GeoJSONResponse,
            responses=ITEMS_RESPONSES)
def items(
    request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser,
    staff: StaffViewDep, collection_id: Collection, f: Format = None,
    limit: Annotated[int, Query(ge=1, description=f"features per page (at most {LIMIT_MAX}; "
                                "a larger value is taken as the maximum)",
                                json_schema_extra={"maximum": LIMIT_MAX})] = LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=2**62, description="features to skip (the next "
                                 "link carries it)")] = 0,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9A-Za-z_\-]+$",
                                       description=(
        "the next link's cursor (grid and cases): the page starts after this feature, as "
        "fast deep in a collection as at its start"))] = None,
    bbox: Annotated[str | None, Query(max_length=400, description="minlon,minlat,maxlon,"
                                      "maxlat (CRS84)")] = None,
    datetime_: Annotated[str | None, Query(alias="datetime", max_length=100, description=(
        "an instant (the rows valid then; for the grid, the generation active then) or, for "
        "the layers, an interval start/end with .. for an open end"))] = None,
    generation: Annotated[int | None, Query(ge=1, le=2**31 - 1, description=(
        "grid collections: this generation instead of the active one (a draft: planners"
        " and the centre)"))] = None,
    crs: Annotated[str | None, Query(max_length=200, description=(
        "the answer's CRS, one of the collection's crs list (default CRS84); EPSG:4326 and "
        "4490 are latitude first, the Gauss-Kruger zones northing first"))] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", max_length=200, description=(
        "the CRS of bbox, in its own axis order (default CRS84)"))] = None,
    filter_: Annotated[str | None, Query(alias="filter", max_length=4000, description=(
        "a CQL2 filter on the queryables and the geometry (e.g. owner_department = 'SW-GS' "
        "AND S_INTERSECTS(geometry, BBOX(121.2, 31.0, 121.3, 31.1)))"))] = None,
    filter_lang: Annotated[Literal["cql2-text", "cql2-json"] | None, Query(
        alias="filter-lang", description="cql2-text (the default) or cql2-json")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs", max_length=200, description=(
        "the CRS of the filter's geometries, in its own axis order (default CRS84)"))
    ] = None,
) -> Response:
    """A page of a collection's features, in a stable order (code or key), with
    numberMatched, numberReturned and next/prev links. Any queryable is a filter
    (?owner_department=SW-GS)."""
    c = readable_collection(session, user, collection_id)
    limit = min(limit, LIMIT_MAX)
    offered = _offered(session, user, crs, bbox_crs, filter_crs)
    out_crs = _crs(offered, crs, "crs")
    box = _bbox(bbox, _crs(offered, bbox_crs, "bbox-crs"))
    if c.geometry is None and (crs or bbox):
        raise BadRequest(f"{'crs' if crs else 'bbox'}: {c.id} has no geometry")
    start, end, interval = ogc.parse_datetime(datetime_)
    props = _properties(request, c)
    where = None
    if filter_ is not None:
        where = ogc.Filter(cql.parse(filter_, filter_lang),
                           _crs(offered, filter_crs, "filter-crs"))
    elif filter_lang is not None or filter_crs is not None:
        raise BadRequest("filter-lang and filter-crs go with a filter")
    if c.kind == "grid":
        if interval:
            raise BadRequest("datetime: the grid answers an instant (the generation active "
                             "then), not an interval")
        gen = grid_generation(session, user, c, generation, start)
        page = ogc.grid_items(session, c, gen.id, bbox=box, props=props, limit=limit,
                              offset=offset, crs=out_crs, cql=where, after=after)
        cursor = page.rows[-1]["code"] if page.rows else None
        feats = [grid_feature(r, staff, gen.id) for r in page.rows]
    elif c.kind == "cases":
        if generation is not None:
            raise BadRequest("generation: cases are read by datetime (the cases open then)")
        page = ogc.case_items(session, c, start=start, end=end, bbox=box, props=props,
                              limit=limit, offset=offset, crs=out_crs, cql=where,
                              after=after)
        cursor = page.rows[-1]["cursor"] if page.rows else None
        feats = [case_feature(r) for r in page.rows]
    else:
        if generation is not None:
            raise BadRequest(f"generation: {c.id} is a layer, versioned in time "
                             "(use datetime)")
        if after is not None:
            raise BadRequest(f"after: {c.id} pages by offset")
        cursor = None
        page = ogc.layer_items(
            session, c, at=start if not interval else None,
            interval=(start, end) if interval else None, bbox=box, props=props, limit=limit,
            offset=offset, crs=out_crs, cql=where)
        feats = [layer_feature(r, c, staff) for r in page.rows]
    base = f"{ogc_base(request)}/collections/{c.id}"
    links = [*_self_links(request, GEOJSON, f), _link(base, "collection", JSON,
                                                      "the collection")]
    html = _html_wanted(request, f)
    fmt = "html" if html else "json"
    if offset + len(feats) < page.matched and feats:
        nxt = request.url.include_query_params(offset=offset + len(feats), limit=limit, f=fmt)
        if cursor is not None:
            nxt = nxt.include_query_params(after=cursor)
        links.append(_link(str(nxt), "next", HTML if html else GEOJSON, "the next page"))
    if offset > 0:
        prev = request.url.remove_query_params("after").include_query_params(
            offset=max(0, offset - limit), limit=limit, f=fmt)
        links.append(_link(str(prev), "prev", HTML if html else GEOJSON,
                           "the previous page"))
    fc = {"type": "FeatureCollection", "numberMatched": page.matched,
          "numberReturned": len(feats), "timeStamp": datetime.now(UTC).isoformat(),
          "links": links, "features": feats}
    if html:
        if out_crs is not None and out_crs.uri != CRS84:
            raise BadRequest("crs: the HTML page maps CRS84 only")
        return _html(ogc_pages.items(_html_features(fc), c.title, c.id, _map_base(settings)))
    return _content_crs(json_response(fc, media_type=GEOJSON), out_crs, c)


@router.get("/collections/{collection_id}/items/{feature_id}", response_class=GeoJSONResponse,
            responses={200: {"content": {GEOJSON: media(OgcFeature), HTML: {}},
                             "description": "a Feature"},
                       **errors(400, 401, 404, 422, 503)})
def item(
    request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser,
    staff: StaffViewDep, collection_id: Collection,
    feature_id: Annotated[str, Path(max_length=200, description="a unit's code; a layer "
                                    "row's key, its parts joined by ~")],
    f: Format = None,
    datetime_: Annotated[str | None, Query(alias="datetime", max_length=100,
                                           description="an instant")] = None,
    generation: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    crs: Annotated[str | None, Query(max_length=200, description="the answer's CRS")] = None,
) -> Response:
    """One feature by id (stable across versions: the current version unless datetime=)."""
    c = readable_collection(session, user, collection_id)
    out_crs = _crs(_offered(session, user, crs), crs, "crs")
    start, _, interval = ogc.parse_datetime(datetime_)
    if interval:
        raise BadRequest("datetime: one feature is read at an instant")
    if c.kind == "grid":
        gen = grid_generation(session, user, c, generation, start)
        row = ogc.grid_item(session, c, gen.id, feature_id, out_crs)
        feat = grid_feature(row, staff, gen.id)
    elif c.kind == "cases":
        if generation is not None or start is not None:
            raise BadRequest("a case is read by its reference alone")
        row = ogc.case_item(session, c, feature_id, out_crs)
        feat = case_feature(row)
    else:
        if generation is not None:
            raise BadRequest(f"generation: {c.id} is a layer, versioned in time")
        row = ogc.layer_item(session, c, feature_id, start, out_crs)
        feat = layer_feature(row, c, staff)
    base = f"{ogc_base(request)}/collections/{c.id}"
    feat["links"] = [*_self_links(request, GEOJSON, f),
                     _link(base, "collection", JSON, "the collection")]
    if _html_wanted(request, f):
        fc = _html_features({"features": [feat]})
        if out_crs is not None and out_crs.uri != CRS84:
            raise BadRequest("crs: the HTML page maps CRS84 only")
        return _html(ogc_pages.item(fc["features"][0], c.title, c.id, _map_base(settings)))
    out = _content_crs(json_response(feat, media_type=GEOJSON), out_crs, c)
    out.headers["etag"] = etag(row)
    return out
