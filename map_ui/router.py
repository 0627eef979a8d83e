"""The map pages, served by the API: /map/wall, /map/lookup, /map/grid/{code}, the wall's
live data and the static files (Leaflet vendored by the set-up, gridops.js, map.css)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep
from api.geojson import GeoJSONResponse, json_response
from api.resolution import to_point
from api.routers.grids import parse_bbox
from api.routers.hotspots import Category, Department, Period, active_index
from api.routers.lookup import Crs, Lat, Lon, spot
from layers import grids, hotspots, kpis, wall
from layers.settings import Settings
from map_ui import pages, vendor
from spatial.errors import InvalidInput, Unavailable

router = APIRouter(prefix="/map", tags=["map"])
STATIC_DIR = Path(__file__).parent / "static"


class PageCache:
    """Slow-changing page data (grid outlines of a generation, chronic spots) kept for a
    while so that a wall's refresh does not recompute them."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, make: Any, ttl_s: float | None = None) -> Any:
        """The cached value of key, made anew when older than the ttl."""
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and now - hit[0] < (self.ttl_s if ttl_s is None else ttl_s):
            return hit[1]
        value = make()
        with self._lock:
            self._data[key] = (now, value)
            if len(self._data) > 64:
                self._data.pop(next(iter(self._data)))
        return value


def install(app: FastAPI) -> None:
    """Mount the pages and their static files on the app."""
    app.state.page_cache = PageCache()
    app.mount("/map/static", StaticFiles(directory=STATIC_DIR), name="map-static")
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


@router.get("/wall", response_class=HTMLResponse)
def wall_page(request: Request, session: SessionDep, settings: SettingsDep,
              period: Period = None, category: Category = None, department: Department = None,
              refresh: Annotated[int | None, Query(ge=0, le=3600, description=(
                  "seconds between refreshes (0 = never; default from the settings)"))] = None,
              ) -> HTMLResponse:
    """The command-centre wall map (full screen; filters and period in the URL)."""
    _ready()
    idx = active_index(request)
    now = datetime.now().astimezone()
    since, until = hotspots.period_bounds(period, None, None, settings.timezone, now)
    cache: PageCache = request.app.state.page_cache
    ranks = grids.levels(session)
    levels = []
    for lv in ranks:
        fc = cache.get(("outline", idx.generation, lv.rank),
                       lambda r=lv.rank: wall.outlines(session, idx.generation, r),
                       ttl_s=3600)
        levels.append((lv.rank, f"{lv.name} ({lv.key})", fc))
    zones = cache.get(("zones",), lambda: wall.zone_layers(session, datetime.now(UTC)))
    chronic = cache.get(("chronic", idx.generation, category, department),
                        lambda: hotspots.chronic(session, request.app.state.study_areas,
                                                 idx.generation, idx, now, settings.timezone,
                                                 category=category, department=department))
    counts = wall.counts(session, settings.timezone, now)
    period_text = (f"Hot spots of cases reported {since:%Y-%m-%d %H:%M} – "
                   f"{until:%Y-%m-%d %H:%M} ({period or 'last 30 days'})")
    body = pages.wall_page(
        base=_base(settings), bounds=idx.meta["bounds"], title=settings.map_title, levels=levels,
        zones=zones, chronic=chronic, counts=counts,
        filters={"period": period, "category": category, "department": department},
        period_text=period_text,
        refresh_s=settings.map_refresh_s if refresh is None else refresh)
    return _html(body)


@router.get("/wall/counts.json")
def wall_counts(session: SessionDep, settings: SettingsDep) -> Response:
    """The wall's corner panel: open, overdue, escalated, outside, today, closed today."""
    return json_response(wall.counts(session, settings.timezone, datetime.now().astimezone()))


@router.get("/wall/open.json", response_class=GeoJSONResponse)
def wall_open(session: SessionDep,
              bbox: Annotated[str, Query(description="minlon,minlat,maxlon,maxlat")],
              zoom: Annotated[float, Query(ge=0, le=22)] = 12) -> Response:
    """Open cases on screen: one by one up to a few hundred, else per H3 cell."""
    box = parse_bbox(bbox)
    res = min(11, max(5, int(zoom) - 5))
    return GeoJSONResponse(wall.open_cases(session, box, res, datetime.now().astimezone()))


def _unit_feature(session: Session, gen_id: int, code: str) -> dict[str, Any]:
    u = grids.get_unit(session, gen_id, code, precision=6)
    return {"code": u.code, "name": u.name, "level": u.level, "area_m2": u.area_m2,
            "generation_low": u.generation_low, "lon": u.lon, "lat": u.lat,
            "leader_name": u.leader_name, "leader_phone": u.leader_phone,
            "geometry": orjson.loads(u.geojson)}


def _neighbours(session: Session, settings: Settings, gen_id: int, code: str
                ) -> list[dict[str, Any]]:
    found = grids.neighbours(session, gen_id, code, settings)
    rows, _ = grids.list_units(session, gen_id, codes=[n["code"] for n in found],
                               precision=6)
    shapes = {r.code: orjson.loads(r.geojson) for r in rows}
    return [n | {"geometry": shapes[n["code"]]} for n in found]


@router.get("/lookup", response_class=HTMLResponse)
def lookup_page(request: Request, session: SessionDep, settings: SettingsDep, lon: Lon,
                lat: Lat, crs: Crs = "EPSG:4326",
                radius: Annotated[float, Query(gt=0, le=500, description="metres")] = 30.0,
                category: Annotated[str | None, Query(max_length=16)] = None) -> HTMLResponse:
    """The dispute page: everything at a spot on a map, the owner trail as a table; a click
    anywhere looks that spot up."""
    _ready()
    x, y, _info = to_point(lon, lat, crs)
    data = _plain(spot(request, session, settings, x, y, radius, None, category))
    idx = active_index(request)
    unit = neighbours = None
    if data["chain"]:
        code = data["chain"][-1]["code"]
        unit = _unit_feature(session, idx.generation, code)
        neighbours = _neighbours(session, settings, idx.generation, code)
    return _html(pages.lookup_page(base=_base(settings), spot=data, unit=unit,
                                   neighbours=neighbours or [], radius=radius))


def _leader(unit: dict[str, Any]) -> list[dict[str, Any]]:
    if not unit["leader_name"]:
        return []
    return [{"role": "leader (网格长)", "name": unit["leader_name"],
             "phone": unit["leader_phone"], "department_name": None}]


@router.get("/grid/{code}", response_class=HTMLResponse)
def grid_page(request: Request, code: str, session: SessionDep, settings: SettingsDep
              ) -> HTMLResponse:
    """One grid: boundary, neighbours, people, patrols, assets, cases and KPIs."""
    _ready()
    if len(code) > 32:
        raise InvalidInput(f"code: {code[:40]!r}... is longer than 32 characters")
    idx = active_index(request)
    gen = idx.generation
    unit = _unit_feature(session, gen, code)
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
        neighbours=_neighbours(session, settings, gen, code),
        people=_leader(unit) + wall.grid_people(session, code, at),
        patrols=wall.grid_patrols(session, code, at),
        assets=wall.grid_assets(session, code, at), cases=wall.grid_cases(session, code, now),
        kpi=kpi_row, kpi_period=f"{period.since:%Y-%m-%d} – {period.until:%Y-%m-%d}")
    return _html(body)
