"""The JSON views of a case: as its handlers see it (the reporter's contact and rating code
for the centre only), as the public sees it by its reference, and its events. A case is
named by its public reference everywhere: no database id is ever shown."""

from __future__ import annotations

from typing import Any

from layers.cases import Stored
from layers.masking import mask_contacts, mask_value
from layers.models import Case, CaseEvent
from layers.rating import rating_code
from layers.workflow import allowed


def view(case: Case | Stored, *, private: bool, duplicate_ref: str | None,
         key: bytes | None = None) -> dict[str, Any]:
    """A case as the API shows it, with `duplicate_ref` (the reference of the case it
    duplicates) as its duplicate_of; reporter contact (and, given the key, the rating code
    for the reporter) only when private is allowed."""
    out = {
        "ref": case.ref, "channel": case.channel, "category": case.category_code,
        "description": case.description if private else mask_contacts(case.description),
        "status": case.status, "version": case.version,
        "inside": case.inside, "grid": case.grid_code, "street": case.street_code,
        "h3": case.h3_cell, "generation": case.generation_id,
        "department": case.owner_department, "deadline_at": case.deadline_at,
        "escalation": case.escalation, "reporters": case.reporters,
        "duplicate_of": duplicate_ref, "satisfaction": case.satisfaction,
        "created_at": case.created_at, "updated_at": case.updated_at,
        "closed_at": case.closed_at, "resolution": case.resolution,
        "allowed": allowed(case.status),
    }
    if private:
        out["reporter"] = {"name": case.reporter_name, "phone": case.reporter_phone,
                           "email": case.reporter_email, "device_id": case.reporter_device}
        if key is not None:
            out["rating_code"] = rating_code(key, case.ref)
    return out


def public_view(case: Case) -> dict[str, Any]:
    """What a citizen may see of a case by its reference: no personal data."""
    return {"ref": case.ref, "category": case.category_code, "status": case.status,
            "created_at": case.created_at, "updated_at": case.updated_at,
            "closed_at": case.closed_at, "department": case.owner_department,
            "satisfaction": case.satisfaction, "can_rate": case.status == "closed"}


def event_view(e: CaseEvent, *, private: bool) -> dict[str, Any]:
    """One event of a case's log: who, in which role, when, from which state to which; its
    note and data masked unless private is allowed (the report's note is the description)."""
    return {"at": e.at, "actor": e.actor, "role": e.role, "action": e.action,
            "from": e.from_status, "to": e.to_status,
            "note": e.note if private else mask_contacts(e.note),
            "data": e.data if private else mask_value(e.data)}
