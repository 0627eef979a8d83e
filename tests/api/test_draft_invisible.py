"""A draft never leaks: with a draft pending on the demo city (one grid split into two new
codes, the edge between two others moved), every public answer (resolve in all its forms,
owner, lookup, grids, exports, history, alignment, layers, KPIs, hot spots, intake, Open311,
the map pages and their data, health) is the answer given before the draft existed; a
draft named explicitly is "not published" to the public and readable with a planner's or
the centre's token. The app's index and ownership registries read the test's transaction,
so that they could see the draft if they looked at it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import LineString
from shapely.ops import split
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.routers.resolve import ResolveFastPath
from layers import grids
from layers.auth import create_token
from layers.cache import TTLCache
from layers.hotspots import StudyAreas
from layers.ownership_store import OwnershipRegistry
from layers.resolver import IndexRegistry
from layers.settings import Settings

P_SPLIT = (121.2277, 31.0322)  # inside the grid that the draft splits
P_EDGE = (121.2322, 31.0299)  # inside a grid whose edge with a neighbour the draft moves


@dataclass(frozen=True)
class Draft:
    """What a test draft changed."""

    id: int
    active: int
    split: str  # the grid split in two
    parts: tuple[str, str]  # its parts' new codes, west then east
    redrawn: tuple[str, str]  # the two grids whose shared edge moved (grown, shrunk)
    moved_point: tuple[float, float]  # a point of the area that changed hands


def _finest_at(session: Session, gen: int, lon: float, lat: float) -> str:
    code = session.scalar(text(
        "SELECT u.code FROM grid_unit u WHERE u.generation_low <= :g AND "
        "(u.generation_high IS NULL OR u.generation_high >= :g) AND u.level = "
        "(SELECT max(rank) FROM grid_level) AND "
        "ST_Covers(u.geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) ORDER BY u.code LIMIT 1"),
        {"g": gen, "x": lon, "y": lat})
    assert code, (lon, lat)
    return str(code)


@dataclass(frozen=True)
class Plan:
    """The draft to make, known before it exists: its units and what they change."""

    units: list[grids.UnitInput]
    draft: Draft


def plan_draft(session: Session, settings: Settings, *,
               split_at: tuple[float, float] = P_SPLIT,
               redraw_at: tuple[float, float] = P_EDGE) -> Plan:
    """A draft of the active generation (id 0 until it is made): the finest grid at split_at
    cut in two (west and east of its centroid; new codes: the next free serials of its
    community), and the edge between the grid at redraw_at and a sibling neighbour moved
    ~40 m into the neighbour."""
    active = grids.active_generation(session)
    assert active is not None
    units = grids.generation_units(session, active.id)
    by_code = {u.code: u for u in units}
    code = _finest_at(session, active.id, *split_at)
    grid = by_code[code]
    assert grid.parent_code
    c = grid.geometry.centroid
    _, y0, _, y1 = grid.geometry.bounds
    cut = LineString([(c.x, y0 - 1e-3), (c.x, y1 + 1e-3)])
    pieces = list(split(grid.geometry, cut).geoms)
    west = shapely.union_all([g for g in pieces if g.centroid.x < c.x])
    east = shapely.union_all([g for g in pieces if g.centroid.x >= c.x])
    serial = max(int(u.code[-3:]) for u in units if u.parent_code == grid.parent_code)
    parts = (f"{grid.parent_code}{serial + 1:03d}", f"{grid.parent_code}{serial + 2:03d}")
    new = [u for u in units if u.code != code]
    new.append(grids.UnitInput(parts[0], grid.name + "西", grid.level, grid.parent_code, west))
    new.append(grids.UnitInput(parts[1], grid.name + "东", grid.level, grid.parent_code, east))
    # the shared edge of two siblings moved into the second one
    grown = _finest_at(session, active.id, *redraw_at)
    assert grown != code
    sibling = next(n["code"] for n in grids.neighbours(session, active.id, grown, settings)
                   if by_code[n["code"]].parent_code == by_code[grown].parent_code
                   and n["code"] != code and n["shared_boundary_m"] > 100)
    g, s = by_code[grown].geometry, by_code[sibling].geometry
    piece = s.intersection(g.buffer(4e-4))
    new = [u for u in new if u.code not in (grown, sibling)]
    for unit, geom in ((by_code[grown], shapely.union_all([g, piece])),
                       (by_code[sibling], s.difference(piece))):
        new.append(grids.UnitInput(unit.code, unit.name, unit.level, unit.parent_code, geom,
                                   unit.leader_name, unit.leader_phone, unit.attributes))
    inner = piece.difference(g.buffer(1e-4)).representative_point()
    return Plan(new, Draft(0, active.id, code, parts, (grown, sibling), (inner.x, inner.y)))


def make_draft(session: Session, settings: Settings, plan: Plan | None = None) -> Draft:
    """Load the plan (by default plan_draft's) as a draft: grids.load_generation(activate=
    False), as an import kept for review does."""
    plan = plan or plan_draft(session, settings)
    gen = grids.load_generation(session, plan.units, settings, label="draft (test)",
                                activate=False)
    session.flush()
    return replace(plan.draft, id=gen.id)


# ---------------------------------------------------------------- the probes


def _probes(d: Draft, grid: str, dept: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url, request kwargs) of every public read; answers compared whole."""
    pts = [P_SPLIT, P_EDGE, d.moved_point]
    out: list[tuple[str, str, dict[str, Any]]] = []
    for lon, lat in pts:
        out += [
            ("GET", f"/resolve?lon={lon}&lat={lat}", {}),  # the fast path
            ("GET", f"/resolve?lat={lat}&lon={lon}&crs=EPSG:4326", {}),  # the route
            ("POST", "/resolve", {"json": {"lon": lon, "lat": lat}}),
            ("GET", f"/owner?lon={lon}&lat={lat}&category=C0101", {}),
            ("GET", f"/owner?lon={lon}&lat={lat}&category=E0501", {}),
            ("GET", f"/lookup?lon={lon}&lat={lat}", {}),
            ("GET", f"/map/lookup?lon={lon}&lat={lat}", {}),
        ]
    batch = [{"id": i, "lon": lon, "lat": lat} for i, (lon, lat) in enumerate(pts)]
    csv = "id,lon,lat\n" + "".join(f"{i},{lon},{lat}\n" for i, (lon, lat) in enumerate(pts))
    out += [
        ("POST", "/resolve/batch", {"json": batch}),
        ("POST", "/resolve/batch", {"content": csv, "headers": {"content-type": "text/csv"}}),
        ("POST", "/resolve/batch", {"json": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": i, "properties": {},
             "geometry": {"type": "Point", "coordinates": [lon, lat]}}
            for i, (lon, lat) in enumerate(pts)]}}),
    ]
    parent = d.split[:-3]
    for code in (d.split, *d.parts, *d.redrawn, parent):
        out += [("GET", f"/grids/{code}", {}), ("GET", f"/grids/{code}/history", {}),
                ("GET", f"/map/grid/{code}", {})]
    out += [
        ("GET", "/grids?level=grid&limit=2000", {}),
        ("GET", f"/grids?parent={parent}", {}),
        ("GET", f"/grids?level=grid&generation={d.active}&limit=5", {}),
        ("GET", "/grids?level=grid&bbox=121.22,31.02,121.24,31.04", {}),
        ("GET", "/grids?f=geojson", {}),
        ("GET", "/grids?f=csv&level=grid", {}),
        ("GET", "/alignment", {}),
        ("GET", f"/alignment/{dept}", {}),
        ("GET", "/layers/assets?limit=5000", {}),
        ("GET", f"/layers/assets?grid_code={d.split}", {}),
        ("GET", f"/layers/assignments?grid_code={grid}", {}),
        ("GET", "/kpis?unit=department&since=2000-01-01T00:00:00Z", {}),
        ("GET", "/hotspots?since=2000-01-01T00:00:00Z", {}),
        ("GET", "/hotspots/chronic", {}),
        ("GET", "/open311/v2/requests.json?start_date=2000-01-01T00:00:00Z", {}),
        ("GET", "/map/wall", {}),
        ("GET", "/map/wall/counts.json", {}),
        ("GET", "/map/wall/open.json?bbox=121.1,30.9,121.4,31.2&zoom=15", {}),
        ("GET", f"/map/generation/{d.active}", {}),
        ("GET", "/health", {}),
    ]
    return out


