"""OGC API Features Part 4 (create, replace, update, delete) under /ogc.

Editable: the layers assets, areas and zones (a planner, centre or admin token) and the grid
levels of a draft, `grid-<level>-draft-<generation>` (a planner). Every write is the same
versioned, audited change the /layers and /generations endpoints make, validated the same
way, and answered only after its commit:

- POST .../items: a GeoJSON Feature -> 201, `Location: .../items/{featureId}` (QGIS reads the
  new id from it), `ETag`. On a draft's grid level the new unit is carved out of the units
  it covers (they give up what it takes), so the coverage stays seamless; a POST whose body
  is a CQL2 JSON filter (OWSLib's `cql=`) is a search: 303 to the same items GET.
- PUT .../items/{id}: the whole feature; PATCH: a JSON merge patch (RFC 7396) of its
  properties and/or geometry; DELETE: a layer row retires (its history stays), a draft's
  unit gives its area to the sibling sharing the longest border.
- OPTIONS on /items and on an item: `Allow` lists what this caller may do (QGIS enables
  editing only when POST is listed).
- `ETag` on every feature read or written; `If-Match` is optional (QGIS never sends it),
  a stale one is 412 and changes nothing.
- `Content-Crs` on a write names the CRS of the body's coordinates, in that CRS's axis
  order (EPSG:4326 and 4490 latitude first), default CRS84.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import anyio
import orjson
import shapely
from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.bodies import parse_json, read_body
from api.deps import CurrentUser, SessionDep, SettingsDep, WriteSessionDep, require
from api.geojson import GeoJSONResponse, json_response
from api.ogc_shared import (
    CRS84,
    GEOJSON,
    Collection,
    crs_list,
    etag,
    grid_feature,
    layer_feature,
    readable_collection,
)
from api.ogc_shared import base as ogc_base
from api.routing import CheckedRoute, reads
from api.schemas.common import errors, media
from api.schemas.ogc import OgcDeleted, OgcWritten
from api.visibility import readable
from layers import drafts, gisfile, ogc
from layers import responsibility as resp
from layers.workflow import ADMIN, CENTRE, PLANNER
from spatial.errors import InvalidGeometry, InvalidInput, PreconditionFailed

router = APIRouter(route_class=CheckedRoute, prefix="/ogc", tags=["ogc"])

MERGE_PATCH = "application/merge-patch+json"
FEATURE_BODIES = (GEOJSON, "application/json")
PATCH_BODIES = (MERGE_PATCH, GEOJSON, "application/json")
FeatureId = Annotated[str, Path(max_length=200, description="a unit's code; a layer row's "
                                "key, its parts joined by ~")]
IfMatch = Annotated[str | None, Header(max_length=400, description=(
    "the ETag the feature was read with: a stale one is refused (412) and changes nothing; "
    "optional"))]
ContentCrs = Annotated[str | None, Header(max_length=200, description=(
    "the CRS of the body's coordinates, in its axis order (default CRS84)"))]
WRITE_ERRORS = errors(400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 503)
# what a feature read back shows but a write does not set
READ_ONLY = {"valid_from", "valid_to", "generation", "level_key", "level_name", "area_m2",
             "generation_low", "revision", "etag", "grid_code"}  # an asset's grid: located


# ---------------------------------------------------------------- who may do what


def _writers(c: ogc.Collection) -> tuple[str, ...]:
    if not c.writable:
        return ()
    return (PLANNER,) if c.kind == "grid" else (PLANNER, CENTRE)


def _allowed(c: ogc.Collection, user: Any, item: bool) -> list[str]:
    out = ["GET", "OPTIONS"]
    writers = _writers(c)
    if writers and user.role in (*writers, ADMIN):
        out += ["PUT", "PATCH", "DELETE"] if item else ["POST"]
    return out


def _may_write(c: ogc.Collection, user: Any, item: bool) -> None:
    """405 (with Allow) on a read-only collection; 401/403 for a caller who may not."""
    if not c.writable:
        allow = ", ".join(_allowed(c, user, item))
        why = ("the grid of a generation in force is changed through a draft: edit "
               f"{c.id}-draft-<generation> (POST /generations makes one)"
               if c.kind == "grid" else
               f"{c.id} is edited through /layers/{c.id} (editable here: "
               f"{', '.join(ogc.WRITABLE_LAYERS)})")
        raise StarletteHTTPException(405, f"{c.id} is read-only here: {why}",
                                     headers={"Allow": allow})
    require(user, *_writers(c))


# ---------------------------------------------------------------- bodies


def _target_crs(session: Any, user: Any, header: str | None) -> ogc.Crs | None:
    """Content-Crs of a write: one of the collection's CRSs (bare URI or in <>)."""
    if header is None or header.strip().strip("<>").strip() == CRS84:
        return None
    return ogc.parse_crs(header, crs_list(session, readable(session, user).id), "Content-Crs")


