"""The responsibility layers as answered by /layers: what layers there are, their rows
(GeoJSON features for spatial layers, plain objects for the others), a row's versions, a
bulk import's report and a retirement."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Feature, FeatureCollection, Geometry


class LayerInfo(BaseModel):
    """A layer and how it is keyed."""

    title: str
    key: list[str] = Field(description="the fields that name a row, in the path's order")
    geometry: list[str] = Field(description="allowed geometry types (none: not spatial)")
    filters: list[str] = Field(description="fields GET /layers/{name} filters on")


class LayerRowOut(BaseModel):
    """A row of a layer: the layer's own fields and when this version was valid."""

    model_config = ConfigDict(extra="allow")

    valid_from: datetime
    valid_to: datetime | None


class LayerFeature(Feature):
    """A row of a spatial layer as a GeoJSON Feature (its id is its key, joined by /)."""

    id: str
    geometry: Geometry | None
    properties: LayerRowOut  # type: ignore[assignment]


class LayerItems(BaseModel):
    """A page of rows of a layer without geometry."""

    numberMatched: int
    numberReturned: int
    layer: str
    items: list[LayerRowOut]


class LayerFeatureCollection(FeatureCollection):
    """A page of rows of a spatial layer."""

    numberMatched: int
    numberReturned: int
    layer: str
    features: list[LayerFeature]  # type: ignore[assignment]


class LayerVersions(BaseModel):
    """Every version of a row, oldest first."""

    layer: str
    key: str
    versions: list[LayerFeature | LayerRowOut]


class RefusedRow(BaseModel):
    """A row a bulk import refused."""

    line: int = Field(description="CSV line, position in the JSON array / features, or a "
                      "file's feature number (from 1)")
    reason: str


class ImportReportOut(BaseModel):
    """What a bulk import did."""

    read: int
    created: int = Field(description="rows whose key was not current: new")
    updated: int = Field(description="rows that differed from the current one: its new "
                         "version (the current one ends)")
    unchanged: int = Field(description="rows identical to the current one: nothing done")
    refused_count: int
    refused: list[RefusedRow] = Field(description="the first 1000")
    notes: list[str] = Field(default_factory=list, description="how a file was read (its "
                             "encoding guessed, its CRS overridden)")


class RetiredOut(BaseModel):
    """A row retired now."""

    retired: str = Field(description="its key")
    valid_to: datetime
