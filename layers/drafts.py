"""Planners' drafts of the grid: a draft is a generation never activated, made from the
active one (or from an older one, for a rollback); edits change only the draft's own rows,
and every step is an audited event (generation_event: who, when, what, on which codes).

Row versioning inside a draft (see layers.versioning): a unit carried over from the base
generation is shared with it; an edit ends that row at the active generation and inserts
the draft's own row (generation_low = the draft); a draft's own row is edited in place, its
revision bumped (the unit's ETag, so two planners cannot overwrite each other silently).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.models import Generation, GenerationEvent
from spatial.errors import Conflict, NotFound


def record(session: Session, gen_id: int, actor: str, action: str,
           codes: list[str] | tuple[str, ...] = (), **detail: Any) -> GenerationEvent:
    """Append one planning step to the audit log."""
    ev = GenerationEvent(generation_id=gen_id, actor=actor, action=action,
                         codes=list(codes), detail=detail)
    session.add(ev)
    session.flush()
    return ev


def events(session: Session, gen_id: int) -> list[GenerationEvent]:
    """The audit log of a generation, oldest first (kept after a discard)."""
    return list(session.scalars(select(GenerationEvent).where(
        GenerationEvent.generation_id == gen_id).order_by(GenerationEvent.id)))


def pending(session: Session) -> Generation | None:
    """The draft in progress, if any (a generation neither active nor ever activated)."""
    return session.scalar(select(Generation).where(
        ~Generation.active, Generation.activated_at.is_(None)).order_by(Generation.id))


def require_draft(session: Session, gen_id: int, *, lock: bool = False) -> Generation:
    """The draft gen_id (404 if there is no such generation, 409 if it was activated).
    lock: take its row lock, so edits of one draft run one after the other."""
    q = select(Generation).where(Generation.id == gen_id)
    if lock:
        q = q.with_for_update()
    gen = session.scalar(q)
    if gen is None:
        raise NotFound(f"generation {gen_id} does not exist")
    if gen.activated_at is not None:
        raise Conflict(f"generation {gen_id} ({gen.label!r}) has been activated: it is "
                       "history and cannot be edited; make a new draft (POST /generations)")
    return gen