def _lonlat(value: Any, crs: ogc.Crs | None, where: str = "geometry") -> Any:
    """A GeoJSON geometry of the body (in crs's axis order) -> shapely, lon/lat."""
    if value is None:
        return None
    if crs is None:
        return gisfile.lonlat_geometry(value, None, where)
    g = _shape(value, where)
    if crs.flip:
        g = shapely.transform(g, lambda xy: xy[:, ::-1])
    return gisfile.lonlat_geometry(g, None if crs.srid == 4326 else f"EPSG:{crs.srid}", where)


def _shape(value: Any, where: str) -> Any:
    if not isinstance(value, dict) or "type" not in value:
        raise InvalidGeometry(f"{where}: a GeoJSON geometry object is needed")
    try:
        return shapely.geometry.shape(value)
    except Exception as e:
        raise InvalidGeometry(f"{where}: not a GeoJSON geometry ({type(e).__name__}: "
                              f"{str(e)[:80]})") from None


async def _body(request: Request, settings: Any) -> dict[str, Any]:
    raw = await read_body(request, settings.upload_max_bytes, "split it")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidInput("body: a GeoJSON Feature (a JSON object)")
    return body


def _feature_parts(body: dict[str, Any], *, patch: bool = False
                   ) -> tuple[dict[str, Any], bool, Any]:
    """(properties, whether a geometry member is present, its value) of a Feature, or of
    a merge patch (a Feature's members, any of them left out)."""
    if not patch and body.get("type") != "Feature":
        raise InvalidInput("body: a GeoJSON Feature (type \"Feature\", geometry, properties)")
    props = body.get("properties", {})
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise InvalidInput("properties: a JSON object")
    return {k: v for k, v in props.items() if k not in READ_ONLY}, "geometry" in body, \
        body.get("geometry")


def _is_cql(body: dict[str, Any]) -> bool:
    return "type" not in body and ("op" in body or "filter" in body)


# ---------------------------------------------------------------- answers


def _location(request: Request, c: ogc.Collection, fid: str) -> str:
    return f"{ogc_base(request)}/collections/{c.id}/items/{quote(fid, safe='~')}"


def _read_back(session: Any, c: ogc.Collection, fid: str) -> tuple[dict[str, Any], str]:
    """The feature as stored now (within the write's transaction) and its ETag."""
    from layers.disclosure import StaffView

    staff = StaffView(staff=True, public="none")
    if c.kind == "grid":
        assert c.generation is not None
        row = ogc.grid_item(session, c, c.generation, fid)
        return grid_feature(row, staff, c.generation), etag(row)
    row = ogc.layer_item(session, c, fid, None)
    return layer_feature(row, c, staff), etag(row)


def _feature_answer(session: Any, request: Request, c: ogc.Collection, fid: str,
                    status: int = 200, edit: Any = None) -> Response:
    feat, tag = _read_back(session, c, fid)
    if edit is not None:
        feat["edit"] = edit.as_dict()  # a foreign member: what the grid edit did
    out = json_response(feat, status=status, media_type=GEOJSON)
    out.headers["etag"] = tag
    out.headers["content-crs"] = f"<{CRS84}>"
    if status == 201:
        out.headers["location"] = _location(request, c, fid)
    return out


def _stale_is_412(e: drafts.StaleUnit) -> PreconditionFailed:
    return PreconditionFailed(e.detail, extra=e.extra)


