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


class IntakeStats(BaseModel):
    """One worker's intake writer: what it stored since the worker started."""

    worker_pid: int
    running: bool = Field(description="its thread is alive (it starts with the first report)")
    queued: int = Field(description="reports waiting for the next batch now")
    batches: int = Field(description="transactions that stored reports")
    stored: int = Field(description="new cases, merged duplicates included")
    replayed: int = Field(description="retried requests answered with their first case")
    failed: int = Field(description="reports answered with an error")
    fallbacks: int = Field(description="batches rolled back and stored one report at a time")
    largest_batch: int
    last_batch_at: float | None = Field(description="epoch seconds of the last commit")


class Health(BaseModel):
    """Is the service usable, and what does it serve."""

    status: str = Field(description="ok, or degraded when the database is unreachable")
    database: bool
    active_generation: GenerationOut | None
    units_per_level: dict[str, int]
    levels: list[dict[str, Any]]
    intake: IntakeStats | None = Field(
        default=None, description="the answering worker's intake writer (each worker has one)")


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


class ChainUnit(BaseModel):
    """A unit of the grid chain."""

    code: str
    name: str
    level: int
    level_key: str
    level_name: str


class CRSOut(BaseModel):
    """The coordinate system an answer assumed."""

    key: str
    name: str


class H3Out(BaseModel):
    """The H3 cell of the point."""

    cell: str
    resolution: int


class GenerationRefOut(BaseModel):
    """The generation an answer used."""

    id: int
    label: str
    activated_at: datetime | None


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
    at: datetime | None = Field(default=None, description="resolve against the grid as of")
    generation: int | None = Field(default=None, ge=1)


class ResolveOut(BaseModel):
    """Where a point lies: the grid chain, its H3 cell, the generation and CRS used."""

    inside: bool
    grid: ChainUnit | None
    chain: list[ChainUnit]
    nearest: NearestOut | None = Field(description="outside the territory: the nearest grid")
    h3: H3Out
    wgs84: dict[str, float]
    crs: CRSOut
    input: dict[str, Any]
    generation: GenerationRefOut
