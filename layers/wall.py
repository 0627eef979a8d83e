"""What the map pages show, aggregated in PostGIS: grid outlines per level, department
zones, the wall's counts and open cases per hexagon (never one row per case beyond what is
on screen), and everything about one grid for its page. No personal data of reporters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import grids
from layers.hotspots import parent_cell_sql
from layers.settings import Settings
from layers.versioning import in_generation, valid_at
from layers.workflow import OPEN
from spatial.errors import NotFound

OPEN_SQL = "c.status IN (" + ", ".join(f"'{s}'" for s in OPEN) + ")"
SIMPLIFY_DEG = 5e-6  # ~0.5 m: outlines for a wall, not for surveying
CASES_ONE_BY_ONE = 500  # individual open cases on screen beyond which they are aggregated


def _fc(rows: Sequence[Any], props: list[str]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": r.code, "geometry": orjson.loads(r.geojson),
         "properties": {k: getattr(r, k) for k in props}} for r in rows]}


def outlines(session: Session, gen_id: int, level: int) -> dict[str, Any]:
    """The units of a level as a FeatureCollection (code, name, parent), simplified."""
    rows = session.execute(text(
        f"SELECT u.code, u.name, u.parent_code, "
        f"ST_AsGeoJSON(ST_SimplifyPreserveTopology(u.geom, :tol), 6) AS geojson "
        f"FROM grid_unit u WHERE {in_generation('u')} AND u.level = :level ORDER BY u.code"),
        {"g": gen_id, "level": level, "tol": SIMPLIFY_DEG}).all()
    return _fc(rows, ["code", "name", "parent_code"])


LABELS_MAX = 2000  # label points in one answer (a wall shows labels zoomed in only)


def label_points(session: Session, gen_id: int, level: int,
                 bbox: tuple[float, float, float, float], limit: int = LABELS_MAX
                 ) -> list[dict[str, Any]]:
    """Where the wall writes the names of a level's units in a box: a point inside each
    (ST_PointOnSurface), its code and name; the largest first when there are more."""
    rows = session.execute(text(
        f"SELECT u.code, u.name, ST_X(p) AS lon, ST_Y(p) AS lat FROM grid_unit u, "
        f"ST_PointOnSurface(u.geom) p WHERE {in_generation('u')} AND u.level = :level "
        f"AND u.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) "
        f"ORDER BY u.area_m2 DESC NULLS LAST, u.code LIMIT :limit"),
        {"g": gen_id, "level": level, "x0": bbox[0], "y0": bbox[1], "x1": bbox[2],
         "y1": bbox[3], "limit": limit}).all()
    return [{"code": r.code, "name": r.name, "lon": round(r.lon, 6), "lat": round(r.lat, 6)}
            for r in rows]


def zone_layer_names(session: Session, at: datetime) -> list[str]:
    """The departments' zone layers that have zones valid at a time."""
    return list(session.scalars(text(
        f"SELECT DISTINCT z.layer FROM department_zone z WHERE {valid_at('z')} "
        "ORDER BY z.layer"), {"at": at}))


def zone_layers(session: Session, at: datetime) -> dict[str, dict[str, Any]]:
    """Departments' zone layers valid at a time, one FeatureCollection per layer."""
    rows = session.execute(text(
        f"SELECT z.layer, z.code, z.name, z.department_code, d.name AS department_name, "
        f"ST_AsGeoJSON(ST_SimplifyPreserveTopology(z.geom, 1e-5), 6) AS geojson "
        f"FROM department_zone z LEFT JOIN department d ON d.code = z.department_code "
        f"AND {valid_at('d')} WHERE {valid_at('z')} ORDER BY z.layer, z.code"),
        {"at": at}).all()
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r.layer, []).append(r)
    return {layer: _fc(rs, ["code", "name", "department_code", "department_name"])
            for layer, rs in out.items()}


def counts(session: Session, tz: str, now: datetime) -> dict[str, int]:
    """The corner panel: open, overdue, escalated, outside the grid, reported and closed
    today (local day)."""
    midnight = now.astimezone(ZoneInfo(tz)).replace(hour=0, minute=0, second=0, microsecond=0)
    r = session.execute(text(
        f"""SELECT count(*) FILTER (WHERE {OPEN_SQL}) AS open,
                   count(*) FILTER (WHERE {OPEN_SQL} AND c.deadline_at < :now) AS overdue,
                   count(*) FILTER (WHERE {OPEN_SQL} AND c.escalation > 0) AS escalated,
                   count(*) FILTER (WHERE {OPEN_SQL} AND NOT c.inside) AS outside
              FROM "case" c WHERE {OPEN_SQL}"""), {"now": now}).mappings().one()
    t = session.execute(text(
        """SELECT (SELECT count(*) FROM "case" c WHERE c.created_at >= :m) AS today,
                  (SELECT count(*) FROM "case" c WHERE c.closed_at >= :m) AS closed_today"""),
        {"m": midnight}).mappings().one()
    return {k: int(v) for k, v in {**r, **t}.items()}