def _layer_fields(c: ogc.Collection) -> list[str]:
    assert c.layer is not None
    return [f for f in c.layer.schema.model_fields if f not in c.layer.key and f != "geom"]


def _check_key(c: ogc.Collection, props: dict[str, Any], key: list[str]) -> None:
    assert c.layer is not None
    for k, v in zip(c.layer.key, key, strict=True):
        if k in props and props[k] is not None and str(props.pop(k)) != v:
            raise InvalidInput(f"properties.{k}: the feature's key is its id "
                               f"({ogc.ID_SEP.join(key)}); it cannot change (retire it "
                               "and create another)")
        props.pop(k, None)


def _unknown(c: ogc.Collection, props: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(props) - allowed)
    if extra:
        raise InvalidInput(f"properties: {', '.join(extra)[:120]} are not fields of {c.id} "
                           f"(its fields: {', '.join(sorted(allowed))[:300]})")


def _replacement(c: ogc.Collection, props: dict[str, Any], fields: list[str]
                 ) -> dict[str, Any]:
    """A PUT's fields: those given, the others their defaults (a replace is whole)."""
    assert c.layer is not None
    out: dict[str, Any] = {}
    missing = []
    for f in fields:
        info = c.layer.schema.model_fields[f]
        if props.get(f) is not None:
            out[f] = props[f]
        elif info.is_required():
            missing.append(f)
        else:
            out[f] = info.get_default(call_default_factory=True)
    if missing:
        raise InvalidInput(f"properties: a replace (PUT) gives the whole feature; missing "
                           f"{', '.join(missing)} (PATCH changes a part)")
    return out


def _default(c: ogc.Collection, f: str) -> Any:
    """What a field cleared by a merge patch (null) becomes: its default, else null."""
    assert c.layer is not None
    info = c.layer.schema.model_fields.get(f)
    if info is None or info.is_required():
        return None
    return info.get_default(call_default_factory=True)


UNIT_FIELDS = {"name", "leader_name", "leader_phone", "attributes"}


# ---------------------------------------------------------------- OPTIONS


@router.options("/collections/{collection_id}/items", status_code=204,
                responses={204: {"description": "Allow: what this caller may do here"},
                           **errors(401, 404, 422, 503)})
def items_options(session: SessionDep, user: CurrentUser, collection_id: Collection
                  ) -> Response:
    """What the caller may do on the collection's items (Allow): POST when it may create
    (QGIS turns editing on only then)."""
    c = readable_collection(session, user, collection_id)
    return Response(status_code=204, headers={"allow": ", ".join(_allowed(c, user, False))})


@router.options("/collections/{collection_id}/items/{feature_id}", status_code=204,
                responses={204: {"description": "Allow: what this caller may do here"},
                           **errors(401, 404, 422, 503)})
def item_options(session: SessionDep, user: CurrentUser, collection_id: Collection,
                 feature_id: FeatureId) -> Response:
    """What the caller may do on one feature (Allow): PUT, PATCH and DELETE when it may
    edit (asked for any id: QGIS asks before it knows one)."""
    c = readable_collection(session, user, collection_id)
    return Response(status_code=204, headers={"allow": ", ".join(_allowed(c, user, True))})


# ---------------------------------------------------------------- create


@router.post("/collections/{collection_id}/items", status_code=201,
             response_class=GeoJSONResponse,
             responses={201: {"description": "created; Location names the new feature, "
                              "the body is the feature as stored",
                              "content": {GEOJSON: media(OgcWritten)}},
                        303: {"description": "a CQL2 JSON body: the same search as GET "
                              "items?filter=...&filter-lang=cql2-json"},
                        **WRITE_ERRORS},
             openapi_extra=reads(*FEATURE_BODIES, "application/query-cql-json",
                                 limit="upload_max_bytes"))
