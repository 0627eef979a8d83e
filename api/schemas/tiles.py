"""Shapes of the OGC API Tiles answers: a collection's tilesets and the WebMercatorQuad
tile matrix set (what a client needs to find the URL template and the zoom levels)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from api.schemas.ogc import OgcLink


class TileSetOut(BaseModel):
    """One tileset of a collection: vector tiles in a tile matrix set, with the tile URL
    template among its links (rel item, templated)."""

    model_config = ConfigDict(extra="allow")

    title: str
    dataType: str
    crs: str
    tileMatrixSetURI: str
    links: list[OgcLink]


class TileSetsOut(BaseModel):
    """A collection's tilesets."""

    links: list[OgcLink]
    tilesets: list[TileSetOut]


class TileMatrixSetOut(BaseModel):
    """A tile matrix set (OGC 2D Tile Matrix Set 2.0 JSON; the matrices are in the extra
    keys)."""

    model_config = ConfigDict(extra="allow")

    id: str
    title: str
    uri: str
    crs: str
    tileMatrices: list[dict[str, object]]
