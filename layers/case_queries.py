"""Reading cases: one by its public reference (as a caller may see it), its point and its
history, the reference of the case it duplicates, and the listing by role and filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from layers.cases import Actor
from layers.escalation import ESCALATING
from layers.lineage import lineage_codes
from layers.models import Case, CaseEvent
from layers.workflow import DEPARTMENT, OPEN, STATES
from spatial.errors import InvalidInput, NotFound


def get(session: Session, ref: str) -> Case:
    """A case by its public reference, as the database has it now (intake changes rows by
    plain SQL: an object the session holds already is refreshed); 404 if none."""
    case = session.scalar(select(Case).where(Case.ref == ref)
                          .execution_options(populate_existing=True))
    if case is None:
        raise NotFound(f"no case {ref!r}")
    return case


def get_for(session: Session, ref: str, actor: Actor) -> Case:
    """A case by its reference as the actor may see it: a department handler sees its own
    department's cases only (another's is a 404, as if it did not exist)."""
    case = get(session, ref)
    if actor.role == DEPARTMENT and case.owner_department != actor.department:
        raise NotFound(f"no case {ref!r} for department {actor.department}")
    return case


def original_ref(session: Session, case: Case) -> str | None:
    """The reference of the case this one duplicates (None if it duplicates none)."""
    if case.duplicate_of is None:
        return None
    original = session.get(Case, case.duplicate_of)
    return original.ref if original is not None else None


def point(session: Session, case: Case) -> tuple[float, float]:
    """The case's WGS84 lon/lat as stored."""
    row = session.execute(select(func.ST_X(Case.geom), func.ST_Y(Case.geom))
                          .where(Case.id == case.id)).one()
    return float(row[0]), float(row[1])


def events(session: Session, case: Case) -> list[CaseEvent]:
    """The case's history, oldest first."""
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                .order_by(CaseEvent.id)))


@dataclass(frozen=True)
class CaseFilter:
    """What a listing asks for; None (or False) leaves a field out."""

    status: str | None = None  # a state, or "open" for every open state
    department: str | None = None  # ignored for a department handler: always its own
    grid: str | None = None
    lineage: bool = False  # with grid: every code related to it through boundary changes
    category: str | None = None
    since: datetime | None = None  # reported at or after
    until: datetime | None = None  # reported before
    overdue: bool = False  # past the deadline and not suspended (what escalation raises)


@dataclass(frozen=True)
class CasePage:
    """A page of a listing: how many match, and the page's cases newest first, each with
    the reference of the case it duplicates."""

    total: int
    cases: list[tuple[Case, str | None]]


def list_cases(session: Session, actor: Actor, f: CaseFilter, *, limit: int,
               offset: int) -> CasePage:
    """Cases matching the filter, newest first, as the actor may see them (422 for a status
    that is no state)."""
    q = select(Case)
    if actor.role == DEPARTMENT:
        q = q.where(Case.owner_department == actor.department)
    elif f.department:
        q = q.where(Case.owner_department == f.department)
    if f.status == "open":
        q = q.where(Case.status.in_(OPEN))
    elif f.status:
        if f.status not in STATES:
            raise InvalidInput(f"status: {f.status!r} is not one of open, {', '.join(STATES)}")
        q = q.where(Case.status == f.status)
    if f.lineage and not f.grid:
        raise InvalidInput("lineage: name the grid whose lineage is listed (grid=code)")
    if f.grid and f.lineage:  # the grid, its predecessors and successors
        q = q.where(Case.grid_code.in_(lineage_codes(session, f.grid)))
    elif f.grid:
        q = q.where(Case.grid_code == f.grid)
    if f.category:
        q = q.where(Case.category_code == f.category)
    if f.since:
        q = q.where(Case.created_at >= f.since)
    if f.until:
        q = q.where(Case.created_at < f.until)
    if f.overdue:
        # as the escalation job sees it: a suspended case's clock stands still
        q = q.where(Case.status.in_(ESCALATING), Case.deadline_at < func.clock_timestamp())
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    original = aliased(Case)
    rows = session.execute(
        q.add_columns(original.ref)
        .outerjoin(original, original.id == Case.duplicate_of)
        .order_by(Case.created_at.desc(), Case.id.desc()).limit(limit).offset(offset))
    return CasePage(total, [(c, ref) for c, ref in rows])
