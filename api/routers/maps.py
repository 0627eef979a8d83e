"""The map pages, served by the API: /map/wall, /map/lookup, /map/grid/{code},
/map/generation/{id} (a draft's problems), the wall's live data and the static files. The
pages are built by map_ui (data in, HTML out); their data comes from layers (wall, lookup,
hotspots, kpis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.deps import (
    IndexesDep,
    OwnersDep,
    PageCacheDep,
    SessionDep,
    SettingsDep,
    StaffViewDep,
    StudyAreasDep,
)
from api.geojson import GeoJSONResponse, json_response
from api.params import (
    ActiveIndexDep,
    Category,
    Crs,
    Department,
    Lat,
    Lon,
    Period,
    Radius,
    parse_bbox,
)
from api.routing import CheckedRoute
from api.schemas.common import errors, geojson
from api.schemas.maps import OpenCases, WallCounts, WallLabel
from layers import grids, hotspots, kpis, wall
from layers.disclosure import StaffView
from layers.lookup import spot
from layers.resolution import normalise_point
from layers.settings import Settings
from map_ui import pages, vendor
from spatial.errors import InvalidInput, NotFound, Unavailable

router = APIRouter(route_class=CheckedRoute, prefix="/map", tags=["map"])


def install(app: FastAPI) -> None:
    """Mount the pages and their static files on the app."""
    app.mount("/map/static", StaticFiles(directory=pages.STATIC_DIR), name="map-static")
    app.include_router(router)


def _base(settings: Settings) -> pages.BaseMap:
    return pages.BaseMap(settings.map_tiles, settings.map_attribution)


def _ready() -> None:
    if not vendor.present():
        raise Unavailable("the map pages need Leaflet in map_ui/static/vendor: run "
                          "'python -m map_ui.vendor' (scripts/setup.sh does)")


def _html(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers={"cache-control": "no-store"})


def _plain(obj: Any) -> Any:
    """Rows with orjson fragments and datetimes as plain JSON values (for folium)."""
    return orjson.loads(orjson.dumps(obj, default=str))


@router.get("", include_in_schema=False)
def map_home() -> RedirectResponse:
    return RedirectResponse("/map/wall")


@router.get("/wall", response_class=HTMLResponse, responses=errors(422, 503))
def wall_page(session: SessionDep, settings: SettingsDep, idx: ActiveIndexDep,
              cache: PageCacheDep, areas: StudyAreasDep,
              period: Period = None, category: Category = None, department: Department = None,
              refresh: Annotated[int | None, Query(ge=0, le=3600, description=(
                  "seconds between refreshes (0 = never; default from the settings)"))] = None,
              ) -> HTMLResponse:
    """The command-centre wall map (full screen; filters and period in the URL)."""
    _ready()
    now = datetime.now().astimezone()
    since, until = hotspots.period_bounds(period, None, None, settings.timezone, now)
    # the grid and the zones come as vector tiles (/ogc/.../tiles), the grid's of this
    # generation (a published one: the browser keeps them)
    tile = "/ogc/collections/{c}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}"
    lat = (idx.meta["bounds"][1] + idx.meta["bounds"][3]) / 2
    min_zooms = cache.get(("level-zooms", idx.generation),
                          lambda: wall.level_min_zooms(session, idx.generation, lat))
    levels = [(lv.rank, f"{lv.name} ({lv.key})",
               tile.format(c=f"grid-{lv.key}") + f"?generation={idx.generation}",
               f"grid-{lv.key}", min_zooms.get(lv.rank, 0)) for lv in grids.levels(session)]
    zones = cache.get(("zone-layers",),
                      lambda: wall.zone_layer_names(session, datetime.now(UTC)))
    chronic = cache.get(("chronic", idx.generation, category, department),
                        lambda: hotspots.chronic(session, areas, idx.generation, idx, now,
                                                 settings.timezone, category=category,
                                                 department=department))
    counts = _counts(session, settings, cache)
    period_text = (f"Hot spots of cases reported {since:%Y-%m-%d %H:%M} – "
                   f"{until:%Y-%m-%d %H:%M} ({period or 'last 30 days'})")
    body = pages.wall_page(
        base=_base(settings), bounds=idx.meta["bounds"], title=settings.map_title, levels=levels,
        zones=zones, zones_url=tile.format(c="zones"),
        labels_url=f"/map/wall/labels.json?generation={idx.generation}&level={{level}}",
        chronic=chronic, counts=counts,
        filters={"period": period, "category": category, "department": department},
        period_text=period_text,
        refresh_s=settings.map_refresh_s if refresh is None else refresh)
    return _html(body)


@router.get("/wall/counts.json", response_model=WallCounts, responses=errors(503))
def wall_counts(session: SessionDep, settings: SettingsDep, cache: PageCacheDep) -> Response:
    """The wall's corner panel: open, overdue, escalated, outside, today, closed today
    (~100 ms of SQL: kept COUNTS_TTL_S seconds, so twenty wall screens cost one query)."""
    return json_response(_counts(session, settings, cache))


COUNTS_TTL_S = 5.0


def _counts(session: SessionDep, settings: SettingsDep, cache: PageCacheDep) -> Any:
    return cache.get(("counts",), lambda: wall.counts(session, settings.timezone,
                                                      datetime.now().astimezone()),
                     ttl_s=COUNTS_TTL_S)


@router.get("/wall/open.json", response_class=GeoJSONResponse, response_model=OpenCases,
            responses={200: geojson(OpenCases), **errors(422, 503)})
def wall_open(session: SessionDep,
              bbox: Annotated[str, Query(description="minlon,minlat,maxlon,maxlat")],
              zoom: Annotated[float, Query(ge=0, le=22)] = 12) -> Response:
    """Open cases on screen: one by one up to a few hundred, else per H3 cell."""
    box = parse_bbox(bbox)
    res = min(11, max(5, int(zoom) - 5))
    return GeoJSONResponse(wall.open_cases(session, box, res, datetime.now().astimezone()))


@router.get("/wall/labels.json", response_model=list[WallLabel],
            responses=errors(404, 422, 503))
def wall_labels(session: SessionDep, idx: ActiveIndexDep,
                bbox: Annotated[str, Query(description="minlon,minlat,maxlon,maxlat")],
                level: Annotated[int, Query(ge=1, le=16)],
                generation: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """Where the wall writes the names of a level's units on screen (a point in each, the
    largest first, at most a few thousand): the wall's labels, zoomed in. A published
    generation only (the active one by default)."""
    gen = idx.generation
    if generation is not None and generation != gen:
        if grids.generation_at(session, generation=generation).activated_at is None:
            raise NotFound(f"generation {generation} is not published")
        gen = generation
    return json_response(wall.label_points(session, gen, level, parse_bbox(bbox)))


@router.get("/lookup", response_class=HTMLResponse, responses=errors(404, 422, 503))
def lookup_page(session: SessionDep, settings: SettingsDep, indexes: IndexesDep,
                owners: OwnersDep, idx: ActiveIndexDep, staff: StaffViewDep, lon: Lon, lat: Lat,
                crs: Crs = "EPSG:4326", radius: Radius = 30.0,
                category: Annotated[str | None, Query(max_length=16)] = None) -> HTMLResponse:
    """The dispute page: everything at a spot on a map, the owner trail as a table; a click
    anywhere looks that spot up."""
    _ready()
    p = normalise_point(lon, lat, crs)
    found = spot(session, indexes, owners, settings, p.lon, p.lat, radius, None, category)
    found["owners"] = [staff.owner_answer(o) for o in found["owners"]]
    data = _plain(found)
    unit = neighbours = None
    if data["chain"]:
        code = data["chain"][-1]["code"]
        unit = _unit_shown(wall.unit_feature(session, idx.generation, code), staff)
        neighbours = wall.neighbour_features(session, settings, idx.generation, code)
    return _html(pages.lookup_page(base=_base(settings), spot=data, unit=unit,
                                   neighbours=neighbours or [], radius=radius))


def _unit_shown(unit: dict[str, Any], staff: StaffView) -> dict[str, Any]:
    """A unit for a page, its leader as the caller may see it."""
    lead = staff.leader(unit["leader_name"], unit["leader_phone"]) or {}
    return {**unit, "leader_name": lead.get("name"), "leader_phone": lead.get("phone")}


def _people_shown(people: list[dict[str, Any]], staff: StaffView) -> list[dict[str, Any]]:
    """Role holders for a page: the public sees the role and department only."""
    shown = [staff.person(p) or {} for p in people]
    return [p if p.get("name") else {**p, "name": "(staff only)"} for p in shown]


@router.get("/grid/{code}", response_class=HTMLResponse, responses=errors(404, 422, 503))
def grid_page(code: str, session: SessionDep, settings: SettingsDep, idx: ActiveIndexDep,
              staff: StaffViewDep) -> HTMLResponse:
    """One grid: boundary, neighbours, people, patrols, assets, cases and KPIs."""
    _ready()
    if len(code) > 32:
        raise InvalidInput(f"code: {code[:40]!r}... is longer than 32 characters")
    gen = idx.generation
    unit = _unit_shown(wall.unit_feature(session, gen, code), staff)
    chain = [dict(r._mapping) for r in grids.parent_chain(session, gen, code)]
    now = datetime.now().astimezone()
    at = datetime.now(UTC)
    period = kpis.Period(now - timedelta(days=365), now, settings.timezone)
    street = next((c["code"] for c in chain if c["level"] == 2), None)
    kpi_row = None
    if unit["level"] == max(lv.rank for lv in grids.levels(session)):
        table = kpis.compute(session, "grid", period, street=street)
        kpi_row = next((r for r in table.rows if r["code"] == code), None)
    body = pages.grid_page(
        base=_base(settings), unit=unit, chain=[*chain, {"name": unit["name"]}],
        neighbours=wall.neighbour_features(session, settings, gen, code),
        people=wall.leader_role(unit) + _people_shown(wall.grid_people(session, code, at), staff),
        patrols=wall.grid_patrols(session, code, at),
        assets=wall.grid_assets(session, code, at), cases=wall.grid_cases(session, code, now),
        kpi=kpi_row, kpi_period=f"{period.since:%Y-%m-%d} – {period.until:%Y-%m-%d}")
    return _html(body)


def problems_url_template() -> str:
    """Where the generation page fetches a generation's problems ({id}: the generation); a
    dependency, so that a test can point the page at problems of its own."""
    return "/generations/{id}/problems"


def impact_url_template() -> str:
    """Where the planner's page fetches a draft's impact against the active generation
    ({id}: the draft; the JSON of GET /generations/{id}/impact); a dependency, as above."""
    return "/generations/{id}/impact"


GenerationPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="generation id")]


@router.get("/generation/{generation}", response_class=HTMLResponse,
            responses=errors(404, 422, 503))
def generation_page(generation: GenerationPath, session: SessionDep, settings: SettingsDep,
                    problems: Annotated[str, Depends(problems_url_template)],
                    impact: Annotated[str, Depends(impact_url_template)]) -> HTMLResponse:
    """One generation's grid, a draft or any other (no active grid needed), with its
    validation problems drawn and listed; a click on one zooms to it. A generation that is
    not the active one is shown against the active one (the planner's page): old and new
    outlines overlaid or side by side, changed units, the impact table and the open cases
    that would move. A draft's page holds nothing of the draft: its data are read by the
    page with a planner's or the centre's token (a draft never leaks)."""
    _ready()
    gen = grids.generation_at(session, generation=generation)
    draft = gen.activated_at is None
    counts = {} if draft else grids.counts_per_level(session, gen.id)
    levels = [{"rank": lv.rank, "key": lv.key, "name": lv.name,
               "units": None if draft else counts.get(lv.key, 0)}
              for lv in grids.levels(session)]
    active = grids.active_generation(session)
    compare = None
    if active is not None and active.id != gen.id:
        compare = {"active": active.id, "impact_url": impact.format(id=gen.id)}
    info = ({"id": gen.id, "label": "", "note": "", "active": False, "created_at": None,
             "activated_at": None} if draft else
            {"id": gen.id, "label": gen.label, "note": gen.note, "active": gen.active,
             "created_at": gen.created_at, "activated_at": gen.activated_at})
    body = pages.generation_page(
        base=_base(settings), levels=levels, problems_url=problems.format(id=gen.id),
        page_size=min(1000, settings.page_size_max), generation=info, compare=compare)
    return _html(body)
