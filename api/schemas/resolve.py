"""Points resolved to the grid chain: one point (/resolve) and batches (/resolve/batch as
JSON, GeoJSON or CSV)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import (
    CRSOut,
    Feature,
    FeatureCollection,
    GenerationRefOut,
    LonLat,
    PointGeometry,
    Timestamp,
)
from api.schemas.grids import ChainUnit


class H3Out(BaseModel):
    """The H3 cell of the point."""

    cell: str
    resolution: int


class NearestOut(BaseModel):
    """For a point outside the territory: the nearest grid."""

    code: str
    name: str
    distance_m: float


class ResolveIn(BaseModel):
    """One point: lon/lat (geographic CRS) or x/y (projected CRS, metres)."""

    lon: float | None = Field(default=None, description="longitude, or x for projected CRS")
    lat: float | None = Field(default=None, description="latitude, or y for projected CRS")
    x: float | None = None
    y: float | None = None
    crs: str = Field(default="EPSG:4326", description="EPSG:4326, EPSG:4490, GCJ-02, BD-09, "
                     "or any EPSG code")
    at: Timestamp | None = Field(default=None, description="resolve against the grid as of")
    generation: int | None = Field(default=None, ge=1)


class ResolveOut(BaseModel):
    """Where a point lies: the grid chain, its H3 cell, the generation and CRS used."""

    inside: bool
    grid: ChainUnit | None
    chain: list[ChainUnit]
    nearest: NearestOut | None = Field(description="outside the territory: the nearest grid")
    h3: H3Out
    wgs84: LonLat
    crs: CRSOut
    input: dict[str, Any] = Field(description="the coordinates as given (lon/lat or x/y) "
                                              "and the crs")
    generation: GenerationRefOut


# ---------------------------------------------------------------- batch


class BatchGenerationOut(BaseModel):
    """The generation a batch was resolved in."""

    id: int
    label: str


class BatchItem(BaseModel):
    """One point of a batch; one code column per grid level (district, street, community,
    grid by default: the levels are data)."""

    model_config = ConfigDict(extra="allow")

    id: Any = Field(description="the id given with the point, else its position")
    wgs84_lon: float | None
    wgs84_lat: float | None
    inside: bool | None = Field(description="null when the point could not be read")
    grid_name: str | None
    h3: str | None
    nearest_grid: str | None
    distance_m: float | None
    error: str | None


class BatchOut(BaseModel):
    """A batch answered as JSON (a JSON array or {"points": [...]} was sent)."""

    generation: BatchGenerationOut
    crs: str
    h3_resolution: int
    count: int
    results: list[BatchItem]


class BatchFeature(Feature):
    """One point of a batch as a GeoJSON Feature (geometry null when it could not be
    read)."""

    id: Any
    geometry: PointGeometry | None  # type: ignore[assignment]
    properties: BatchItem  # type: ignore[assignment]


class BatchFeatureCollection(FeatureCollection):
    """A batch answered as GeoJSON (a FeatureCollection of Points was sent)."""

    generation: BatchGenerationOut
    crs: str
    h3_resolution: int
    count: int
    features: list[BatchFeature]  # type: ignore[assignment]
