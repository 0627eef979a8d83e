"""Response models (pydantic) for the read API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class GenerationOut(BaseModel):
    """A version of the grid."""

    id: int
    label: str
    note: str
    created_at: datetime
    activated_at: datetime | None
    active: bool


class Health(BaseModel):
    """Is the service usable, and what does it serve."""

    status: str = Field(description="ok, or degraded when the database is unreachable")
    database: bool
    active_generation: GenerationOut | None
    units_per_level: dict[str, int]
    levels: list[dict[str, Any]]


class UnitRef(BaseModel):
    """A unit named by code, name and level."""

    code: str
    name: str
    level: int
    level_key: str | None = None
    level_name: str | None = None


class Neighbour(BaseModel):
    """A unit of the same level sharing an edge (四至)."""

    code: str
    name: str
    side: str = Field(description="north, east, south or west of the unit")
    shared_boundary_m: float
    bearing_deg: float
