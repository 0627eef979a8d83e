"""create_app: the FastAPI application, its database and its routers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine
from starlette.types import Receive, Scope, Send

from api.errors import install_error_handlers, install_openapi
from api.routers import (
    activation,
    cases,
    generations,
    grids,
    health,
    hotspots,
    kpis,
    layers,
    lookup,
    maps,
    ogc,
    ogc_edit,
    open311,
    planning,
    resolve,
    tiles,
)
from api.routers.resolve import ResolveFastPath
from api.routing import check_request_text
from api.services import Services
from layers import impact
from layers import tiles as tile_cache
from layers.auth import TOKENS_CHANNEL, TokenCache
from layers.db import database_url, make_engine, make_sessionmaker
from layers.escalation import Scheduler
from layers.grid_jobs import register as register_grid_jobs
from layers.grids import NOTIFY_CHANNEL
from layers.intake_writer import IntakeWriter, OwnConnection
from layers.jobs import JobWorker
from layers.kpis import load_config as load_kpi_config
from layers.listener import Listener
from layers.ownership_store import OwnershipRegistry
from layers.resolver import IndexRegistry
from layers.responsibility import LAYERS_CHANNEL
from layers.settings import Settings

log = logging.getLogger(__name__)


class GridopsAPI(FastAPI):
    """FastAPI with the hot path ahead of its middleware and router: a request the fast
    path answers (api.routers.resolve.ResolveFastPath: GET /resolve with a plain lon/lat)
    costs no routing, dependency resolution or validation; every other request is
    FastAPI's, as before."""

    fast_path: ResolveFastPath | None = None  # set while the app runs (lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and await fast.handle(scope, send):
            return
        await super().__call__(scope, receive, send)


def _telemetry_on(app: FastAPI) -> bool:
    """Whether FastAPI's own telemetry (OpenTelemetry) is configured for this app."""
    telemetry = getattr(app, "_native_telemetry", None)
    try:
        return bool(telemetry is not None and telemetry.enabled())
    except Exception:
        return True


def create_app(settings: Settings, engine: Engine | None = None,
               *, listen: bool = True) -> FastAPI:
    """Build the app; the engine is made from settings unless given (tests). With listen,
    each worker follows generation activations (LISTEN/NOTIFY) and swaps its index."""
    own_engine = engine is None
    # a connection per request in flight (intake has its writer's own): a pool this size
    # serves dozens of concurrent reads and actions per worker without connecting anew
    engine = engine or make_engine(database_url(settings), pool_size=40, max_overflow=10)

    factory = make_sessionmaker(engine)
    indexes = IndexRegistry(factory, settings)
    owners = OwnershipRegistry(factory, settings)
    own = OwnConnection(engine)
    services = Services(
        settings=settings, engine=engine, sessions=factory, indexes=indexes, owners=owners,
        tokens=TokenCache(factory, settings.token_cache_s),
        intake=IntakeWriter(own, settings),
        kpi_config=load_kpi_config(settings.kpi_config))  # a bad file stops here

    def _prepare_impact() -> None:
        """The active generation's alignment with the departments' zones, computed now in
        the background (most of a cold impact preview's time), then the wall's first views
        as vector tiles."""
        def run() -> None:
            try:
                with factory() as session:
                    impact.prepare(session, settings)
            except Exception:
                log.exception("could not prepare the impact preview")
            try:
                if settings.tiles_prewarm:
                    with factory() as session:
                        _prewarm_tiles(session)
            except Exception:
                log.exception("could not build the wall's first tiles")

        threading.Thread(target=run, name="gridops-impact-prepare", daemon=True).start()

    def _prewarm_tiles(session: Any) -> None:
        t0 = time.perf_counter()
        gen, n = tile_cache.prewarm_active(session)
        if n:
            log.info("the wall's first %d tiles of generation %s ready in %.1f s", n, gen,
                     time.perf_counter() - t0)

    def _on_generation() -> None:
        before = indexes.active
        idx = indexes.refresh(finish=False)  # answering from the new generation already
        if idx is not None and idx is not before:
            services.owners.refresh(settle=False)  # grid leaders come with the grid
            indexes.finish(idx, full=before is None)  # then the nearest grids, the heap
            if before is not None:  # (the first build: at start-up, below)
                _prepare_impact()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import anyio

        try:
            await anyio.to_thread.run_sync(indexes.refresh)
        except Exception:
            log.exception("could not build the grid index at start-up")
        listener = Listener(engine, {NOTIFY_CHANNEL: _on_generation,
                                     LAYERS_CHANNEL: lambda: services.owners.refresh(),
                                     TOKENS_CHANNEL: lambda: services.tokens.clear()})
        scheduler = Scheduler(factory, settings)
        register_grid_jobs(settings)
        jobs = JobWorker(factory, settings)  # off with GRIDOPS_JOBS_WORKER=false
        # GET /resolve?lon=&lat= ahead of everything, unless FastAPI's telemetry is on (then
        # every request goes its way, to be traced)
        app.fast_path = None if _telemetry_on(app) else ResolveFastPath(indexes)
        if listen:
            _prepare_impact()
            listener.start()
            scheduler.start()
            jobs.start()
        yield
        app.fast_path = None
        await anyio.to_thread.run_sync(services.intake.stop)  # what is queued is stored
        own.close()
        jobs.stop()  # a job still running is taken again after its lease if we exit first
        scheduler.stop()
        listener.stop()
        if own_engine:
            engine.dispose()

    app = GridopsAPI(
        title="gridops",
        version="0.1.0",
        summary="Spatial operations server for city grid management (网格化管理)",
        lifespan=lifespan,
        dependencies=[Depends(check_request_text)],  # no NUL or lone surrogate gets in
    )
    app.state.services = services
    install_error_handlers(app)
    install_openapi(app)  # the document says what the handlers answer
    app.include_router(cases.router)  # first: the busiest write path is matched first
    app.include_router(resolve.router)
    app.include_router(health.router)
    app.include_router(grids.router)
    app.include_router(generations.router)
    app.include_router(planning.router)  # /generations/{id}/impact, /grids/{code}/lineage
    app.include_router(activation.router)  # POST /generations/{id}/activate
    app.include_router(layers.router)
    app.include_router(lookup.router)
    app.include_router(open311.router)
    app.include_router(kpis.router)
    app.include_router(hotspots.router)
    app.include_router(ogc.router)  # OGC API Features under /ogc
    app.include_router(ogc_edit.router)  # and its Part 4 writes
    app.include_router(tiles.router)  # OGC API Tiles: vector tiles of the collections
    maps.install(app)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn --factory (workers > 1): settings from the environment."""
    return create_app(Settings())
