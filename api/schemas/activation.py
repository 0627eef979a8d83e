"""Activating a draft generation: what the planner asks for and what the activation did."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

UnitCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9]+$")]


class PatrolChoice(BaseModel):
    """Where a new finest unit takes its patrol assignments and grid roles from: an old
    unit ({"from": code}), or nowhere ({"none": true}: it stays unpatrolled, on purpose)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_code: UnitCode | None = Field(default=None, alias="from",
                                       description="a unit of the generation being replaced")
    none: Literal[True] | None = Field(default=None, description="inherit nothing")

    @model_validator(mode="after")
    def _one(self) -> PatrolChoice:
        if (self.from_code is None) == (self.none is None):
            raise ValueError('give either "from" (an old unit code) or "none": true')
        return self

    def as_choice(self) -> dict[str, Any]:
        """The form layers.activation takes."""
        return {"from": self.from_code} if self.from_code is not None else {"none": True}


class ActivateIn(BaseModel):
    """How to activate a draft (every field optional)."""

    model_config = ConfigDict(extra="forbid")
    open_cases: Literal["keep", "rehome"] = Field(
        default="keep", description="keep: open cases keep their stored answer; rehome: each "
        "open case whose grid or street changes is re-resolved (action re_resolve, one "
        "event each, the old answer kept in it)")
    patrol: dict[UnitCode, PatrolChoice] = Field(
        default_factory=dict, max_length=10_000,
        description="per new finest unit: where it takes patrol and roles from (default: "
        "the predecessor with the largest share of its area)")
    confirm_unpatrolled: list[UnitCode] | bool = Field(
        default_factory=list, description="new finest units that may stay without a patrol "
        "team (true: all of them); without it such a unit makes the activation a 409")
    dry_run: bool = Field(default=False, description="answer what it would do, keep nothing")


class InheritedPatrol(BaseModel):
    """Patrol shifts a new unit took over."""

    model_config = ConfigDict(extra="allow")
    code: str
    from_code: str = Field(alias="from")
    reason: str = Field(description="largest_share or planner")
    teams: list[str]
    shifts: list[str] = Field(description="team/shift")


class InheritedRoles(BaseModel):
    """Grid roles (1 + X + Y) a new unit took over."""

    model_config = ConfigDict(extra="allow")
    code: str
    from_code: str = Field(alias="from")
    reason: str
    roles: list[dict[str, Any]]


class AssignmentsDone(BaseModel):
    """What happened to patrol assignments."""

    inherited: list[InheritedPatrol]
    ended: int = Field(description="assignments on units that ended, ended at activation")
    unpatrolled_confirmed: list[str] = Field(
        description="new finest units left without a patrol team, as confirmed")


class RolesDone(BaseModel):
    """What happened to grid roles."""

    inherited: list[InheritedRoles]
    ended: int


class CaseLeft(BaseModel):
    """An open case re-homing left as it was, and why."""

    ref: str
    reason: str


class ValidationDone(BaseModel):
    ok: bool


class ActivateOut(BaseModel):
    """What the activation did (or, in a dry run, would do)."""

    generation: int
    activated_at: datetime
    previous: int | None = Field(description="the generation it replaced")
    dry_run: bool
    validation: ValidationDone
    lineage_rows: int = Field(description="grid_lineage rows recorded")
    open_cases: Literal["keep", "rehome"]
    cases_rehomed: list[str] = Field(description="references of the re-resolved cases")
    cases_kept: int = Field(description="open cases whose grid or street changes that kept "
                            "their stored answer")
    cases_not_rehomed: list[CaseLeft]
    assets_moved: int = Field(description="current assets whose grid changed")
    assignments: AssignmentsDone
    roles: RolesDone
