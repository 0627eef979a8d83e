"""Request and response models of the case loop (api/routers/cases.py): a report, an action,
a rating, and the case, its listing, its events and its photos as they are answered. Cases
are named by their public reference (`ref`) everywhere; no database id is answered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from layers.cases import CHANNELS


class Reporter(BaseModel):
    """Who reported (kept private: never on listings or public pages)."""

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)


class CaseIn(BaseModel):
    """A report from any channel."""

    channel: str = Field(description=f"one of {', '.join(CHANNELS)}")
    category: str = Field(description="category code, e.g. C0101 or E0501")
    lon: float | None = None
    lat: float | None = None
    x: float | None = None
    y: float | None = None
    crs: str = "EPSG:4326"
    description: str = Field(default="", max_length=4000)
    reporter: Reporter | None = None


class ActionIn(BaseModel):
    """An action on a case, at the version the caller saw."""

    action: str
    version: int = Field(ge=1, description="the case version the caller saw")
    note: str = Field(default="", max_length=4000)
    data: dict[str, Any] = Field(default_factory=dict)


class RatingIn(BaseModel):
    """A citizen's satisfaction with a closed case."""

    satisfaction: int = Field(ge=1, le=5)
    code: str = Field(min_length=1, max_length=16,
                      description="the rating code the reporter was given with the reference")
    comment: str = Field(default="", max_length=1000)


class ReporterOut(BaseModel):
    """The reporter's contact, as kept with the case (the centre's view only)."""

    name: str | None
    phone: str | None
    email: str | None
    device_id: str | None = Field(description="the app's device id (Open311 device_id)")


class CaseOut(BaseModel):
    """A case with the answer it was given at intake and the actions now allowed."""

    ref: str = Field(description="the public reference, e.g. SJ2026-1A2B3C4D")
    channel: str
    category: str
    description: str = Field(description="phone numbers and e-mails blanked but for the "
                                         "centre's own view")
    status: str
    version: int = Field(description="give it back with an action (optimistic lock)")
    inside: bool = Field(description="inside a grid; a report outside is kept and flagged")
    grid: str | None
    street: str | None
    h3: str | None
    generation: int | None = Field(description="the grid generation it was resolved in")
    department: str | None = Field(description="the owner department")
    deadline_at: datetime | None
    escalation: int = Field(description="0 none, 1 supervision, 2 and 3 joint meetings")
    reporters: int = Field(description="people who reported this problem (duplicates "
                                       "joined to it count)")
    duplicate_of: str | None = Field(description="the reference of the case it duplicates")
    satisfaction: int | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    resolution: dict[str, Any] = Field(description="the whole answer at intake (or at the "
                                                   "last re_resolve): chain, owner, trail")
    allowed: list[str] = Field(description="actions possible from the status")
    reporter: ReporterOut | None = Field(
        default=None, description="the centre's view only (absent for everyone else)")
    rating_code: str | None = Field(
        default=None, description="the centre's view only: the code the reporter rates with")


class CaseList(BaseModel):
    """A page of cases, newest first (no reporter contact on a listing)."""

    numberMatched: int = Field(description="cases matching the filters, all pages")
    items: list[CaseOut]


class CaseEventOut(BaseModel):
    """One entry of a case's log."""

    model_config = ConfigDict(populate_by_name=True)

    at: datetime
    actor: str
    role: str
    action: str
    from_: str | None = Field(alias="from", description="the state before")
    to: str | None = Field(description="the state after")
    note: str
    data: dict[str, Any]


class CaseEvents(BaseModel):
    """Every action on a case, oldest first."""

    ref: str
    events: list[CaseEventOut]


class PhotoOut(BaseModel):
    """A photo as stored: named by its SHA-256."""

    sha256: str
    bytes: int
    type: str = Field(description="image/jpeg, image/png or image/webp")
    file: str = Field(description="its name under GET /cases/{ref}/photos/")


class PhotoAdded(BaseModel):
    """The photo attached (the case's log has a note event for it)."""

    ref: str
    photo: PhotoOut


class PublicCase(BaseModel):
    """What a citizen may see of a case by its reference: no personal data."""

    ref: str
    category: str
    status: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    department: str | None
    satisfaction: int | None
    can_rate: bool = Field(description="closed: the reporter may rate it now")


class RatingOut(BaseModel):
    """The case after the reporter's rating."""

    ref: str
    status: str
    satisfaction: int | None
