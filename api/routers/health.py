"""GET /health: is the database reachable, which generation is active, how many units."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import IntakeDep, SessionDep
from api.routing import CheckedRoute
from api.schemas.common import ErrorOut, GenerationOut
from api.schemas.health import Health, IntakeStats
from layers import grids
from layers.db import reachable

router = APIRouter(route_class=CheckedRoute, tags=["health"])


@router.get("/health", response_model=Health, responses={
    503: {"model": Health | ErrorOut,
          "description": "The database is not reachable: status degraded (or, when it goes "
                         "away mid-answer, code database_unavailable)"}})
def health(session: SessionDep, intake_writer: IntakeDep) -> Health | JSONResponse:
    """Database reachability, the active generation, unit counts per level, and the
    answering worker's intake counters."""
    intake = IntakeStats(**intake_writer.stats())
    if not reachable(session):
        body = Health(status="degraded", database=False, active_generation=None,
                      units_per_level={}, levels=[], intake=intake)
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    gen = grids.active_generation(session)
    counts = grids.counts_per_level(session, gen.id) if gen else {}
    return Health(
        status="ok",
        database=True,
        active_generation=GenerationOut.model_validate(gen, from_attributes=True) if gen else None,
        units_per_level=counts,
        levels=[{"rank": lv.rank, "key": lv.key, "name": lv.name,
                 "code_length": lv.code_length} for lv in grids.levels(session)],
        intake=intake,
    )