def open_cases(session: Session, bbox: tuple[float, float, float, float], res: int,
               now: datetime) -> dict[str, Any]:
    """Open cases in a box: one by one when few, else per H3 cell at res with counts of
    overdue and escalated ones (the centroid of the cell's cases as its spot)."""
    p: dict[str, Any] = {"x0": bbox[0], "y0": bbox[1], "x1": bbox[2], "y1": bbox[3],
                         "now": now, "limit": CASES_ONE_BY_ONE}
    box = "c.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
    n = session.execute(text(f'SELECT count(*) FROM "case" c WHERE {OPEN_SQL} AND {box}'),
                        p).scalar_one()
    feats: list[dict[str, Any]] = []
    if n <= CASES_ONE_BY_ONE:
        rows = session.execute(text(
            f"""SELECT c.ref, c.category_code, k.name AS category, c.status, c.escalation,
                       c.deadline_at < :now AS overdue, c.owner_department, c.grid_code,
                       c.created_at, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat
                  FROM "case" c LEFT JOIN category k ON k.code = c.category_code
                 WHERE {OPEN_SQL} AND {box} ORDER BY c.created_at DESC LIMIT :limit"""),
            p).all()
        for r in rows:
            feats.append({"type": "Feature", "id": r.ref, "geometry": {
                "type": "Point", "coordinates": [round(r.lon, 6), round(r.lat, 6)]},
                "properties": {"ref": r.ref, "category": r.category or r.category_code,
                               "status": r.status, "escalation": r.escalation,
                               "overdue": bool(r.overdue), "department": r.owner_department,
                               "grid": r.grid_code, "created_at": r.created_at.isoformat(),
                               "count": 1, "overdue_count": int(bool(r.overdue)),
                               "escalated_count": int(r.escalation > 0)}})
        return {"type": "FeatureCollection", "aggregated": False, "total": int(n),
                "features": feats}
    expr, q = parent_cell_sql(res)
    rows = session.execute(text(
        f"""SELECT {expr} AS cell, count(*) AS n,
                   count(*) FILTER (WHERE c.deadline_at < :now) AS overdue,
                   count(*) FILTER (WHERE c.escalation > 0) AS escalated,
                   avg(ST_X(c.geom)) AS lon, avg(ST_Y(c.geom)) AS lat
              FROM "case" c
             WHERE {OPEN_SQL} AND {box} AND c.h3_int IS NOT NULL GROUP BY 1"""),
        p | q).all()
    for r in rows:
        feats.append({"type": "Feature", "id": format(r.cell, "x"), "geometry": {
            "type": "Point", "coordinates": [round(r.lon, 6), round(r.lat, 6)]},
            "properties": {"count": int(r.n), "overdue_count": int(r.overdue),
                           "escalated_count": int(r.escalated), "h3": format(r.cell, "x")}})
    return {"type": "FeatureCollection", "aggregated": True, "res": res, "total": int(n),
            "features": feats}


def grid_people(session: Session, code: str, at: datetime) -> list[dict[str, Any]]:
    """The grid's 1 + X + Y: leader, members and helpers with their departments."""
    return [dict(r) for r in session.execute(text(
        f"""SELECT r.role, r.name, r.phone, r.department_code, d.name AS department_name
              FROM grid_role r LEFT JOIN department d ON d.code = r.department_code
               AND {valid_at('d')}
             WHERE r.grid_code = :code AND {valid_at('r')}
             ORDER BY CASE r.role WHEN 'leader' THEN 0 WHEN 'member' THEN 1 ELSE 2 END,
                      r.name"""), {"code": code, "at": at}).mappings()]


def grid_patrols(session: Session, code: str, at: datetime) -> list[dict[str, Any]]:
    """Patrol teams assigned to the grid, per shift."""
    out = []
    for r in session.execute(text(
        f"""SELECT a.shift, a.weekdays, a.start_time, a.end_time, t.code, t.name,
                   t.department_code, d.name AS department_name, t.members
              FROM patrol_assignment a JOIN patrol_team t ON t.code = a.team_code
               AND {valid_at('t')}
              LEFT JOIN department d ON d.code = t.department_code AND {valid_at('d')}
             WHERE a.grid_code = :code AND {valid_at('a')}
             ORDER BY a.start_time, t.code"""), {"code": code, "at": at}).mappings():
        out.append(dict(r) | {"start_time": r["start_time"].strftime("%H:%M"),
                              "end_time": r["end_time"].strftime("%H:%M"),
                              "members": len(r["members"] or [])})
    return out


