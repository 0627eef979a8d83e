"""Which generations a caller may read (a draft never leaks): every published generation
(the active one and those active before) for anyone; a draft (a generation never activated)
only for a planner or centre token that names it explicitly, as the planner's preview does.
To anyone else a draft does not exist: it answers 404 "generation N is not published", the
same answer as an id that was never used, so that its existence is not revealed either.

Rows that a pending draft replaces carry generation_high = the active generation (so that
the draft does not see them); what a published read shows of that column is what it was
before the draft: `published_high` hides an end that no activated generation has made yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.deps import CurrentUser, IndexesDep, ServicesDep, SessionDep, current_user
from api.params import At, GenerationParam
from layers import grids
from layers.cases import Actor
from layers.models import Generation
from layers.workflow import ADMIN, CENTRE, PLANNER
from spatial.errors import NotFound
from spatial.index import GridIndex

DRAFT_READERS = (PLANNER, CENTRE, ADMIN)


def may_read_drafts(user: Actor) -> bool:
    """Whether the caller may read a draft generation (a planner, centre or admin token)."""
    return user.role in DRAFT_READERS


def not_published(generation: int) -> NotFound:
    """The answer to a read of a generation the caller may not see (a draft or no such id)."""
    return NotFound(f"generation {generation} is not published")


def readable(session: Session, user: Actor, *, generation: int | None = None,
             at: Any = None) -> Generation:
    """The generation a read names (?generation=, else as of ?at=, else the active one), if
    the caller may read it; a draft or an unknown id is "not published" to the public."""
    if generation is None:
        return grids.generation_at(session, at=at)  # ?at= only ever finds activated ones
    try:
        gen = grids.generation_at(session, generation=generation)
    except NotFound:
        if may_read_drafts(user):
            raise
        raise not_published(generation) from None
    if gen.activated_at is None and not may_read_drafts(user):
        raise not_published(generation)
    return gen


def get_readable_generation(session: SessionDep, user: CurrentUser, at: At = None,
                            generation: GenerationParam = None) -> Generation:
    """The generation a read uses (?generation=, ?at=, else the active one), drafts for
    planners only."""
    return readable(session, user, generation=generation, at=at)


ReadableGenerationDep = Annotated[Generation, Depends(get_readable_generation)]


async def readable_index(request: Request, services: ServicesDep, indexes: IndexesDep,
                         at: At = None, generation: GenerationParam = None) -> GridIndex:
    """The grid index a read names (the active one by default), a draft's only for a planner or
    centre token; checked before anything is built (the public cannot make a worker build a
    draft's index). The active index is taken without leaving the loop, and the caller's
    token is only looked at when another generation is named."""
    if at is None and generation is None and indexes.active is not None:
        return indexes.active
    if generation is not None:
        active = indexes.active
        if active is None or active.generation != generation:
            user = await current_user(request, services)

            def check() -> None:
                with services.sessions() as session:
                    readable(session, user, generation=generation)

            await anyio.to_thread.run_sync(check)
    return await anyio.to_thread.run_sync(lambda: indexes.get(at=at, generation=generation))


def published_ends(session: Session) -> list[int]:
    """Ids of the generations ever activated, ascending (what a published read may know)."""
    return sorted(g.id for g in grids.list_generations(session) if g.activated_at is not None)


def published_high(high: int | None, activated: Sequence[int]) -> int | None:
    """A row's generation_high as the public knows it: None while only a pending draft has
    ended the row (no activated generation after it yet), else the stored value."""
    if high is None or not activated or activated[-1] <= high:
        return None
    return high
