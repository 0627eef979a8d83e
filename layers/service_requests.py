"""The reads of Open311 GeoReport v2: the current categories (its services), and cases as
public service requests (each with its category's and department's names and its latest
note written for the public), with nothing about the reporter and contacts typed into the
text blanked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from layers.masking import mask_contacts
from layers.models import Case, CaseEvent, Category, Department
from layers.workflow import SYSTEM

# notes of these actions (and every system note) are written for the public to read
PUBLIC_NOTES = ("feedback", "verify", "reject", "cancel", "reopen")


def current_categories(session: Session) -> list[Category]:
    """Every current category of the taxonomy, by code."""
    return list(session.scalars(select(Category).where(Category.valid_to.is_(None))
                                .order_by(Category.code)))


def current_category(session: Session, code: str) -> Category | None:
    """The current category of that code, if there is one."""
    return session.scalar(select(Category).where(Category.code == code,
                                                 Category.valid_to.is_(None)))


@dataclass(frozen=True)
class RequestFilter:
    """Which requests: by reference (overriding every other field), or reported within
    [start, end] (no start: `window_days` before end, or before now), of some categories,
    in some states (empty: any)."""

    refs: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    window_days: int = 90
    categories: tuple[str, ...] = ()
    states: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublicRequest:
    """A case as the public may read it."""

    ref: str
    status: str
    category_code: str
    category_name: str | None  # None for a category no longer current
    deadline_hours: int | None  # the category's, as announced
    agency: str | None  # the owner department's name
    description: str | None  # contacts blanked
    address: str | None  # the submitter's address_string, contacts blanked
    media_url: str | None
    chain: list[dict[str, Any]]  # the grid chain the case was resolved to
    lon: float
    lat: float
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None
    public_note: str | None  # the latest note written for the public, contacts blanked


def _where(f: RequestFilter) -> list[Any]:
    if f.refs:
        return [Case.ref.in_(f.refs)]
    window = timedelta(days=f.window_days)
    start = f.start if f.start is not None else (
        f.end - window if f.end is not None else func.now() - window)
    where: list[Any] = [Case.created_at >= start]
    if f.end is not None:
        where.append(Case.created_at <= f.end)
    if f.categories:
        where.append(Case.category_code.in_(f.categories))
    if f.states:
        where.append(Case.status.in_(f.states))
    return where


def public_requests(session: Session, f: RequestFilter, *, limit: int, offset: int = 0
                    ) -> list[PublicRequest]:
    """Cases matching the filter, newest first, as the public may read them."""
    q = (select(Case.id, Case.ref, Case.status, Case.category_code, Case.description,
                Case.created_at, Case.updated_at, Case.deadline_at,
                Case.resolution["chain"].label("chain"),
                Case.resolution["open311"].label("extra"),
                func.ST_X(Case.geom).label("lon"), func.ST_Y(Case.geom).label("lat"),
                Category.name.label("service_name"), Category.deadline_hours,
                Department.name.label("agency"))
         .outerjoin(Category, and_(Category.code == Case.category_code,
                                   Category.valid_to.is_(None)))
         .outerjoin(Department, and_(Department.code == Case.owner_department,
                                     Department.valid_to.is_(None)))
         .where(*_where(f)).order_by(Case.created_at.desc(), Case.id.desc())
         .limit(limit).offset(offset))
    rows = session.execute(q).all()
    notes = _public_notes(session, [r.id for r in rows])
    out = []
    for r in rows:
        extra = r.extra or {}
        out.append(PublicRequest(
            ref=r.ref, status=r.status, category_code=r.category_code,
            category_name=r.service_name, deadline_hours=r.deadline_hours, agency=r.agency,
            description=mask_contacts(r.description),
            address=mask_contacts(extra.get("address_string")),
            media_url=extra.get("media_url"), chain=r.chain or [], lon=r.lon, lat=r.lat,
            created_at=r.created_at, updated_at=r.updated_at, deadline_at=r.deadline_at,
            public_note=notes.get(r.id)))
    return out


def _public_notes(session: Session, ids: list[int]) -> dict[int, str]:
    """Each case's latest note that was written for the public (system notes, results,
    reasons for rejecting or cancelling), with phone numbers and e-mails blanked."""
    if not ids:
        return {}
    rows = session.execute(
        select(CaseEvent.case_id, CaseEvent.note)
        .where(CaseEvent.case_id.in_(ids), CaseEvent.note != "",
               or_(CaseEvent.role == SYSTEM, CaseEvent.action.in_(PUBLIC_NOTES)))
        .order_by(CaseEvent.case_id, CaseEvent.id.desc())
        .ext(distinct_on(CaseEvent.case_id)))
    return {r.case_id: mask_contacts(r.note) or "" for r in rows}
