"""GET /health: is the database reachable, which generation is active, how many units."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import SessionDep
from api.schemas import GenerationOut, Health, IntakeStats
from layers import grids

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(request: Request, session: SessionDep) -> Health | JSONResponse:
    """Database reachability, the active generation, unit counts per level, and the
    answering worker's intake counters."""
    intake = IntakeStats(**request.app.state.intake.stats())
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
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
