"""Who is responsible here: the owner answer (/owner) with the trail of every rule tried,
everything at a spot (/lookup), and the 多格合一 alignment of departments' zones with the
grid (/alignment)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.schemas.common import CRSOut, Geometry, LonLat
from api.schemas.grids import ChainUnit

# ---------------------------------------------------------------- the owner answer


class DepartmentRef(BaseModel):
    """A department as answers show it (an inactive code: name and tier null, known
    false)."""

    model_config = ConfigDict(extra="allow")

    code: str
    name: str | None
    name_en: str | SkipJsonSchema[None] = None
    tier: int | None
    contact_phone: str | None = None
    known: bool | SkipJsonSchema[None] = Field(
        default=None, description="false when the code names no active department")


class DuplicateRule(BaseModel):
    """The duplicate rule intake applies to the category."""

    radius_m: float
    window_h: float


class CategoryRef(BaseModel):
    """The category asked about."""

    code: str
    name: str
    name_en: str
    kind: str
    owner_rule: str = Field(description="asset, area, category or specialist")
    deadline_hours: int
    duplicate: DuplicateRule


class AssetCandidate(BaseModel):
    """An asset a rule looked at."""

    code: str
    kind: str
    name: str
    distance_m: float
    owner: str
    maintainer: str
    supervising: str
    state: str


class AreaCandidate(BaseModel):
    """An ownership area a rule looked at."""

    code: str
    kind: str
    name: str
    owner: str
    priority: int
    applies: bool


class Candidate(BaseModel):
    """A department that may own a disputed spot, and why."""

    model_config = ConfigDict(extra="allow")

    department: DepartmentRef
    via: str = Field(description="asset, area or territorial")
    asset: str | SkipJsonSchema[None] = Field(default=None, description="via asset")
    distance_m: float | SkipJsonSchema[None] = Field(default=None, description="via asset")
    area: str | SkipJsonSchema[None] = Field(default=None, description="via area")
    kind: str | SkipJsonSchema[None] = Field(default=None, description="via area")


class Specialist(BaseModel):
    """The grid's specialist for a department (the Y of 1 + X + Y)."""

    name: str
    phone: str | None
    department: str


class Person(BaseModel):
    """A named person with a phone."""

    name: str | None
    phone: str | None


class PatrolOnDuty(BaseModel):
    """A patrol team on duty in the grid at the time asked."""

    team: str
    name: str | None
    department: str | None
    shift: str
    from_: str = Field(alias="from", description="HH:MM, local")
    to: str = Field(description="HH:MM, local")
    members: list[dict[str, Any]]


class TrailStep(BaseModel):
    """One rule of the owner resolution: tried, and why it won, lost or was skipped."""

    rule: str = Field(description="asset, area, category, specialist or territorial")
    outcome: str = Field(description="won, lost, disputed or skipped")
    candidates: list[dict[str, Any]]
    reason: str


class OwnerAnswer(BaseModel):
    """The responsible department for a category at a point, with the patrol on duty, the
    grid leader and the trail of every rule tried."""

    category: CategoryRef
    owner: DepartmentRef | None
    decided_by: str | None = Field(description="the rule that decided")
    disputed: bool
    candidates: list[Candidate]
    asset: AssetCandidate | None
    area: AreaCandidate | None
    specialist: Specialist | None
    grid_leader: Person | None
    patrol: list[PatrolOnDuty]
    at: datetime
    trail: list[TrailStep]


class OwnerOut(OwnerAnswer):
    """/owner: the point, its grid chain and the owner answer."""

    wgs84: LonLat
    crs: CRSOut
    inside: bool
    chain: list[ChainUnit]
    h3: str
    generation: int


# ---------------------------------------------------------------- everything at a spot


class ZoneHere(BaseModel):
    """A department zone covering the spot."""

    layer: str
    code: str
    name: str
    department_code: str
    department_name: str | None
    geometry: Geometry


class AreaHere(BaseModel):
    """An ownership area covering the spot."""

    code: str
    kind: str
    name: str
    owner_department: str
    owner_name: str | None
    priority: int
    applies_to: list[str]
    geometry: Geometry


class AssetHere(BaseModel):
    """An asset within the radius."""

    code: str
    kind: str
    category_code: str
    name: str
    state: str
    owner_department: str
    owner_name: str | None
    maintainer_department: str
    supervising_department: str
    grid_code: str | None
    distance_m: float
    geometry: Geometry


class LookupOut(BaseModel):
    """Everything at a spot, for settling a dispute."""

    crs: CRSOut
    wgs84: LonLat
    radius_m: float
    at: datetime
    inside: bool
    chain: list[ChainUnit]
    h3: str
    generation: int
    zones: list[ZoneHere]
    areas: list[AreaHere]
    assets: list[AssetHere] = Field(description="nearest first, at most 200")
    owners: list[OwnerAnswer] = Field(description="for the category asked, else for every "
                                                  "category with a candidate here")


# ---------------------------------------------------------------- alignment (多格合一)


class AlignmentRank(BaseModel):
    """A department's alignment figures and rank."""

    department: str
    zones: int
    grids: int
    grids_whole: int
    grids_split: int
    grids_uncovered: int
    score: float = Field(description="share of grids wholly inside one zone")
    slivers: int
    rank: int


class AlignmentRanking(BaseModel):
    """Every department with a zone layer, best aligned first."""

    generation: int
    at: datetime
    ranking: list[AlignmentRank]


class Sliver(BaseModel):
    """A zone's share of a grid under the sliver threshold."""

    grid: str
    zone: str
    shared_m2: float


class ZoneShare(BaseModel):
    """A zone covering part of a grid."""

    layer: str
    zone: str
    name: str
    shared_m2: float
    share: float = Field(description="of the grid's area")


class GridAlignment(BaseModel):
    """The zones covering a grid."""

    grid: str
    name: str
    area_m2: float
    zones: list[ZoneShare]
    whole: bool = Field(description="one zone covers at least whole_share of it")


class AlignmentOut(BaseModel):
    """How a department's zones line up with the finest grids."""

    department: str
    generation: int
    at: datetime
    zones: int
    grids: int
    grids_whole: int
    grids_split: int
    grids_uncovered: int
    score: float
    whole_share: float
    sliver_m2: float
    slivers: list[Sliver]
    by_grid: list[GridAlignment]
