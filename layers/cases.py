"""The shared vocabulary of cases: who acts, a report as it arrives, a case as intake stored
it, the channels reports come by, and what a resolution says that a case row keeps in its
own columns. No database here: intake (layers.intake), actions (layers.case_actions), reads
(layers.case_queries) and the JSON view (layers.case_view) all speak these types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spatial.errors import InvalidInput

CHANNELS = ("hotline_12345", "hotline_12319", "hotline_962121", "hotline_110", "patrol_app",
            "camera", "web", "letter", "media", "open311")


def check_channel(channel: str) -> None:
    """422 for a channel gridops does not know."""
    if channel not in CHANNELS:
        raise InvalidInput(f"channel: {channel!r} is not one of {', '.join(CHANNELS)}")


@dataclass(frozen=True)
class Actor:
    """Who acts: a name, a role, and for department handlers their department."""

    name: str
    role: str
    department: str | None = None


@dataclass(frozen=True)
class Intake:
    """A report as it arrives, already normalised to WGS84 and resolved."""

    channel: str
    category: str
    lon: float
    lat: float
    input_crs: str
    description: str
    reporter_name: str | None
    reporter_phone: str | None
    idempotency_key: str | None
    resolution: dict[str, Any]  # chain, h3, generation, owner answer with its trail
    reporter_email: str | None = None
    reporter_device: str | None = None  # the app's device id (Open311 device_id)


@dataclass(frozen=True)
class Stored:
    """A case as intake stored it: the fields the view shows, without loading it back."""

    id: int  # the database's own key: never shown
    ref: str
    channel: str
    category_code: str
    description: str
    status: str
    inside: bool
    grid_code: str | None
    street_code: str | None
    h3_cell: str | None
    generation_id: int | None
    owner_department: str | None
    duplicate_ref: str | None  # the reference of the open case it joined
    created_at: datetime
    resolution: Any  # the stored JSON as an orjson.Fragment (written once, sent as is)
    updated_at: datetime
    reporter_name: str | None
    reporter_phone: str | None
    reporter_email: str | None
    reporter_device: str | None
    version: int = 1
    reporters: int = 1
    escalation: int = 0
    deadline_at: datetime | None = None
    satisfaction: int | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True)
class Answer:
    """What a resolution says that is kept in the case row's own columns."""

    inside: bool
    grid: str | None
    street: str | None
    dept: str | None  # the owner department the rules found
    disputed: Any
    asset: str | None  # the asset that decided, if one did


def answer_of(resolution: dict[str, Any]) -> Answer:
    """The grid, street, owner and deciding asset of a stored resolution."""
    chain = resolution.get("chain") or []
    owner = resolution.get("owner") or {}
    return Answer(bool(chain), chain[-1]["code"] if chain else None,
                  next((u["code"] for u in chain if u["level"] == 2), None),
                  (owner.get("owner") or {}).get("code"), owner.get("disputed"),
                  (owner.get("asset") or {}).get("code"))