async def create_item(request: Request, session: WriteSessionDep, settings: SettingsDep,
                      user: CurrentUser, collection_id: Collection,
                      content_crs: ContentCrs = None) -> Response:
    """Create a feature from a GeoJSON Feature (its id is given by the server: a layer
    row's key from its properties, a new unit's code by the serial rule). On a draft's grid
    level the new unit is carved out of the units it covers; its parent is parent_code or
    the parent of the unit it takes most from."""
    body = await _body(request, settings)
    if _is_cql(body):  # OWSLib's cql=: a search, answered by the GET with the same filter
        tree = body.get("filter", body)
        url = request.url.include_query_params(
            filter=orjson.dumps(tree).decode(), **{"filter-lang": "cql2-json"})
        return Response(status_code=303, headers={"location": str(url)})
    # the database work off the event loop: a write may wait for another's row lock
    return await anyio.to_thread.run_sync(
        lambda: _create(request, session, settings, user, collection_id, content_crs, body))


def _create(request: Request, session: Any, settings: Any, user: Any, collection_id: str,
            content_crs: str | None, body: dict[str, Any]) -> Response:
    c = readable_collection(session, user, collection_id)
    _may_write(c, user, item=False)
    crs = _target_crs(session, user, content_crs)
    props, _, geom = _feature_parts(body)
    actor = user.name
    if c.kind == "layer":
        d = c.layer
        assert d is not None
        _unknown(c, props, set(d.schema.model_fields))
        given = {k: v for k, v in props.items() if v is not None}  # QGIS: null = not filled
        row = resp.create(session, d, given, _lonlat(geom, crs), actor=actor)
        fid = ogc.ID_SEP.join(str(getattr(row, k)) for k in d.key)
        return _feature_answer(session, request, c, fid, 201)
    assert c.generation is not None and c.rank is not None
    code = props.pop("code", None)
    parent = props.pop("parent_code", None)
    level = props.pop("level", None)
    if level not in (None, c.rank, str(c.rank)):
        raise InvalidInput(f"properties.level: {c.id} holds level {c.rank} units")
    _unknown(c, props, UNIT_FIELDS)
    name = props.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("properties.name: a new unit needs a name of 1-200 characters")
    for k in ("code", "parent_code"):
        v = code if k == "code" else parent
        if v is not None and not (isinstance(v, str) and v.isdigit() and len(v) <= 32):
            raise InvalidInput(f"properties.{k}: a unit code (digits), or null")
    if geom is None:
        raise InvalidGeometry("geometry: a new unit needs its polygon")
    attrs = props.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise InvalidInput("properties.attributes: a JSON object")
    result = drafts.carve(session, c.generation, c.rank, _lonlat(geom, crs), settings,
                          actor=actor, name=name.strip(), parent=parent, code=code,
                          leader_name=props.get("leader_name"),
                          leader_phone=props.get("leader_phone"), attributes=attrs)
    return _feature_answer(session, request, c, result.created[0] if result.created
                           else next(iter(result.units)), 201, result)


# ---------------------------------------------------------------- replace, update


async def _change(request: Request, session: Any, settings: Any, user: Any, cid: str,
                  fid: str, if_match: str | None, content_crs: str | None,
                  *, patch: bool) -> Response:
    body = await _body(request, settings)
    # the database work off the event loop: it may wait for another write's row lock
    return await anyio.to_thread.run_sync(lambda: _changed(
        request, session, settings, user, cid, fid, if_match, content_crs, body, patch))


