"""GET /kpis: performance figures (考核) per department, centre, street or grid, with grades
and ranks, as JSON or CSV. Departments' figures are public; the rest needs a token."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import CurrentUser, KpiConfigDep, SessionDep, SettingsDep, require
from api.routing import CheckedRoute
from api.schemas.common import CSV, CSV_CONTENT, Timestamp, errors
from api.schemas.kpis import KpiOut
from layers import kpis
from layers.workflow import CENTRE, PLANNER

router = APIRouter(route_class=CheckedRoute, tags=["kpis"])


@router.get("/kpis", response_model=KpiOut, responses={
    200: {"description": "JSON, or CSV with format=csv (one line a row)",
          "content": {CSV: CSV_CONTENT}},
    **errors(401, 403, 422, 503)})
def get_kpis(
    session: SessionDep, user: CurrentUser, settings: SettingsDep, config: KpiConfigDep,
    unit: Annotated[Literal["department", "centre", "street", "grid"], Query(
        description="department, centre (the whole city), street or grid")] = "department",
    since: Annotated[Timestamp | None, Query(
        description="cases reported from (ISO 8601); default: start of this month")] = None,
    until: Annotated[Timestamp | None, Query(description="...until (exclusive); default now")
                     ] = None,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$",
                                       description="a calendar month instead: YYYY-MM")] = None,
    monthly: Annotated[bool, Query(description="one row per unit and month, ranked per month")
                       ] = False,
    department: Annotated[str | None, Query(max_length=32)] = None,
    street: Annotated[str | None, Query(max_length=32)] = None,
    category: Annotated[str | None, Query(max_length=16,
                                          description="a category code or its prefix (E05)")
                        ] = None,
    grid: Annotated[str | None, Query(max_length=32, description="only the cases of this "
                                      "grid (its code)")] = None,
    lineage: Annotated[bool, Query(description=(
        "with grid (or street): count the cases of every code related to it through "
        "boundary changes, both ways (GET /grids/{code}/lineage), so a period spanning a "
        "change counts the grid and its predecessors and successors; the grid (street) "
        "table has one row for them, under the code asked for, and the answer names the "
        "codes counted (lineage.codes)"))] = False,
    window_h: Annotated[float | None, Query(gt=0, le=168, description=(
        "real-time handling window in hours (default from the KPI config, 2)"))] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    """Figures, composite score, grade (A+ ... E) and rank of every unit over the period (by
    case creation time). Anyone may read department figures; the other units need a centre
    or planner token. Nothing here names a reporter."""
    if unit != "department":
        require(user, CENTRE, PLANNER)
    if window_h is not None:
        config = config.model_copy(update={"response_window_h": window_h})
    now = datetime.now().astimezone()
    period = kpis.Period.of(since=since, until=until, month=month,
                            timezone=settings.timezone, now=now)
    table = kpis.compute(session, unit, period, config=config, monthly=monthly,
                         department=department, street=street, category=category,
                         grid=grid, lineage=lineage)
    if format == "csv":
        name = f"kpis-{unit}-{period.since:%Y%m%d}-{period.until:%Y%m%d}.csv"
        return Response(table.csv(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{name}"'})
    body = table.as_dict()
    body["scoring"] = {"weights": config.weights.get(unit, {}),
                       "grades": config.grades.model_dump()}  # what the grades mean here
    return Response(orjson.dumps(body, default=str), media_type="application/json")
