"""The services one app holds, in one typed container on `app.state.services`: built by
create_app, read by routers only through the dependencies in api/deps.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from layers.auth import TokenCache
from layers.cache import TTLCache
from layers.hotspots import StudyAreas
from layers.intake_writer import IntakeWriter
from layers.kpis import KpiConfig
from layers.ownership_store import OwnershipRegistry
from layers.resolution import ReportResolver
from layers.resolver import IndexRegistry
from layers.settings import Settings


@dataclass
class Services:
    """Everything a request may need beyond its own database session."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    indexes: IndexRegistry
    owners: OwnershipRegistry
    tokens: TokenCache
    intake: IntakeWriter
    kpi_config: KpiConfig
    study_areas: StudyAreas = field(default_factory=StudyAreas)
    page_cache: TTLCache = field(default_factory=TTLCache)

    @property
    def reports(self) -> ReportResolver:
        """The answer to a report, over this app's index and ownership registries."""
        return ReportResolver(self.indexes, self.owners, self.settings)
