"""Typed FastAPI dependencies: the app's services one by one, a database session, the caller.
Shared query parameters live in api/params.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.services import Services
from layers.auth import TokenCache, Unauthorized
from layers.cache import TTLCache
from layers.cases import Actor
from layers.hotspots import StudyAreas
from layers.intake_writer import IntakeWriter
from layers.kpis import KpiConfig
from layers.ownership_store import OwnershipRegistry
from layers.resolution import ReportResolver
from layers.resolver import IndexRegistry
from layers.settings import Settings
from layers.workflow import ADMIN, PUBLIC, Forbidden


def get_services(request: Request) -> Services:
    """The container create_app built."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    """The settings create_app was built with."""
    return services.settings


def get_indexes(services: ServicesDep) -> IndexRegistry:
    """The grid indexes: the active generation's and a few others."""
    return services.indexes


def get_owners(services: ServicesDep) -> OwnershipRegistry:
    """The ownership snapshots: the current one, and small ones for other times."""
    return services.owners


def get_reports(services: ServicesDep) -> ReportResolver:
    """The composed answer to a report (grid chain, owner, patrol)."""
    return services.reports


def get_intake(services: ServicesDep) -> IntakeWriter:
    """This worker's intake writer (group commit)."""
    return services.intake


def get_study_areas(services: ServicesDep) -> StudyAreas:
    """The Gi* neighbourhoods per generation and resolution."""
    return services.study_areas


def get_kpi_config(services: ServicesDep) -> KpiConfig:
    """The deployment's KPI weights and grades (GRIDOPS_KPI_CONFIG)."""
    return services.kpi_config


def get_page_cache(services: ServicesDep) -> TTLCache:
    """Slow-changing page data kept for a while."""
    return services.page_cache


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A session for the request; routers never commit, repositories own transactions."""
    with services.sessions() as session:
        yield session


def get_write_session(services: ServicesDep) -> Iterator[Session]:
    """A session whose one transaction commits when the endpoint succeeds (unit of work)."""
    with services.sessions() as session, session.begin():
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
IndexesDep = Annotated[IndexRegistry, Depends(get_indexes)]
OwnersDep = Annotated[OwnershipRegistry, Depends(get_owners)]
ReportsDep = Annotated[ReportResolver, Depends(get_reports)]
IntakeDep = Annotated[IntakeWriter, Depends(get_intake)]
StudyAreasDep = Annotated[StudyAreas, Depends(get_study_areas)]
KpiConfigDep = Annotated[KpiConfig, Depends(get_kpi_config)]
PageCacheDep = Annotated[TTLCache, Depends(get_page_cache)]
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
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("use 'Authorization: Bearer <token>'")
    tokens: TokenCache = services.tokens
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
