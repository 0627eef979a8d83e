"""What the OGC API Features routers share (reads in api/routers/ogc.py, writes in
api/routers/ogc_edit.py): the collection a caller may read, the generation a grid read
names, features as GeoJSON, entity tags, the offered CRSs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Path, Request

from api.deps import require
from api.visibility import readable
from layers import ogc
from layers.workflow import CENTRE, PUBLIC
from spatial.errors import NotFound

CRS84 = ogc.CRS84
GEOJSON = "application/geo+json"
BadRequest = ogc.BadParameter
Collection = Annotated[str, Path(description="collection id (GET /ogc/collections)",
                                 max_length=64)]


def base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"

def crs_list(session: Any, gen_id: int | None) -> tuple[ogc.Crs, ...]:
    """The CRSs offered: those of ogc.crs_list for the territory (its box, rounded)."""
    coarse = ogc.catalogue(session)[0]
    box = ogc.extent(session, coarse, gen_id) if gen_id is not None else None
    return ogc.crs_list(tuple(round(v, 2) for v in box) if box else None)

def grid_feature(r: dict[str, Any], staff: Any, gen_id: int) -> dict[str, Any]:
    leader = staff.leader(r["leader_name"], r["leader_phone"]) or {}
    props = {"code": r["code"], "name": r["name"], "level": r["level"],
             "level_key": r["level_key"], "level_name": r["level_name"],
             "parent_code": r["parent_code"],
             "area_m2": round(r["area_m2"], 1) if r["area_m2"] is not None else None,
             "leader_name": leader.get("name"), "leader_phone": leader.get("phone"),
             "attributes": r["attributes"] or {}, "generation": gen_id}
    return {"type": "Feature", "id": r["code"], "geometry": orjson.Fragment(r["geojson"]),
            "properties": props}


def layer_feature(r: dict[str, Any], c: ogc.Collection, staff: Any) -> dict[str, Any]:
    assert c.layer is not None
    props = staff.layer_row(c.layer.name, r["properties"])
    geom = orjson.Fragment(r["geojson"]) if r["geojson"] else None
    return {"type": "Feature", "id": r["id"], "geometry": geom, "properties": props}


def case_feature(r: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": r["id"], "geometry": orjson.Fragment(r["geojson"]),
            "properties": r["properties"]}


def readable_collection(session: Any, user: Any, cid: str) -> ogc.Collection:
    """A collection this caller may read: the cases for the centre (and admin) only, to
    the public as if there were none; a draft's grid for planners and the centre."""
    c = ogc.collection(session, cid)
    if c.kind == "cases":
        if user.role == PUBLIC:
            raise NotFound(f"no collection {cid!r}")
        require(user, CENTRE)
    elif c.generation is not None:
        readable(session, user, generation=c.generation)
    return c

def etag(row: dict[str, Any]) -> str:
    """A feature's version as an entity tag: a grid unit's row and revision (as the drafts
    API gives it), a layer row's version id (every edit makes a new version)."""
    if "revision" in row:
        return f'"{row["id"]}-{row["revision"]}"'
    return f'"{row["version"]}"'


def grid_generation(session: Any, user: Any, c: ogc.Collection, generation: int | None,
                    at: datetime | None) -> Any:
    """The generation a grid read names: a draft collection's draft, else ?generation= or
    the one active at ?datetime= or the active one (drafts for planners and the centre)."""
    if c.generation is not None:
        if generation is not None or at is not None:
            raise BadRequest(f"{'generation' if generation else 'datetime'}: {c.id} is the "
                             f"grid of draft {c.generation}; read grid-<level> for another")
        return readable(session, user, generation=c.generation)
    if generation is not None and at is not None:
        raise BadRequest("generation and datetime name the grid twice: give one")
    return readable(session, user, generation=generation, at=at)
