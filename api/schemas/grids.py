"""The nested grid as answered by /grids: pages of units (GeoJSON), one unit with its
family and neighbours (四至), a unit's history; and a unit of the grid chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Feature, FeatureCollection, GenerationOut, Geometry, Link


class ChainUnit(BaseModel):
    """A unit of the grid chain."""

    code: str
    name: str
    level: int
    level_key: str
    level_name: str


class UnitLeader(BaseModel):
    """The unit's leader (网格长)."""

    name: str | None
    phone: str | None


class UnitProperties(BaseModel):
    """What every unit feature carries."""

    model_config = ConfigDict(extra="allow")

    code: str
    name: str
    level: int
    level_key: str
    level_name: str
    parent_code: str | None
    generation_low: int
    generation_high: int | None = Field(description="the last generation it is valid in "
                                                    "(null: still current)")
    area_m2: float | None
    leader: UnitLeader | None
    attributes: dict[str, Any]


class UnitFeature(Feature):
    """A unit as a GeoJSON Feature (its id is its code)."""

    id: str
    geometry: Geometry
    properties: UnitProperties  # type: ignore[assignment]


class UnitCollection(FeatureCollection):
    """A page of units (links.next when more remain)."""

    generation: int
    numberMatched: int
    numberReturned: int
    links: list[Link]
    features: list[UnitFeature]  # type: ignore[assignment]


class ChildUnit(BaseModel):
    """A direct child of a unit."""

    code: str
    name: str
    level: int
    area_m2: float | None


class Neighbour(BaseModel):
    """A unit of the same level sharing an edge (四至)."""

    code: str
    name: str
    side: str = Field(description="north, east, south or west of the unit")
    shared_boundary_m: float
    bearing_deg: float


class Sizhi(BaseModel):
    """The neighbours' codes by side (四至)."""

    north: list[str]
    east: list[str]
    south: list[str]
    west: list[str]


class UnitDetailProperties(UnitProperties):
    """One unit with its generation, a point on it, its parents, children and
    neighbours."""

    generation: int
    point_on_surface: list[float] = Field(description="[lon, lat] of a point inside")
    parents: list[ChainUnit] = Field(description="top level first")
    children: list[ChildUnit]
    neighbours: list[Neighbour]
    sizhi: Sizhi


class UnitDetail(UnitFeature):
    """One unit as a Feature, with its family and neighbours."""

    properties: UnitDetailProperties


class UnitVersion(BaseModel):
    """A version of a unit, with when it was valid."""

    name: str
    level: int
    parent_code: str | None
    generation_low: int
    generation_high: int | None
    generation_label: str
    valid_from: datetime
    valid_to: datetime | None
    current: bool
    area_m2: float | None
    leader: UnitLeader
    geometry: Geometry


class UnitHistory(BaseModel):
    """Every version of a unit across generations, oldest first."""

    code: str
    versions: list[UnitVersion]
    generations: list[GenerationOut]
