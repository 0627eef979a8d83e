"""POST /generations/{id}/activate: a planner makes a draft the active grid, saying what
becomes of open cases and of the new units' patrol; the answer says what it did."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from api.deps import CurrentUser, SettingsDep, WriteSessionDep, require
from api.geojson import json_response
from api.routing import CheckedRoute
from api.schemas.activation import ActivateIn, ActivateOut
from api.schemas.common import errors
from layers import activation
from layers.workflow import PLANNER

router = APIRouter(route_class=CheckedRoute, tags=["generations"])

GenPath = Annotated[int, Path(ge=1, le=2_147_483_647, description="generation id")]


@router.post("/generations/{gen_id}/activate", response_model=ActivateOut,
             responses=errors(401, 403, 404, 409, 422, 503))
def activate_generation(gen_id: GenPath, session: WriteSessionDep, settings: SettingsDep,
                        user: CurrentUser, body: ActivateIn | None = None) -> Response:
    """Activate a draft (planner): validated first (422 grid_invariant_violated with the
    violations); patrol assignments and grid roles of units that end are ended, each new
    unit inherits those of its predecessor with the largest share (or as `patrol` says);
    a new finest unit left with no patrol team is a 409 naming it unless confirmed
    (confirm_unpatrolled); then it becomes the active grid (every worker switches), its
    lineage is recorded, assets' grids follow the new geometry, and the open cases whose
    grid or street changes are kept or re-homed (open_cases: re_resolve, one event each,
    the old answer kept). dry_run: the same answer, nothing kept. 404 unknown generation,
    409 a generation already activated."""
    require(user, PLANNER)
    b = body or ActivateIn()
    done = activation.activate(
        session, gen_id, settings, actor=user, open_cases=b.open_cases,
        patrol={code: c.as_choice() for code, c in b.patrol.items()},
        confirm_unpatrolled=b.confirm_unpatrolled, dry_run=b.dry_run)
    return json_response(done)