# what changes from one request to the next whatever the grid (clocks, timings)
_VOLATILE_KEYS = {"at", "took_ms", "generated_at", "until", "now"}
_VOLATILE_TEXT = [re.compile(p) for p in (
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?",
    r"\b[a-z_]+_[0-9a-f]{32}")]  # folium's variable names


def _scrub(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if k not in _VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    if isinstance(obj, str):
        return _scrub_text(obj)
    return obj


def _scrub_text(s: str) -> str:
    for p in _VOLATILE_TEXT:
        s = p.sub("~", s)
    return s


def _answer(client: TestClient, method: str, url: str, kw: dict[str, Any]) -> Any:
    r = client.request(method, url, **kw)
    kind = r.headers.get("content-type", "")
    if "json" in kind:
        body: Any = _scrub(orjson.loads(r.content))
    else:
        body = _scrub_text(r.content.decode("utf-8", "replace"))
    headers = {k: v for k, v in r.headers.items() if k.startswith("x-gridops")}
    return r.status_code, headers, body


@pytest.fixture()
def app_client(full_client: TestClient, full_session: Session, settings: Settings
               ) -> Iterator[TestClient]:
    """full_client with its grid index and ownership snapshot read from the test's
    transaction (the draft would be in sight of both) and without a token."""
    _reset(full_client, full_session, settings)
    full_client.headers.pop("authorization", None)
    yield full_client


def _reset(client: TestClient, session: Session, settings: Settings) -> None:
    """Fresh registries and caches (rebuilt with whatever the session sees now)."""
    app: Any = client.app
    services = app.state.services
    shared: Any = lambda: nullcontext(session)  # noqa: E731 (used as a session factory)
    services.sessions = shared  # the draft check of a named generation reads it too
    services.indexes = IndexRegistry(shared, settings)
    services.indexes.refresh()
    services.owners = OwnershipRegistry(shared, settings)
    services.owners.refresh()
    services.page_cache = TTLCache()
    services.study_areas = StudyAreas()
    app.fast_path = ResolveFastPath(services.indexes)


def _token(session: Session, role: str) -> dict[str, str]:
    _, secret = create_token(session, f"draft-test-{role}", role)
    return {"authorization": f"Bearer {secret}"}


def test_a_pending_draft_changes_no_answer(app_client: TestClient, full_session: Session,
                                           settings: Settings) -> None:
    c = app_client
    plan = plan_draft(full_session, settings)
    ghost = plan.draft
    dept = c.get("/alignment").json()["ranking"][0]["department"]
    probes = _probes(ghost, ghost.split, dept)
    before = {i: _answer(c, m, u, kw) for i, (m, u, kw) in enumerate(probes)}

    d = make_draft(full_session, settings, plan)
    # the draft is real: it answers otherwise when asked for by a planner
    planner = _token(full_session, "planner")
    r = c.get(f"/resolve?lon={P_SPLIT[0]}&lat={P_SPLIT[1]}&generation={d.id}", headers=planner)
    assert r.status_code == 200 and r.json()["grid"]["code"] in d.parts, r.text
    r = c.get(f"/resolve?lon={d.moved_point[0]}&lat={d.moved_point[1]}&generation={d.id}",
              headers=planner)
    assert r.json()["grid"]["code"] == d.redrawn[0]
    r = c.get(f"/resolve?lon={d.moved_point[0]}&lat={d.moved_point[1]}")
    assert r.json()["grid"]["code"] == d.redrawn[1]

    _reset(c, full_session, settings)  # every registry rebuilt with the draft in sight
    diffs = []
    for i, (m, u, kw) in enumerate(probes):
        after = _answer(c, m, u, kw)
        if after != before[i]:
            diffs.append((m, u, _first_difference(before[i], after)))
    assert not diffs, "\n".join(map(str, diffs[:10]))
    # the edge's second grid too: its answers are those of the active generation
    for code in d.redrawn:
        body = c.get(f"/grids/{code}").json()
        assert body["properties"]["generation_high"] is None
        assert body["properties"]["generation_low"] <= d.active


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if type(a) is not type(b):
        return f"{path}: {str(a)[:200]!r} != {str(b)[:200]!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    if isinstance(a, str) and a != b:
        n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                 min(len(a), len(b)))
        return f"{path} at {n}: {a[max(0, n - 80):n + 80]!r} != {b[max(0, n - 80):n + 80]!r}"
    return f"{path}: {a!r} != {b!r}"