def grid_assets(session: Session, code: str, at: datetime) -> list[dict[str, Any]]:
    """Assets in the grid counted by kind and owner department."""
    return [dict(r) for r in session.execute(text(
        f"""SELECT a.kind, a.owner_department, d.name AS owner_name, count(*) AS n
              FROM asset a LEFT JOIN department d ON d.code = a.owner_department
               AND {valid_at('d')}
             WHERE a.grid_code = :code AND {valid_at('a')}
             GROUP BY 1, 2, 3 ORDER BY n DESC, a.kind"""), {"code": code, "at": at}).mappings()]


def grid_cases(session: Session, code: str, now: datetime, limit: int = 25
               ) -> dict[str, Any]:
    """The grid's cases: counts by status (all time and the last 30 days) and the latest."""
    p = {"code": code, "now": now, "since": now - timedelta(days=30), "limit": limit}
    by_status = {r.status: (int(r.n), int(r.recent)) for r in session.execute(text(
        """SELECT c.status, count(*) AS n, count(*) FILTER (WHERE c.created_at >= :since)
                  AS recent FROM "case" c WHERE c.grid_code = :code GROUP BY 1
            ORDER BY 2 DESC"""), p)}
    latest = [dict(r) for r in session.execute(text(
        f"""SELECT c.ref, c.category_code, k.name AS category, c.status, c.created_at,
                   c.deadline_at, c.owner_department, c.escalation,
                   ({OPEN_SQL} AND c.deadline_at < :now) AS overdue
              FROM "case" c LEFT JOIN category k ON k.code = c.category_code
             WHERE c.grid_code = :code ORDER BY c.created_at DESC LIMIT :limit"""),
        p).mappings()]
    return {"by_status": by_status, "latest": latest}


def published_unit(session: Session, gen_id: int, code: str, *, precision: int = 7) -> Any:
    """grids.get_unit, its 404 judged from published generations only: a code that only a
    pending draft holds "does not exist in any generation" (as before the draft existed)."""
    try:
        return grids.get_unit(session, gen_id, code, precision=precision)
    except NotFound:
        known = session.scalar(text(
            "SELECT EXISTS (SELECT 1 FROM grid_unit u JOIN generation g "
            "ON g.id = u.generation_low WHERE u.code = :code AND g.activated_at IS NOT NULL)"),
            {"code": code})
        when = "in this generation" if known else "in any generation"
        raise NotFound(f"grid unit {code!r} does not exist {when} (generation {gen_id})"
                       ) from None


def unit_feature(session: Session, gen_id: int, code: str) -> dict[str, Any]:
    """One unit for a page: its fields and its outline (GeoJSON, 6 decimals)."""
    u = published_unit(session, gen_id, code, precision=6)
    return {"code": u.code, "name": u.name, "level": u.level, "area_m2": u.area_m2,
            "generation_low": u.generation_low, "lon": u.lon, "lat": u.lat,
            "leader_name": u.leader_name, "leader_phone": u.leader_phone,
            "geometry": orjson.loads(u.geojson)}


def neighbour_features(session: Session, settings: Settings, gen_id: int, code: str
                       ) -> list[dict[str, Any]]:
    """The unit's edge neighbours (四至) with their outlines, in one query for the shapes."""
    found = grids.neighbours(session, gen_id, code, settings)
    rows, _ = grids.list_units(session, gen_id, codes=[n["code"] for n in found],
                               precision=6)
    shapes = {r.code: orjson.loads(r.geojson) for r in rows}
    return [n | {"geometry": shapes[n["code"]]} for n in found]


def leader_role(unit: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid leader (网格长) as a row of the grid page's people table."""
    if not unit["leader_name"]:
        return []
    return [{"role": "leader (网格长)", "name": unit["leader_name"],
             "phone": unit["leader_phone"], "department_name": None}]


MIN_UNIT_PX = 6.0  # a level's outlines are drawn from the zoom where its units are this wide


def level_min_zooms(session: Session, gen_id: int, lat: float,
                    min_px: float = MIN_UNIT_PX) -> dict[int, int]:
    """Per level, the zoom from which the wall draws its outlines: the first at which a
    typical unit (the square of its median area) is min_px pixels wide at latitude lat.
    Below it the level's units would be specks: the coarser levels show the city."""
    import math

    rows = session.execute(text(
        "SELECT u.level, percentile_cont(0.5) WITHIN GROUP (ORDER BY u.area_m2) "
        f"FROM grid_unit u WHERE {in_generation('u')} GROUP BY u.level"), {"g": gen_id})
    per_px_z0 = 2 * math.pi * 6_378_137.0 / 256 * math.cos(math.radians(lat))
    out: dict[int, int] = {}
    for level, median in rows:
        side = math.sqrt(max(float(median or 0.0), 0.0))
        z = 0
        while z < 22 and side * (1 << z) / per_px_z0 < min_px:
            z += 1
        out[int(level)] = z
    return out
