"""Planning answers: the impact preview of a draft generation (GET
/generations/{id}/impact) and a unit's lineage through the generations (GET
/grids/{code}/lineage)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import Geometry

Change = Literal["split", "merge", "redraw", "reparent", "attributes", "new", "ended"]


# ---------------------------------------------------------------- impact


class ImpactSummary(BaseModel):
    """How much a draft changes."""

    units_changed: int = Field(description="codes both generations have, with a new row")
    units_new: int = Field(description="codes only the draft has")
    units_ended: int = Field(description="codes only the active generation has")
    open_cases_moved: int
    assets_moved: int
    unpatrolled: int = Field(description="new finest units with no patrol after inheritance")


class AreaShare(BaseModel):
    """Area taken from (or given to) another unit at the same level."""

    code: str
    area_m2: float
    share: float = Field(description="in `from`: share of this unit's new area; in `to`: "
                                     "share of this unit's old area")


class ImpactUnit(BaseModel):
    """A changed, new or ended unit: its areas and where the area came from and went."""

    code: str
    name: str
    level: int
    level_key: str
    change: Change
    old_area_m2: float | None
    new_area_m2: float | None
    from_: list[AreaShare] = Field(alias="from", description="its predecessors (active "
                                                             "generation)")
    to: list[AreaShare] = Field(description="its successors (the draft)")


class CaseAnswer(BaseModel):
    """A case's grid, street and owner department."""

    grid: str | None
    street: str | None
    owner: str | None


class ImpactCase(BaseModel):
    """An open case whose grid or street the draft would change; `new` is what a
    re-resolution would store (the owner moves only before a dispatch)."""

    ref: str
    status: str
    category: str
    lon: float
    lat: float
    old: CaseAnswer
    new: CaseAnswer


class ImpactAsset(BaseModel):
    """An asset whose grid the draft would change."""

    code: str
    kind: str
    lon: float
    lat: float
    old_grid: str | None
    new_grid: str | None


class PatrolEnding(BaseModel):
    """A patrol assignment on a unit that ends."""

    grid_code: str
    team_code: str
    shift: str


class PatrolInherited(BaseModel):
    """What a new finest unit would inherit: the teams of its predecessor with the largest
    share of its area."""

    code: str
    from_: str | None = Field(alias="from", description="null: a unit with no predecessor")
    teams: list[str]


class ImpactPatrol(BaseModel):
    """Patrol assignments that end, are inherited, and new finest units left with none."""

    ending: list[PatrolEnding]
    inherited: list[PatrolInherited]
    unpatrolled: list[str]


class RoleRow(BaseModel):
    """A person's role in a grid (1 + X + Y)."""

    role: str
    name: str
    department_code: str | None


class RoleEnding(RoleRow):
    """A grid role on a unit that ends."""

    grid_code: str


class RoleInherited(BaseModel):
    """The roles a new unit would inherit from its predecessor with the largest share."""

    code: str
    from_: str = Field(alias="from")
    roles: list[RoleRow]


class ImpactRoles(BaseModel):
    """Grid roles that end and that would be inherited."""

    ending: list[RoleEnding]
    inherited: list[RoleInherited]


class AlignmentChange(BaseModel):
    """A department's 多格合一 alignment score (share of finest grids wholly in one of its
    zones) before and after."""

    department: str
    layer: str = Field(description="its zone layers, comma separated")
    before: float
    after: float


class StreetCounts(BaseModel):
    """Per street (level 2): changed units in it before or after, open cases and assets
    moving into or out of it."""

    code: str
    name: str | None
    units_changed: int
    cases_moved: int
    assets_moved: int


class ChangeProperties(BaseModel):
    """An outline's unit, side and change."""

    code: str
    name: str
    level: int
    side: Literal["old", "new"]
    change: Change


class ChangeFeature(BaseModel):
    """The outline of a changed unit on one side."""

    type: Literal["Feature"]
    id: str = Field(description="side:code")
    geometry: Geometry
    properties: ChangeProperties


class ChangeCollection(BaseModel):
    """Every changed, new and ended unit's outline, old and new side."""

    type: Literal["FeatureCollection"]
    features: list[ChangeFeature]


class ImpactOut(BaseModel):
    """What activating a draft would change, against the active generation."""

    generation: int
    against: int = Field(description="the active generation it is compared with")
    took_ms: float
    summary: ImpactSummary
    units: list[ImpactUnit]
    cases: list[ImpactCase]
    assets: list[ImpactAsset]
    patrol: ImpactPatrol
    roles: ImpactRoles
    alignment: list[AlignmentChange]
    streets: list[StreetCounts]
    changes: ChangeCollection


# ---------------------------------------------------------------- lineage


class LineageRow(BaseModel):
    """A row of a unit: its code and the generations it is valid in."""

    code: str
    level: int
    generation_low: int
    generation_high: int | None = Field(description="null: still current")


class LineageStep(BaseModel):
    """One link: the unit `to` of generation `generation` took area from `from`."""

    generation: int = Field(description="the generation that made the change")
    depth: int = Field(description="steps away from the asked code")
    kind: Literal["split", "merge", "redraw", "reparent", "attributes", "new"]
    from_: LineageRow = Field(alias="from")
    to: LineageRow
    area_m2: float
    share_of_predecessor: float
    share_of_unit: float


class LineageVersion(BaseModel):
    """A version of the asked code."""

    name: str
    level: int
    parent_code: str | None
    generation_low: int
    generation_high: int | None
    area_m2: float | None


class LineageOut(BaseModel):
    """A unit's lineage both ways through every activated generation."""

    code: str
    versions: list[LineageVersion]
    predecessors: list[LineageStep]
    successors: list[LineageStep]
    codes: list[str] = Field(description="every code related both ways, itself included")
