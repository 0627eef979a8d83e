"""Vector tiles (OGC API Tiles) under /ogc: a collection's tiles in WebMercatorQuad as
Mapbox Vector Tiles built by PostGIS (layers.tiles), the collection's tilesets and the
tile matrix set. The collections are OGC API Features' (layers.ogc.collection): the grid
per level (the active generation; generation= for another, a draft for planner and centre
tokens only, never cached) and the layers with geometry.

An empty tile is a 200 with an empty body (Leaflet.VectorGrid, QGIS and GDAL read it as a
tile without features). X-Tile-Cache says hit, miss or bypass (a draft)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from api.deps import CurrentUser, SessionDep
from api.geojson import json_response
from api.ogc_shared import grid_generation, readable_collection
from api.params import GenerationParam
from api.routing import CheckedRoute
from api.schemas.common import errors, media
from api.schemas.tiles import TileMatrixSetOut, TileSetsOut
from layers import ogc, tiles

router = APIRouter(route_class=CheckedRoute, prefix="/ogc", tags=["ogc"])

JSON = "application/json"
MVT = tiles.MVT
Collection = Annotated[str, Path(description="collection id (GET /ogc/collections)",
                                 max_length=64)]
Coordinate = Annotated[str, Path(max_length=12, description="a whole number")]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def _tiled(session: Any, user: Any, cid: str) -> ogc.Collection:
    # a collection this caller may read (404s naming the collections), if it has tiles
    return tiles.tiled(readable_collection(session, user, cid))


@router.get("/collections/{collection_id}/tiles/WebMercatorQuad/{z}/{x}/{y}",
            response_class=Response,
            responses={200: {"content": {MVT: {"schema": {"type": "string",
                                                          "format": "binary"}}},
                             "description": "a Mapbox Vector Tile (empty body: no feature "
                                            "there)"},
                       304: {"description": "the tile the client has (If-None-Match)"},
                       **errors(400, 401, 404, 422, 503)})
def get_tile(request: Request, session: SessionDep, user: CurrentUser,
             collection_id: Collection, z: Coordinate, x: Coordinate, y: Coordinate,
             generation: GenerationParam = None) -> Response:
    """One vector tile: the features meeting the tile (and its buffer), simplified for its
    zoom, with their plain properties (a unit's code, name, parent_code, level; a layer
    row's key and a few fields, never personal data). 400 when z/x/y are not whole numbers,
    404 outside WebMercatorQuad (zoom 0-22)."""
    zi, xi, yi = tiles.parse_address(z, x, y)
    if generation is not None:
        # a published generation's grid tile this worker holds: only published tiles are
        # kept, and anyone may read a published generation, so no database is needed
        kept = tiles.MEMORY.get((collection_id, generation, zi, xi, yi))
        if kept is not None:
            return _answer(request, kept, "hit", "public, max-age=86400")
    c = _tiled(session, user, collection_id)
    gen_id = None
    published = False
    if c.kind == "grid":  # a draft's level (grid-<level>-draft-<id>) is that draft's
        gen = grid_generation(session, user, c, generation, None)
        gen_id, published = gen.id, gen.activated_at is not None
    t = tiles.tile(session, c, zi, xi, yi, gen_id=gen_id, cache=published or c.kind != "grid")
    if c.kind == "grid" and not published:
        control = "private, no-store"  # a draft's
    elif c.kind == "grid" and generation is not None:
        control = "public, max-age=86400"  # a published generation's
    else:
        control = "no-cache"  # the active generation or a layer: ask again
    return _answer(request, t.data, "hit" if t.hit else "miss" if t.cached else "bypass",
                   control)


def _answer(request: Request, data: bytes, cache: str, control: str) -> Response:
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    headers = {"etag": etag, "x-tile-cache": cache, "vary": "authorization",
               "cache-control": control}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=MVT, headers=headers)


def _template(request: Request, cid: str) -> str:
    return f"{_base(request)}/collections/{cid}/tiles/WebMercatorQuad/{{tileMatrix}}/" \
           "{tileCol}/{tileRow}"


@router.get("/collections/{collection_id}/tiles",
            responses={200: {"content": {JSON: media(TileSetsOut)}},
                       **errors(401, 403, 404, 422, 503)})
def tilesets(request: Request, session: SessionDep, user: CurrentUser,
             collection_id: Collection) -> Response:
    """The collection's tilesets: vector tiles in WebMercatorQuad, with the URL template
    (rel item; {tileMatrix} is the zoom, {tileCol} x, {tileRow} y)."""
    c = _tiled(session, user, collection_id)
    base = _base(request)
    doc = {"links": [{"href": f"{base}/collections/{c.id}/tiles", "rel": "self", "type": JSON,
                      "title": "this document"},
                     {"href": f"{base}/collections/{c.id}", "rel": "collection",
                      "type": JSON, "title": c.title}],
           "tilesets": [{
               "title": f"{c.title}: vector tiles", "dataType": "vector",
               "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
               "tileMatrixSetURI": tiles.TMS_URI,
               "layers": [{"id": c.id, "dataType": "vector",
                           "geometryDimension": 0 if c.geometry == "Point" else 2}],
               "links": [{"href": _template(request, c.id),
                          "rel": "item", "type": MVT, "templated": True,
                          "title": "a tile (Mapbox Vector Tile); generation= for another "
                                   "generation of the grid"},
                         {"href": f"{base}/tileMatrixSets/WebMercatorQuad",
                          "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                          "type": JSON, "title": "the tile matrix set"}]}]}
    r = json_response(doc)
    r.headers["cache-control"] = "no-cache"
    return r


@router.get("/tileMatrixSets/WebMercatorQuad",
            responses={200: {"content": {JSON: media(TileMatrixSetOut)}}, **errors(422)})
def web_mercator_quad() -> Response:
    """The WebMercatorQuad tile matrix set (zoom 0-22, 256 px tiles, EPSG:3857)."""
    half = tiles.HALF
    doc = {"id": tiles.TMS, "title": "Google Maps Compatible for the World",
           "uri": tiles.TMS_URI, "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
           "orderedAxes": ["E", "N"],
           "tileMatrices": [{"id": str(z), "scaleDenominator": 559082264.0287178 / (1 << z),
                             "cellSize": 2 * half / 256 / (1 << z),
                             "pointOfOrigin": [-half, half], "cornerOfOrigin": "topLeft",
                             "tileWidth": 256, "tileHeight": 256,
                             "matrixWidth": 1 << z, "matrixHeight": 1 << z}
                            for z in range(tiles.MAX_ZOOM + 1)]}
    return json_response(doc)
