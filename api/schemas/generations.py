"""Generations (versions of the grid), their validation problems, and import jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import GenerationOut


class GenerationDetail(GenerationOut):
    """A generation with its state and units per level."""

    state: Literal["draft", "active", "past"]
    counts: dict[str, int]
    created_by: str | None = Field(default=None, description="who made the draft")
    base: int | None = Field(default=None, description="the generation it was made from")


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


# ---------------------------------------------------------------- planners' drafts

Geometry = dict[str, Any]
CRS_FIELD = Field(default=None, max_length=80, description="the CRS of the geometries "
                  "(default EPSG:4326 lon/lat; any EPSG code, GCJ-02, BD-09)")
Code = Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")


class DraftIn(BaseModel):
    """A new draft: from the active generation, or from another (a rollback)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_generation: int | None = Field(default=None, alias="from", ge=1, le=2_147_483_647,
                                        description="make it from this generation "
                                        "(default: the active one)")
    label: str | None = Field(default=None, max_length=200)
    note: str = Field(default="", max_length=4000)


class SplitIn(BaseModel):
    """Split a unit by a cutting line, or into the given parts."""

    model_config = ConfigDict(extra="forbid")
    code: str = Code
    line: Geometry | None = Field(default=None, description="a GeoJSON LineString crossing "
                                  "the unit from one edge to another")
    parts: list[Geometry] | None = Field(default=None, max_length=99,
                                         description="or the parts as GeoJSON polygons")
    names: list[str] | None = Field(default=None, max_length=99,
                                    description="the parts' names in serial order "
                                    "(default: derived from the unit's)")
    crs: str | None = CRS_FIELD


class MergeIn(BaseModel):
    """Merge sibling units."""

    model_config = ConfigDict(extra="forbid")
    codes: list[str] = Field(min_length=2, max_length=100)
    keep: str | None = Field(default=None, max_length=32, description="the code the result "
                             "keeps (one of codes; default: the next free code)")
    name: str | None = Field(default=None, max_length=200)


class RedrawIn(BaseModel):
    """Move the boundary two units share: a new line for it, or the first's new shape."""

    model_config = ConfigDict(extra="forbid")
    codes: list[str] = Field(min_length=2, max_length=2)
    line: Geometry | None = Field(default=None, description="the new boundary: a GeoJSON "
                                  "LineString across the two units' outline")
    geometry: Geometry | None = Field(default=None, description="or the first unit's new "
                                      "polygon (the second takes the rest)")
    crs: str | None = CRS_FIELD


class MoveIn(BaseModel):
    """Give a unit another parent (it takes a new code under it)."""

    model_config = ConfigDict(extra="forbid")
    code: str = Code
    parent: str = Code
    name: str | None = Field(default=None, max_length=200)


class EditUnit(BaseModel):
    level: int
    parent: str | None
    name: str
    area_m2: float
    etag: str | None = Field(description="the unit's new ETag (null in a dry run)")


class EditValidation(BaseModel):
    ok: bool
    checked_units: int
    took_ms: float


class EditOut(BaseModel):
    """What an edit did (or, in a dry run, would do)."""

    generation: int
    action: str
    dry_run: bool
    ended: list[str]
    created: list[str]
    changed: list[str]
    parents_updated: list[str]
    units: dict[str, EditUnit]
    validation: EditValidation


class DraftUnitProperties(BaseModel):
    code: str
    name: str
    level: int
    parent_code: str | None
    leader_name: str | None
    leader_phone: str | None
    attributes: dict[str, Any]
    area_m2: float
    generation_low: int
    revision: int
    etag: str


class DraftUnitFeature(BaseModel):
    """A unit as a draft holds it (full precision), with its ETag."""

    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any]
    properties: DraftUnitProperties


class EventOut(BaseModel):
    """One planning step."""

    id: int
    generation: int
    at: datetime
    actor: str
    action: str
    codes: list[str]
    detail: dict[str, Any]