def test_intake_resolves_against_the_active_generation(app_client: TestClient,
                                                       full_session: Session,
                                                       settings: Settings) -> None:
    c = app_client
    d = make_draft(full_session, settings)
    _reset(c, full_session, settings)
    centre = _token(full_session, "centre")
    for lon, lat in (P_SPLIT, d.moved_point):
        want = c.get(f"/resolve?lon={lon}&lat={lat}").json()["grid"]["code"]
        assert want in (d.split, d.redrawn[1])
        r = c.post("/cases", json={"channel": "hotline_12345", "category": "C0101", "lon": lon,
                                   "lat": lat, "description": f"draft test {lon}"},
                   headers=centre)
        assert r.status_code == 201, r.text
        case = r.json()
        assert case["grid"] == want and case["generation"] == d.active, case
        r = c.post("/open311/v2/requests.json", json={
            "service_code": "E0501", "lat": lat, "long": lon,
            "description": f"open311 draft test {lon}"})
        assert r.status_code == 201, r.text
        ref = r.json()[0]["service_request_id"]
        stored = full_session.execute(text('SELECT grid_code, generation_id FROM "case" '
                                           "WHERE ref = :r"), {"r": ref}).one()
        assert tuple(stored) == (want, d.active)


def test_a_draft_named_explicitly(app_client: TestClient, full_session: Session,
                                  settings: Settings) -> None:
    c = app_client
    d = make_draft(full_session, settings)
    _reset(c, full_session, settings)
    lon, lat = P_SPLIT

    def reads(g: int) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            ("GET", f"/resolve?lon={lon}&lat={lat}&generation={g}", {}),
            ("POST", "/resolve", {"json": {"lon": lon, "lat": lat, "generation": g}}),
            ("POST", f"/resolve/batch?generation={g}", {"json": [{"lon": lon, "lat": lat}]}),
            ("GET", f"/grids?generation={g}&level=grid&limit=5", {}),
            ("GET", f"/grids?generation={g}&f=csv", {}),
            ("GET", f"/grids/{d.parts[0]}?generation={g}", {}),
        ]

    unknown = 2_000_000
    tokens = {role: _token(full_session, role) for role in ("patrol", "planner", "centre")}
    for (m, u, kw), (_, u2, kw2) in zip(reads(d.id), reads(unknown), strict=True):
        # the public: the draft is "not published", as an id never used is
        r = c.request(m, u, **kw)
        assert r.status_code == 404, (u, r.text)
        assert r.json() == {"code": "not_found",
                            "detail": f"generation {d.id} is not published"}, u
        r = c.request(m, u2, **kw2)
        assert r.json()["detail"] == f"generation {unknown} is not published", u2
        # a staff token of another role: the same
        r = c.request(m, u, **kw, headers=tokens["patrol"])
        assert r.status_code == 404, (u, r.text)
        # planners and the centre read it
        for role in ("planner", "centre"):
            r = c.request(m, u, **kw, headers=tokens[role])
            assert r.status_code == 200, (role, u, r.text)
    planner = tokens["planner"]
    fc = c.get(f"/grids?generation={d.id}&parent={d.split[:-3]}", headers=planner).json()
    codes = {f["id"] for f in fc["features"]}
    assert set(d.parts) <= codes and d.split not in codes and fc["generation"] == d.id
    # the code only the draft holds is unknown to the public
    r = c.get(f"/grids/{d.parts[0]}")
    assert r.status_code == 404 and "in any generation" in r.json()["detail"]
    r = c.get(f"/grids/{d.parts[0]}/history")
    assert r.status_code == 404
    # a bad token is refused, not taken for the public
    r = c.get(f"/resolve?lon={lon}&lat={lat}&generation={d.id}",
              headers={"authorization": "Bearer nonsense"})
    assert r.status_code == 401
