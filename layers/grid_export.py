"""A generation's grid as a GIS file, with the fields an import reads back (the planner's
round trip: export -> edit in QGIS -> import). Coordinates at full precision: an unchanged
grid exported and imported again makes no new row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import gisfile
from layers.versioning import in_generation

# the fixed fields, named to fit a Shapefile's 10 characters (the importer's guesses)
FIXED = ("code", "name", "level", "parent", "leader", "leader_tel")


def grid_features(session: Session, gen_id: int, *, level: int | None = None,
                  leader_name: bool = True, leader_phone: bool = True,
                  ) -> tuple[dict[str, list[Any]], list[Any]]:
    """The units of a generation as export fields and lon/lat geometries, coarse to fine.

    leader_name / leader_phone False leave the grid leader out (a public download)."""
    where = [in_generation("u")]
    params: dict[str, Any] = {"g": gen_id}
    if level is not None:
        where.append("u.level = :level")
        params["level"] = level
    rows = session.execute(text(
        f"SELECT u.code, u.name, lv.key AS level_key, u.parent_code, u.leader_name, "
        f"u.leader_phone, u.attributes, ST_AsBinary(u.geom) AS wkb FROM grid_unit u "
        f"JOIN grid_level lv ON lv.rank = u.level WHERE {' AND '.join(where)} "
        f"ORDER BY u.level, u.code"), params).all()
    keys: list[str] = []
    for r in rows:
        for k in (r.attributes or {}):
            if k not in keys:
                keys.append(k)
    out_keys = {k: (k if k.lower() not in FIXED else f"attr_{k}") for k in keys}
    fields: dict[str, list[Any]] = {f: [] for f in FIXED} | {out_keys[k]: [] for k in keys}
    for r in rows:
        fields["code"].append(r.code)
        fields["name"].append(r.name)
        fields["level"].append(r.level_key)
        fields["parent"].append(r.parent_code)
        fields["leader"].append(r.leader_name if leader_name else None)
        fields["leader_tel"].append(r.leader_phone if leader_phone else None)
        attrs = r.attributes or {}
        for k in keys:
            v = attrs.get(k)
            fields[out_keys[k]].append(v if v is None or isinstance(v, str | int | float | bool)
                                       else str(v))
    geoms = list(shapely.from_wkb([bytes(r.wkb) for r in rows])) if rows else []
    return fields, geoms


def export_grid(session: Session, gen_id: int, fmt: str, *, path: str | Path | None = None,
                level: int | None = None, crs: str | None = None,
                leader_name: bool = True, leader_phone: bool = True, layer: str = "grid",
                ) -> tuple[bytes | list[Path], int]:
    """Write the grid as `fmt` to `path` (the files written), or return the bytes of one
    download (a Shapefile zipped); and the number of units."""
    fields, geoms = grid_features(session, gen_id, level=level, leader_name=leader_name,
                                  leader_phone=leader_phone)
    if path is not None:
        p = Path(path)
        files = gisfile.write_table(p, fmt, fields, geoms, layer=p.stem or layer, crs=crs)
        return files, len(geoms)
    return gisfile.export_bytes(fmt, fields, geoms, layer=layer, crs=crs), len(geoms)


def export_columns() -> Sequence[str]:
    """The fixed columns every export has (attributes follow)."""
    return FIXED
