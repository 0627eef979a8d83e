"""Typed FastAPI dependencies: the app's services one by one, a database session, the caller.
Shared query parameters live in api/params.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.services import Services
from layers.auth import TokenCache, Unauthorized
from layers.cache import TTLCache
from layers.cases import Actor
from layers.disclosure import StaffView
from layers.hotspots import StudyAreas
from layers.intake_writer import IntakeWriter
from layers.kpis import KpiConfig
from layers.ownership_store import OwnershipRegistry
from layers.resolution import ReportResolver
from layers.resolver import IndexRegistry
from layers.settings import Settings
from layers.workflow import ADMIN, PUBLIC, Forbidden


async def get_services(request: Request) -> Services:
    """The container create_app built (async: no thread hop for a getter)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _service(attr: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning one service of the container (typed by its Annotated alias;
    async, so FastAPI calls it on the loop instead of in a worker thread)."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state.services, attr)

    get.__name__ = f"get_{attr}"
    return get


get_settings = _service("settings")


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A session for the request; routers never commit, repositories own transactions."""
    with services.sessions() as session:
        yield session


def get_write_session(services: ServicesDep) -> Iterator[Session]:
    """A session whose one transaction commits when the endpoint succeeds (unit of work)."""
    with services.sessions() as session, session.begin():
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
IndexesDep = Annotated[IndexRegistry, Depends(_service("indexes"))]
OwnersDep = Annotated[OwnershipRegistry, Depends(_service("owners"))]
ReportsDep = Annotated[ReportResolver, Depends(_service("reports"))]
IntakeDep = Annotated[IntakeWriter, Depends(_service("intake"))]
StudyAreasDep = Annotated[StudyAreas, Depends(_service("study_areas"))]
KpiConfigDep = Annotated[KpiConfig, Depends(_service("kpi_config"))]
PageCacheDep = Annotated[TTLCache, Depends(_service("page_cache"))]
SessionDep = Annotated[Session, Depends(get_session)]
# scope="function": the transaction commits before the response is sent, so a failed commit
# (a unique key lost to a concurrent request) is the client's error, not a silent loss
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]


async def current_user(request: Request, services: ServicesDep) -> Actor:
    """The caller: a bearer token's role (and department), or the public without one. A
    token this worker verified lately is taken from its cache (no database round trip)."""
    header = request.headers.get("authorization", "")
    if not header:
        return Actor("public", PUBLIC)
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() == "basic" and secret:  # QGIS's and OWSLib's user/password: the token
        secret = _basic_secret(secret)
    elif scheme.lower() != "bearer" or not secret:
        raise Unauthorized("use 'Authorization: Bearer <token>' (or Basic with the token "
                           "as the password)")
    tokens: TokenCache = services.tokens
    tok = tokens.cached(secret)
    if tok is None:
        tok = await anyio.to_thread.run_sync(tokens.verify, secret)
    request.state.user_name = tok.name  # for the audit logs
    return Actor(tok.name, tok.role, tok.department_code)


def _basic_secret(value: str) -> str:
    """HTTP Basic credentials (base64 of user:password) -> the password, a gridops token
    (any user name: GIS clients such as QGIS carry a token only this way)."""
    import base64
    import binascii

    try:
        pair = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("Authorization: Basic credentials are not base64 of "
                           "user:password") from None
    secret = pair.partition(":")[2].strip()
    if not secret:
        raise Unauthorized("Authorization: Basic needs the token as the password")
    return secret


CurrentUser = Annotated[Actor, Depends(current_user)]


async def get_staff_view(user: CurrentUser, settings: SettingsDep) -> StaffView:
    """What this caller may see of grid staff (any token: all; the public: the board)."""
    return StaffView(staff=user.role != PUBLIC, public=settings.public_staff)


StaffViewDep = Annotated[StaffView, Depends(get_staff_view)]


def require(user: Actor, *roles: str) -> Actor:
    """The caller if its role is one of roles (admin always); else 401/403."""
    if user.role in (*roles, ADMIN):
        return user
    if user.role == PUBLIC:
        raise Unauthorized("this needs a token: 'Authorization: Bearer <token>'")
    raise Forbidden(f"a {user.role} may not do this (needs {', '.join(roles) or 'admin'})")
