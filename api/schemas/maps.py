"""The wall map's live data: /map/wall/counts.json and /map/wall/open.json."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from api.schemas.common import Feature, FeatureCollection, PointGeometry


class WallCounts(BaseModel):
    """The wall's corner panel."""

    open: int
    overdue: int
    escalated: int
    outside: int = Field(description="open cases outside every grid")
    today: int = Field(description="reported today (local day)")
    closed_today: int


class OpenCaseProperties(BaseModel):
    """An open case on screen (no reporter's data)."""

    ref: str
    category: str
    status: str
    escalation: int
    overdue: bool
    department: str | None
    grid: str | None
    created_at: datetime
    count: int = Field(description="1")
    overdue_count: int
    escalated_count: int


class PointFeatureWithId(Feature):
    """A Point feature named by an id of text."""

    id: str
    geometry: PointGeometry  # type: ignore[assignment]


class OpenCaseFeature(PointFeatureWithId):
    """An open case (its id is its reference)."""

    properties: OpenCaseProperties  # type: ignore[assignment]


class OpenCellProperties(BaseModel):
    """Open cases of an H3 cell, counted."""

    count: int
    overdue_count: int
    escalated_count: int
    h3: str


class OpenCellFeature(PointFeatureWithId):
    """An H3 cell's open cases at their centroid (its id is the cell)."""

    properties: OpenCellProperties  # type: ignore[assignment]


class OpenCases(FeatureCollection):
    """Open cases in a box: one by one up to a few hundred, else per H3 cell."""

    aggregated: bool = Field(description="true: one feature an H3 cell at res")
    res: int | SkipJsonSchema[None] = Field(
        default=None, description="the cells' H3 resolution (only when aggregated)")
    total: int = Field(description="open cases in the box")
    features: list[OpenCaseFeature | OpenCellFeature]  # type: ignore[assignment]


class WallLabel(BaseModel):
    """Where the wall writes a unit's name: a point inside it."""

    code: str
    name: str
    lon: float
    lat: float
