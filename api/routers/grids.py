"""Read the nested grid: pages of units as GeoJSON, one unit with its family, its history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.deps import SessionDep, SettingsDep, StaffViewDep
from api.geojson import GeoJSONResponse, feature, unit_properties
from api.params import BboxDep
from api.routing import CheckedRoute
from api.schemas.common import GenerationOut, errors, geojson
from api.schemas.grids import UnitCollection, UnitDetail, UnitHistory
from api.visibility import ReadableGenerationDep, published_ends, published_high
from layers import gisfile, grid_export, grids, wall
from spatial.errors import InvalidInput

router = APIRouter(route_class=CheckedRoute, prefix="/grids", tags=["grids"])

ExportFormat = Literal["gpkg", "shp", "geojson", "fgb", "csv"]
CodePath = Annotated[str, Path(description="unit code (6/9/12/15 digits)",
                               pattern=r"^[0-9]{1,32}$")]


def _properties(row: Any, staff: StaffViewDep, ends: list[int]) -> dict[str, Any]:
    """A unit's feature properties, its generation_high as published (a pending draft's
    end of the row is not shown)."""
    props: dict[str, Any] = unit_properties(row, staff)
    props["generation_high"] = published_high(row.generation_high, ends)
    return props


@router.get("", response_class=GeoJSONResponse, response_model=UnitCollection,
            responses={200: {"content": {"application/geo+json": {"schema": {"anyOf": [
                                 geojson(UnitCollection)["content"]["application/geo+json"][
                                     "schema"],
                                 {"description": "f=geojson: the whole generation as a file",
                                  "type": "object", "required": ["type", "features"],
                                  "properties": {"type": {"const": "FeatureCollection"},
                                                 "features": {"type": "array"}}}]}},
                                         **{m: {"schema": {"type": "string",
                                                           "format": "binary"}}
                                            for m in gisfile.MEDIA_TYPES.values()
                                            if m != "application/geo+json"}}},
                       **errors(401, 404, 422, 503)})
def list_grids(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    gen: ReadableGenerationDep,
    staff: StaffViewDep,
    box: BboxDep,
    level: Annotated[str | None, Query(description="rank (1-4) or key (district, street, "
                                       "community, grid)")] = None,
    parent: Annotated[str | None, Query(pattern=r"^[0-9]{1,32}$",
                                        description="only children of this code")] = None,
    limit: Annotated[int, Query(ge=1, description="page size")] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    f: Annotated[ExportFormat | None, Query(
        description="a file of the whole generation (or one level) instead of a page: "
                    "gpkg, shp (zipped), geojson, fgb, csv, with the fields an import "
                    "reads and full coordinate precision")] = None,
    crs: Annotated[str | None, Query(max_length=80, description="with f=: the CRS of the "
                                     "file's coordinates (default EPSG:4326)")] = None,
) -> Response:
    """Grid units as a GeoJSON FeatureCollection, paged (links.next when more remain),
    coordinates to 7 decimals (about 1 cm, for display); with `f=` the whole generation
    as a file at full precision, for the round trip export -> edit in QGIS -> import."""
    if f is not None:
        if parent is not None or box is not None:
            raise InvalidInput("f: an export is of a whole generation or level; parent and "
                               "bbox are for pages")
        rank = grids.level_rank(session, level) if level is not None else None
        data, _ = grid_export.export_grid(
            session, gen.id, f, level=rank, crs=crs,
            leader_name=staff.leader("x", None) is not None,
            leader_phone=(staff.leader(None, "x") or {}).get("phone") is not None)
        assert isinstance(data, bytes)
        ext = ".zip" if f == "shp" else gisfile.FORMATS[f][1]
        return Response(data, media_type=gisfile.MEDIA_TYPES[f], headers={
            "Content-Disposition": f'attachment; filename="grid-generation-{gen.id}{ext}"'})
    if crs is not None:
        raise InvalidInput("crs: only with f= (GeoJSON pages are EPSG:4326)")
    if limit > settings.page_size_max:
        raise InvalidInput(f"limit: at most {settings.page_size_max} per page, got {limit}")
    rank = grids.level_rank(session, level) if level is not None else None
    rows, total = grids.list_units(session, gen.id, level=rank, parent=parent, bbox=box,
                                   limit=limit, offset=offset)
    ends = published_ends(session)
    links: list[dict[str, str]] = []
    if offset + len(rows) < total:
        nxt = request.url.include_query_params(offset=offset + limit, limit=limit)
        links.append({"rel": "next", "href": str(nxt)})
    if offset > 0:
        prev = request.url.include_query_params(offset=max(0, offset - limit), limit=limit)
        links.append({"rel": "prev", "href": str(prev)})
    body = {
        "type": "FeatureCollection",
        "generation": gen.id,
        "numberMatched": total,
        "numberReturned": len(rows),
        "links": links,
        "features": [feature(r, _properties(r, staff, ends)) for r in rows],
    }
    return GeoJSONResponse(body)


@router.get("/{code}", response_class=GeoJSONResponse, response_model=UnitDetail,
            responses={200: geojson(UnitDetail), **errors(401, 404, 422, 503)})
def get_grid(code: CodePath, session: SessionDep, settings: SettingsDep, staff: StaffViewDep,
             gen: ReadableGenerationDep) -> GeoJSONResponse:
    """One unit as a Feature, with its parent chain, children and edge neighbours (四至)."""
    row = wall.published_unit(session, gen.id, code)
    props = _properties(row, staff, published_ends(session))
    props["generation"] = gen.id
    props["point_on_surface"] = [row.lon, row.lat]
    props["parents"] = [dict(p._mapping) for p in grids.parent_chain(session, gen.id, code)]
    props["children"] = [
        {"code": c.code, "name": c.name, "level": c.level,
         "area_m2": round(c.area_m2, 1) if c.area_m2 is not None else None}
        for c in grids.children(session, gen.id, code)
    ]
    nbrs = grids.neighbours(session, gen.id, code, settings)
    props["neighbours"] = nbrs
    props["sizhi"] = {side: [n["code"] for n in nbrs if n["side"] == side]
                      for side in ("north", "east", "south", "west")}
    return GeoJSONResponse(feature(row, props))


@router.get("/{code}/history", response_model=UnitHistory, responses=errors(404, 422, 503))
def grid_history(code: CodePath, session: SessionDep, staff: StaffViewDep) -> dict[str, Any]:
    """Every version of a unit across generations, with when each was valid."""
    rows = grids.history(session, code)
    gens = {g.id: g for g in grids.list_generations(session) if g.activated_at is not None}
    ends = sorted(gens)
    versions = []
    for r in rows:
        versions.append({
            "name": r.name, "level": r.level, "parent_code": r.parent_code,
            "generation_low": r.generation_low,
            "generation_high": published_high(r.generation_high, ends),
            "generation_label": r.low_label,
            "valid_from": r.valid_from, "valid_to": r.valid_to,
            "current": r.current,
            "area_m2": round(r.area_m2, 1) if r.area_m2 is not None else None,
            "leader": staff.leader(r.leader_name, r.leader_phone) or {"name": None, "phone": None},
            "geometry": orjson.loads(r.geojson),
        })
    return {
        "code": code,
        "versions": versions,
        "generations": [GenerationOut.model_validate(g, from_attributes=True).model_dump()
                        for g in gens.values()],
    }

