"""What a row of each responsibility layer may hold: pydantic models shared by the API,
the bulk importers and the demo loader (one validation for every way in)."""

from __future__ import annotations

import re
from datetime import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from layers.text import find_bad_text

CODE = r"^[A-Za-z0-9_.\-]{1,64}$"


class LayerRow(BaseModel):
    """Common configuration: no unknown fields, strings stripped, text that can be stored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, v: Any) -> Any:
        bad = find_bad_text(v, "value")
        if bad:
            raise ValueError(bad.removeprefix("value: "))
        return v


class DepartmentIn(LayerRow):
    """A linkage unit."""

    code: str = Field(pattern=r"^[A-Z0-9\-]{1,32}$")
    name: str = Field(min_length=1, max_length=200)
    name_en: str = ""
    tier: int = Field(ge=1, le=3)
    parent_code: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    territory_code: str | None = Field(default=None, pattern=r"^[0-9]{6,15}$")
    attributes: dict[str, Any] = Field(default_factory=dict)


class CategoryIn(LayerRow):
    """A component or event class and how its owner is found."""

    code: str = Field(pattern=r"^[CE][0-9]{4}$")
    kind: Literal["component", "event"]
    major_code: str = Field(pattern=r"^[CE]?[0-9]{2}$")
    major_name: str
    major_name_en: str = ""
    name: str
    name_en: str = ""
    default_department: str
    deadline_hours: int = Field(ge=1, le=24 * 365)
    owner_rule: Literal["asset", "area", "category", "specialist"]
    asset_kind: str | None = None
    area_kinds: list[str] = Field(default_factory=list)
    snap_radius_m: float = Field(default=0.0, ge=0, le=500)
    duplicate_radius_m: float | None = Field(
        default=None, ge=0, le=1000, description="a new report this near an open case of "
        "the category joins it (default GRIDOPS_DUPLICATE_RADIUS_M)")
    duplicate_window_h: float | None = Field(
        default=None, gt=0, le=720, description="...if that case is this recent (default "
        "GRIDOPS_DUPLICATE_WINDOW_H)")

    @field_validator("asset_kind")
    @classmethod
    def _kind(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z0-9_]{1,64}", v):
            raise ValueError("asset_kind is lower-case letters, digits and _")
        return v


class AssetIn(LayerRow):
    """A component in public space (geometry given separately, as GeoJSON)."""

    code: str = Field(pattern=r"^[0-9]{16}$", description="6 district + 2 major + 2 minor "
                      "+ 6 serial digits")
    category_code: str = Field(pattern=r"^C[0-9]{4}$")
    kind: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    name: str = ""
    supervising_department: str
    owner_department: str
    maintainer_department: str
    state: Literal["intact", "damaged", "missing", "occupied"] = "intact"
    source: str = "manual"
    attributes: dict[str, Any] = Field(default_factory=dict)


class AreaIn(LayerRow):
    """An ownership area: road red line, residential compound, park, river, campus..."""

    code: str = Field(pattern=CODE)
    kind: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    name: str = ""
    owner_department: str
    priority: int = Field(default=0, ge=0, le=1000)
    applies_to: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ZoneIn(LayerRow):
    """A zone of a department's own zoning layer."""

    department_code: str
    layer: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    code: str = Field(pattern=CODE)
    name: str = ""


class TeamIn(LayerRow):
    """A patrol team and its members."""

    code: str = Field(pattern=CODE)
    name: str
    department_code: str
    members: list[dict[str, Any]] = Field(default_factory=list)


class AssignmentIn(LayerRow):
    """A team's shift on a grid."""

    team_code: str
    grid_code: str = Field(pattern=r"^[0-9]{6,32}$")
    shift: Literal["day", "night"]
    weekdays: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])
    start_time: time
    end_time: time

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if not v or any(d < 1 or d > 7 for d in v):
            raise ValueError("weekdays are 1 (Monday) to 7 (Sunday)")
        return sorted(set(v))


class RoleIn(LayerRow):
    """A person of a grid's 1 + X + Y."""

    grid_code: str = Field(pattern=r"^[0-9]{6,32}$")
    role: Literal["auxiliary", "supervisor", "volunteer", "building_leader", "specialist"]
    name: str
    phone: str | None = None
    department_code: str | None = None
