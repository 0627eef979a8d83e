"""A lattice city of a few hundred grids, and GIS files of it written by GDAL (pyogrio)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import shapely
from pyproj import Transformer
from shapely import MultiPolygon, box

from layers.grids import UnitInput
from spatial.crs import wgs84_to_gcj02

X0, Y0 = 121.20, 31.00
W, H = 0.02, 0.03  # one street: about 1.9 km x 3.3 km


def lattice_city(streets: int = 2, communities: int = 3, side: int = 7,
                 district: str = "319998") -> list[UnitInput]:
    """Streets side by side west to east, each cut into communities north to south, each
    into side x side grids: 1 + 2 + 6 + 294 units by default, national code lengths."""
    units = [UnitInput(district, "格点区", 1, None, box(X0, Y0, X0 + streets * W, Y0 + H))]
    ch = H / communities
    for s in range(streets):
        sx = X0 + s * W
        scode = f"{district}{s + 1:03d}"
        units.append(UnitInput(scode, f"第{s + 1}街道", 2, district, box(sx, Y0, sx + W, Y0 + H)))
        for c in range(communities):
            cy = Y0 + H - (c + 1) * ch
            ccode = f"{scode}{c + 1:03d}"
            units.append(UnitInput(ccode, f"第{s + 1}街道第{c + 1}社区", 3, scode,
                                   box(sx, cy, sx + W, cy + ch)))
            gw, gh = W / side, ch / side
            k = 0
            for row in range(side):
                for col in range(side):
                    k += 1
                    gx, gy = sx + col * gw, cy + ch - (row + 1) * gh
                    # the last column/row end exactly on the community's edge
                    x1 = sx + W if col == side - 1 else gx + gw
                    y0 = cy if row == side - 1 else gy
                    units.append(UnitInput(
                        f"{ccode}{k:03d}", f"{c + 1}社区{k}号网格", 4, ccode,
                        box(gx, y0, x1, gy + gh), leader_name=f"网格长{k}",
                        leader_phone=f"1380000{k:04d}", attributes={"zone": "A" if k % 2 else "B"}))
    return units


def write_units(path: Path, units: Sequence[UnitInput], *, driver: str, layer: str = "grid",
                crs: str = "EPSG:4326", fields: dict[str, str] | None = None,
                encoding: str | None = None, geometries: Sequence[Any] | None = None,
                extra: dict[str, Sequence[Any]] | None = None) -> Path:
    """Write units with GDAL: fields maps code/name/parent/level/leader to column names
    (a column left out is not written); geometries converted from lon/lat to `crs`."""
    fields = fields if fields is not None else {"code": "GRIDCODE", "name": "名称"}
    geoms = np.array([u.geometry for u in units] if geometries is None else geometries,
                     dtype=object)
    if crs == "GCJ-02":
        geoms = shapely.transform(geoms, lambda x, y: wgs84_to_gcj02(x, y), interleaved=False)
        crs_out: str | None = "EPSG:4326"
    elif crs != "EPSG:4326":
        t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        geoms = shapely.transform(geoms, lambda x, y: t.transform(x, y), interleaved=False)
        crs_out = crs
    else:
        crs_out = crs
    getters = {"code": lambda u: u.code, "name": lambda u: u.name,
               "parent": lambda u: u.parent_code, "level": lambda u: u.level,
               "leader": lambda u: u.leader_name}
    names = list(fields.values())
    data = [np.array([getters[k](u) for u in units], dtype=object) for k in fields]
    for k, vals in (extra or {}).items():
        names.append(k)
        arr = np.asarray(vals)
        data.append(arr if arr.dtype.kind in "fi" else np.array(list(vals), dtype=object))
    if "level" in fields:
        data[list(fields).index("level")] = np.array([u.level for u in units], dtype=np.int32)
    wkb = shapely.to_wkb(np.array([g if isinstance(g, MultiPolygon) or g is None
                                   or g.geom_type != "Polygon" else MultiPolygon([g])
                                   for g in geoms], dtype=object))
    gtypes = {g.geom_type for g in geoms if g is not None}
    gtype = "MultiPolygon" if gtypes <= {"Polygon", "MultiPolygon"} else gtypes.pop()
    pyogrio.raw.write(str(path), wkb, data, names, layer=layer, driver=driver,
                      geometry_type=gtype, crs=crs_out, encoding=encoding)
    return path
