"""GeoJSON responses built from rows that carry ST_AsGeoJSON text."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

from layers.disclosure import StaffView


class GeoJSONResponse(Response):
    """application/geo+json, serialised with orjson (geometry text is embedded, not re-parsed)."""

    media_type = "application/geo+json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def json_response(obj: Any, status: int = 200,
                  media_type: str = "application/json") -> Response:
    """Any JSON-able object (datetimes as ISO strings) serialised with orjson."""
    return Response(orjson.dumps(obj, default=str), status_code=status, media_type=media_type)


def unit_properties(row: Any, staff: StaffView) -> dict[str, Any]:
    """The properties every unit feature carries (the leader as the caller may see it)."""
    return {
        "code": row.code, "name": row.name, "level": row.level, "level_key": row.level_key,
        "level_name": row.level_name, "parent_code": row.parent_code,
        "generation_low": row.generation_low, "generation_high": row.generation_high,
        "area_m2": round(row.area_m2, 1) if row.area_m2 is not None else None,
        "leader": staff.leader(row.leader_name, row.leader_phone),
        "attributes": row.attributes or {},
    }


def feature(row: Any, properties: dict[str, Any]) -> dict[str, Any]:
    """A Feature whose geometry comes from the row's geojson column."""
    return {"type": "Feature", "id": row.code, "properties": properties,
            "geometry": orjson.Fragment(row.geojson)}
