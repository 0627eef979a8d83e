"""Typed FastAPI dependencies: settings, a database session, the generation a read names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import anyio
from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from layers import auth, grids
from layers.auth import Unauthorized
from layers.cases import Actor
from layers.models import Generation
from layers.settings import Settings
from layers.workflow import ADMIN, PUBLIC, Forbidden


def get_settings(request: Request) -> Settings:
    """The settings create_app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session for the request; routers never commit, repositories own transactions."""
    with request.app.state.sessionmaker() as session:
        yield session


def get_write_session(request: Request) -> Iterator[Session]:
    """A session whose one transaction commits when the endpoint succeeds (unit of work)."""
    with request.app.state.sessionmaker() as session, session.begin():
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
# scope="function": the transaction commits before the response is sent, so a failed commit
# (a unique key lost to a concurrent request) is the client's error, not a silent loss
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]


def get_generation(
    session: SessionDep,
    at: Annotated[datetime | None, Query(
        description="read the grid as it was at this time (ISO 8601); default now")] = None,
    generation: Annotated[int | None, Query(
        description="read a named generation (id) instead", ge=1)] = None,
) -> Generation:
    """The generation a read uses: ?generation=, else as of ?at=, else the active one."""
    return grids.generation_at(session, generation=generation, at=at)


GenerationDep = Annotated[Generation, Depends(get_generation)]


async def current_user(request: Request) -> Actor:
    """The caller: a bearer token's role (and department), or the public without one. A
    token this worker verified lately is taken from its cache (no database round trip)."""
    header = request.headers.get("authorization", "")
    if not header:
        return Actor("public", PUBLIC)
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("use 'Authorization: Bearer <token>'")
    tokens: auth.TokenCache = request.app.state.tokens
    tok = tokens.cached(secret)
    if tok is None:
        tok = await anyio.to_thread.run_sync(tokens.verify, secret)
    request.state.user_name = tok.name  # for the audit logs
    return Actor(tok.name, tok.role, tok.department_code)


CurrentUser = Annotated[Actor, Depends(current_user)]


def require(user: Actor, *roles: str) -> Actor:
    """The caller if its role is one of roles (admin always); else 401/403."""
    if user.role in (*roles, ADMIN):
        return user
    if user.role == PUBLIC:
        raise Unauthorized("this needs a token: 'Authorization: Bearer <token>'")
    raise Forbidden(f"a {user.role} may not do this (needs {', '.join(roles) or 'admin'})")
