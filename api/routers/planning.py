"""Planning reads: a draft's impact preview (what activating it would change) and a unit's
lineage through every activated generation."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path
from fastapi.responses import Response

from api.deps import CurrentUser, OwnersDep, SessionDep, SettingsDep, require
from api.geojson import json_response
from api.routing import CheckedRoute
from api.schemas.common import errors
from api.schemas.planning import ImpactOut, LineageOut
from layers import impact as impact_mod
from layers import lineage
from layers.workflow import CENTRE, PLANNER

router = APIRouter(route_class=CheckedRoute, tags=["planning"])

GenPath = Annotated[int, Path(ge=1, le=2_147_483_647, description="generation id")]
CodePath = Annotated[str, Path(description="unit code (6/9/12/15 digits)",
                               pattern=r"^[0-9]{1,32}$")]


@router.get("/generations/{gen_id}/impact", response_model=ImpactOut,
            responses=errors(401, 403, 404, 409, 422, 503))
async def generation_impact(gen_id: GenPath, session: SessionDep, settings: SettingsDep,
                            owners: OwnersDep, user: CurrentUser) -> Response:
    """What activating a draft would change, against the active generation (planner or
    centre token): per changed unit the old and new area and where the area went; the
    open cases whose grid or street would change, with the answer each would get; the
    assets whose grid changes; patrol assignments and grid roles that end or would be
    inherited, and the new finest units left with no patrol; each department's zone
    alignment before and after; counts per street; the changed outlines as GeoJSON.
    404 for an unknown generation, 409 for one that is not a draft."""
    require(user, PLANNER, CENTRE)
    found = await anyio.to_thread.run_sync(  # the snapshot is built on first use
        lambda: impact_mod.impact(session, gen_id, settings, snapshot=owners.current))
    return json_response(found)


@router.get("/grids/{code}/lineage", response_model=LineageOut,
            responses=errors(404, 422, 503))
def grid_lineage(code: CodePath, session: SessionDep) -> Response:
    """A unit's lineage both ways through every activated generation: its versions, its
    predecessors and successors (split, merge, redraw, reparent, attributes), each step
    with the generation that made it, the area taken and its shares. A draft's changes do
    not show until it is activated."""
    return json_response(lineage.walk(session, code))
