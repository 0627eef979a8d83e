"""Generations (versions of the grid), their validation problems, and import jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from api.schemas.common import GenerationOut


class GenerationDetail(GenerationOut):
    """A generation with its state and units per level."""

    state: Literal["draft", "active", "past"]
    counts: dict[str, int]


class DiscardOut(BaseModel):
    """What discarding a draft did."""

    generation: int
    discarded: bool
    removed_rows: int
    restored_rows: int


class ProblemProperties(BaseModel):
    """One broken invariant."""

    kind: str
    codes: list[str]
    detail: str
    area_m2: float | None = None
    location: list[float] | None = None


class ProblemFeature(BaseModel):
    """A problem with its own geometry: the sliver, gap or overlap itself, or a point."""

    type: Literal["Feature"]
    geometry: dict[str, Any] | None
    properties: ProblemProperties


class ProblemCollection(BaseModel):
    """The validation report of a generation as GeoJSON."""

    type: Literal["FeatureCollection"]
    generation: int
    counts: dict[str, int]
    tolerance_m2: float
    features: list[ProblemFeature]


class JobProgress(BaseModel):
    done: int | None
    total: int | None
    message: str | None


class JobOut(BaseModel):
    """A background job (an import): poll it until its state is done or failed."""

    id: int
    kind: str
    state: Literal["queued", "running", "done", "failed"]
    payload: dict[str, Any]
    result: Any = None
    error: dict[str, Any] | None = None
    progress: JobProgress
    attempts: int
    max_attempts: int
    created_by: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    worker: str | None = None
    blob_bytes: int | None = None
    href: str