def _changed(request: Request, session: Any, settings: Any, user: Any, cid: str, fid: str,
             if_match: str | None, content_crs: str | None, body: dict[str, Any],
             patch: bool) -> Response:
    c = readable_collection(session, user, cid)
    _may_write(c, user, item=True)
    crs = _target_crs(session, user, content_crs)
    props, has_geom, geom = _feature_parts(body, patch=patch)
    if c.kind == "layer":
        d = c.layer
        assert d is not None
        key = ogc.split_id(c, fid)
        ogc.lock_current(session, c, key, if_match)
        _check_key(c, props, key)
        fields = _layer_fields(c)
        _unknown(c, props, set(fields))
        if patch:
            if has_geom and geom is None and d.geometry:
                raise InvalidGeometry(f"geometry: a feature of {c.id} cannot lose its "
                                      "geometry (DELETE retires it)")
            data = {k: _default(c, k) if v is None else v for k, v in props.items()}
        else:
            if d.geometry and geom is None:
                raise InvalidGeometry("geometry: a replace (PUT) gives the whole feature, "
                                      "its geometry included (PATCH changes a part)")
            data = _replacement(c, props, fields)
        resp.update(session, d, key, data, _lonlat(geom, crs), actor=user.name)
        return _feature_answer(session, request, c, fid)
    assert c.generation is not None
    for k in ("code", "level", "parent_code"):
        if k in props and props[k] is None:
            props.pop(k)
    if not patch:
        if geom is None:
            raise InvalidGeometry("geometry: a replace (PUT) gives the whole unit, its "
                                  "polygon included (PATCH changes a part)")
        props = {**{"leader_name": None, "leader_phone": None, "attributes": {}}, **props}
    elif has_geom and geom is None:
        raise InvalidGeometry("geometry: a unit cannot lose its polygon (DELETE gives its "
                              "area to a neighbour)")
    try:
        result = drafts.put_unit(session, c.generation, fid, settings, actor=user.name,
                                 if_match=if_match, geometry=_lonlat(geom, crs),
                                 properties=props, match_required=False)
    except drafts.StaleUnit as e:
        raise _stale_is_412(e) from None
    return _feature_answer(session, request, c, fid, edit=result)


WRITTEN = {200: {"description": "the feature as stored now (ETag: its new version)",
                 "content": {GEOJSON: media(OgcWritten)}}, **WRITE_ERRORS}


@router.put("/collections/{collection_id}/items/{feature_id}", responses=WRITTEN,
            response_class=GeoJSONResponse,
            openapi_extra=reads(*FEATURE_BODIES, limit="upload_max_bytes"))
async def replace_item(request: Request, session: WriteSessionDep, settings: SettingsDep,
                       user: CurrentUser, collection_id: Collection, feature_id: FeatureId,
                       if_match: IfMatch = None, content_crs: ContentCrs = None) -> Response:
    """Replace a feature with the GeoJSON Feature given: a layer row gets a new version
    (the old one ends, history stays) whose fields are exactly those given; a draft's unit
    its new polygon and attributes, validated where it acts (its violations are a 422)."""
    return await _change(request, session, settings, user, collection_id, feature_id,
                         if_match, content_crs, patch=False)


@router.patch("/collections/{collection_id}/items/{feature_id}", responses=WRITTEN,
              response_class=GeoJSONResponse,
              openapi_extra=reads(*PATCH_BODIES, limit="upload_max_bytes"))
async def update_item(request: Request, session: WriteSessionDep, settings: SettingsDep,
                      user: CurrentUser, collection_id: Collection, feature_id: FeatureId,
                      if_match: IfMatch = None, content_crs: ContentCrs = None) -> Response:
    """Update a feature by a JSON merge patch: the properties given change (null clears
    one), a geometry given replaces the old; the rest stays."""
    return await _change(request, session, settings, user, collection_id, feature_id,
                         if_match, content_crs, patch=True)


# ---------------------------------------------------------------- delete


@router.delete("/collections/{collection_id}/items/{feature_id}", response_model=OgcDeleted,
               responses=WRITE_ERRORS)
def delete_item(session: WriteSessionDep, settings: SettingsDep, user: CurrentUser,
                collection_id: Collection, feature_id: FeatureId,
                if_match: IfMatch = None) -> Response:
    """Delete a feature: a layer row retires now (its history stays, datetime= still
    finds it); a draft's unit gives its area to the sibling sharing the longest border."""
    c = readable_collection(session, user, collection_id)
    _may_write(c, user, item=True)
    if c.kind == "layer":
        d = c.layer
        assert d is not None
        key = ogc.split_id(c, feature_id)
        ogc.lock_current(session, c, key, if_match)
        row = resp.retire(session, d, key, actor=user.name)
        return json_response({"deleted": feature_id, "collection": c.id,
                              "valid_to": row.valid_to})
    assert c.generation is not None
    try:
        result = drafts.absorb(session, c.generation, feature_id, settings, actor=user.name,
                               if_match=if_match)
    except drafts.StaleUnit as e:
        raise _stale_is_412(e) from None
    return json_response({"deleted": feature_id, "collection": c.id,
                          "edit": result.as_dict()})
