"""Everything at a spot (the dispute page's data) and the 多格合一 alignment of a
department's zones with the grid. PostGIS does the set work."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.ownership import candidate_categories, resolve_owner
from layers.ownership_store import OwnershipRegistry
from layers.resolver import IndexRegistry
from layers.settings import Settings
from layers.versioning import finest_level, in_generation, valid_at
from spatial import h3index
from spatial.errors import NotFound

POINT = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"


def layers_at(session: Session, lon: float, lat: float, radius_m: float, at: datetime
              ) -> dict[str, Any]:
    """Department zones and ownership areas covering the point; assets within radius."""
    # a box around the point in degrees (generous) lets the GiST index find the assets
    deg = radius_m / (111_320.0 * max(math.cos(math.radians(lat)), 0.01)) * 1.2
    p = {"lon": lon, "lat": lat, "r": radius_m, "at": at, "deg": deg}
    zones = [dict(r) | {"geometry": orjson.Fragment(r["geometry"])} for r in session.execute(
        text(f"""SELECT z.layer, z.code, z.name, z.department_code, d.name AS department_name,
                        ST_AsGeoJSON(z.geom, 7) AS geometry
                   FROM department_zone z
                   LEFT JOIN department d ON d.code = z.department_code AND {valid_at('d')}
                  WHERE {valid_at('z')} AND ST_Covers(z.geom, {POINT})
                  ORDER BY z.layer, z.code"""), p).mappings()]
    areas = [dict(r) | {"geometry": orjson.Fragment(r["geometry"])} for r in session.execute(
        text(f"""SELECT o.code, o.kind, o.name, o.owner_department, d.name AS owner_name,
                        o.priority, o.applies_to, ST_AsGeoJSON(o.geom, 7) AS geometry
                   FROM ownership_area o
                   LEFT JOIN department d ON d.code = o.owner_department AND {valid_at('d')}
                  WHERE {valid_at('o')} AND ST_Covers(o.geom, {POINT})
                  ORDER BY o.priority DESC, o.code"""), p).mappings()]
    assets = [dict(r) | {"geometry": orjson.Fragment(r["geometry"])} for r in session.execute(
        text(f"""SELECT a.code, a.kind, a.category_code, a.name, a.state, a.owner_department,
                        d.name AS owner_name, a.maintainer_department,
                        a.supervising_department, a.grid_code,
                        round(ST_Distance(a.geom::geography, {POINT}::geography)::numeric, 2)
                          AS distance_m,
                        ST_AsGeoJSON(a.geom, 7) AS geometry
                   FROM asset a
                   LEFT JOIN department d ON d.code = a.owner_department AND {valid_at('d')}
                  WHERE {valid_at('a')} AND a.geom && ST_Expand({POINT}, :deg)
                    AND ST_DWithin(a.geom::geography, {POINT}::geography, :r)
                  ORDER BY distance_m, a.code LIMIT 200"""), p).mappings()]
    for a in assets:
        a["distance_m"] = float(a["distance_m"])
    return {"zones": zones, "areas": areas, "assets": assets}


def spot(session: Session, indexes: IndexRegistry, owners: OwnershipRegistry,
         settings: Settings, lon: float, lat: float, radius: float, at: datetime | None,
         category: str | None) -> dict[str, Any]:
    """Everything at a WGS84 spot for settling a dispute: the grid chain, zones and areas
    covering it, assets within the radius, and the owner answer for the category or for
    every category with a candidate there (the /lookup answer and the dispute page's data)."""
    when = at or datetime.now(UTC)
    idx = indexes.get(at=at)
    g, cell = idx.lookup_one(lon, lat)
    chain = idx.chain(g) if g >= 0 else []
    found = layers_at(session, lon, lat, radius, when)
    snap = owners.current if at is None else owners.at(at, lon, lat)
    cats = [category] if category else candidate_categories(snap, lon, lat)
    answers = [resolve_owner(snap, lon, lat, c, chain, settings, when=at) for c in cats]
    return {"wgs84": {"lon": lon, "lat": lat}, "radius_m": radius, "at": when,
            "inside": bool(chain), "chain": chain, "h3": h3index.cell_str(cell),
            "generation": idx.generation, **found, "owners": answers}


def alignment(session: Session, department: str, settings: Settings, gen_id: int,
              at: datetime, *, whole_share: float = 0.99, sliver_m2: float = 100.0
              ) -> dict[str, Any]:
    """How a department's zones line up with the finest grids: for each grid the zones that
    cover it and their area shares; grids split between zones; slivers under a threshold;
    the score = share of grids wholly (≥ whole_share) inside one zone."""
    p = {"dept": department, "g": gen_id, "at": at, "srid": settings.metric_srid}
    n = session.execute(text(f"SELECT count(*) FROM department_zone z WHERE "
                             f"z.department_code = :dept AND {valid_at('z')}"), p).scalar_one()
    if not n:
        raise NotFound(f"department {department!r} has no zones at {at.isoformat()}")
    rows = session.execute(text(f"""
        WITH g AS (
            SELECT u.code, u.name, u.geom, u.area_m2 FROM grid_unit u
             WHERE u.level = {finest_level()} AND {in_generation('u')}),
        z AS (SELECT z.layer, z.code, z.name, z.geom FROM department_zone z
               WHERE z.department_code = :dept AND {valid_at('z')})
        SELECT g.code AS grid, g.name AS grid_name, g.area_m2, z.layer, z.code AS zone,
               z.name AS zone_name,
               ST_Area(ST_Transform(ST_Intersection(g.geom, z.geom), :srid)) AS shared_m2
          FROM g JOIN z ON z.geom && g.geom AND ST_Intersects(z.geom, g.geom)
         ORDER BY g.code, shared_m2 DESC"""), p).mappings().all()
    grids: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["shared_m2"] <= 0:
            continue
        g = grids.setdefault(r["grid"], {"grid": r["grid"], "name": r["grid_name"],
                                         "area_m2": round(r["area_m2"], 1), "zones": []})
        g["zones"].append({"layer": r["layer"], "zone": r["zone"], "name": r["zone_name"],
                           "shared_m2": round(r["shared_m2"], 1),
                           "share": round(r["shared_m2"] / r["area_m2"], 4)})
    total = session.execute(text(
        f"SELECT count(*) FROM grid_unit u WHERE {in_generation('u')} "
        f"AND u.level = {finest_level()}"), p).scalar_one()
    whole = split = 0
    slivers = []
    for g in grids.values():
        best = max(z["share"] for z in g["zones"])
        g["whole"] = best >= whole_share
        whole += g["whole"]
        if not g["whole"]:
            split += 1
        for z in g["zones"]:
            if z["shared_m2"] < sliver_m2:
                slivers.append({"grid": g["grid"], "zone": z["zone"],
                                "shared_m2": z["shared_m2"]})
    uncovered = total - len(grids)
    return {
        "department": department, "generation": gen_id, "at": at.isoformat(),
        "zones": n, "grids": total, "grids_whole": whole, "grids_split": split,
        "grids_uncovered": uncovered,
        "score": round(whole / total, 4) if total else 0.0,
        "whole_share": whole_share, "sliver_m2": sliver_m2,
        "slivers": slivers,
        "by_grid": list(grids.values()),
    }


def zone_departments(session: Session, at: datetime) -> list[str]:
    """Departments that have a zone layer at a time."""
    return list(session.scalars(text(
        f"SELECT DISTINCT department_code FROM department_zone z WHERE {valid_at('z')} "
        "ORDER BY 1"), {"at": at}))
