"""Shapes of the OGC API Features answers (Part 1 Core, the queryables of Part 3)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OgcLink(BaseModel):
    """A link: where, how it relates, its media type."""

    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class LandingPage(BaseModel):
    """The landing page: the service-desc, conformance and data links among others."""

    title: str
    description: str
    links: list[OgcLink]


class ConformanceOut(BaseModel):
    """The conformance classes implemented."""

    conformsTo: list[str]


class SpatialExtent(BaseModel):
    bbox: list[list[float]] = Field(description="minlon, minlat, maxlon, maxlat")
    crs: str


class TemporalExtent(BaseModel):
    interval: list[list[str | None]]
    trs: str


class Extent(BaseModel):
    spatial: SpatialExtent | None = None
    temporal: TemporalExtent | None = None


class CollectionOut(BaseModel):
    """A collection: a grid level of a generation or a responsibility layer."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    description: str
    itemType: Literal["feature"]
    links: list[OgcLink]
    crs: list[str] | None = None
    storageCrs: str | None = None
    extent: Extent | None = None
    generation: int | None = Field(default=None, description="grid levels: the generation")


class CollectionsOut(BaseModel):
    """Every collection."""

    links: list[OgcLink]
    collections: list[CollectionOut]


class QueryablesOut(BaseModel):
    """A JSON Schema of the properties a filter may name."""

    model_config = ConfigDict(populate_by_name=True)
    schema_: str = Field(alias="$schema")
    id_: str = Field(alias="$id")
    type: Literal["object"]
    title: str
    properties: dict[str, dict[str, Any]]
    additionalProperties: bool


class OgcFeature(BaseModel):
    """A feature: a grid unit (id = its code) or a layer row (id = its key)."""

    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] | None
    properties: dict[str, Any]
    links: list[OgcLink] | None = None


class OgcWritten(OgcFeature):
    """A feature as a write stored it; a draft's grid edit says what it did."""

    edit: dict[str, Any] | None = Field(default=None, description="a grid edit: the units "
                                        "it ended, created and changed, its validation")


class OgcDeleted(BaseModel):
    """What a DELETE did: a layer row retired (valid_to), a draft's unit merged away."""

    deleted: str
    collection: str
    valid_to: str | None = None
    edit: dict[str, Any] | None = None


class OgcFeatureCollection(BaseModel):
    """A page of features."""

    type: Literal["FeatureCollection"]
    numberMatched: int
    numberReturned: int
    timeStamp: str
    links: list[OgcLink]
    features: list[OgcFeature]
