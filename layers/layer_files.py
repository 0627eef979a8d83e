"""A responsibility layer as a GIS file and back: export every row valid at a time as
GeoPackage, Shapefile (zipped), GeoJSON, FlatGeobuf or CSV, and import such a file through
the same validation as every other import (layers.responsibility.import_rows).

The columns an export writes are exactly the fields an import reads: the layer's own
fields (layers.layer_schemas), lists and objects as JSON text, times as HH:MM:SS. A
Shapefile's dBASE table names a column in at most 10 characters and holds at most 254
bytes a value: longer names get a fixed short alias (SHP_NAMES), a longer text continues
in numbered columns (`members`, `members_2`, ...); an import reads either. So an export
imported again changes nothing. Layers without geometry are attribute tables (a
Shapefile of one is its .dbf, zipped).

A Shapefile holds one geometry type: assets of mixed points, lines and polygons are refused
as shp, naming gpkg (gisfile.write_table)."""

from __future__ import annotations

import io
import tempfile
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError, FieldError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers import gisfile
from layers import responsibility as resp
from spatial import crs as crsmod
from spatial.errors import InvalidInput, TooLarge

# dBASE column names (at most 10 characters) of the fields whose names are longer
SHP_NAMES: dict[str, str] = {
    "parent_code": "parent_cd",
    "contact_name": "contact_nm",
    "contact_phone": "contact_ph",
    "territory_code": "territory",
    "major_name_en": "major_en",
    "default_department": "default_dp",
    "deadline_hours": "deadline_h",
    "snap_radius_m": "snap_m",
    "duplicate_radius_m": "dup_radius",
    "duplicate_window_h": "dup_window",
    "category_code": "category",
    "supervising_department": "superv_dp",
    "owner_department": "owner_dp",
    "maintainer_department": "maint_dp",
    "department_code": "department",
}
DBF_TEXT_MAX = 254  # bytes of one dBASE text value
DBF_PARTS_MAX = 9  # a text continues in at most this many columns
# columns a file may carry that are not the layer's fields: ignored (GDAL's feature ids,
# what GET /layers shows besides the fields, a CSV's geometry of a layer without one)
IGNORED = {"fid", "ogc_fid", "id", "objectid", "valid_from", "valid_to", "grid_code",
           "wkt", "geometry", "geom", "the_geom", "shape_leng", "shape_area", "lon", "lat"}
_GUESSED_ENCODINGS = ("UTF-8", "GB18030")


# ---------------------------------------------------------------- field kinds


def _kind(annotation: Any) -> str:
    """How a field is written to a file: 'json' (lists, objects), 'time', 'int', 'float',
    or 'str'."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(args[0]) if args else "str"
    if origin in (list, dict) or annotation in (list, dict):
        return "json"
    if annotation is time:
        return "time"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "str"


def field_kinds(d: resp.LayerDef) -> dict[str, str]:
    """The layer's fields (in the schema's order) and how each is written."""
    return {k: _kind(f.annotation) for k, f in d.schema.model_fields.items()}


def _to_file(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "json":
        return orjson.dumps(v).decode()
    if kind == "time":
        return v.isoformat()
    if kind == "int":
        return int(v)
    if kind == "float":
        return float(v)
    return str(v)


def _from_file(kind: str, v: Any) -> Any:
    """A value read from a file -> what the layer's schema validates (None: absent)."""
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str) and v.strip() == "" and kind != "str":
        return None
    if kind == "json":
        if isinstance(v, str):
            t = v.strip()
            if t[:1] in ("[", "{"):
                try:
                    return orjson.loads(t)
                except orjson.JSONDecodeError:
                    return v  # refused by the schema, with the field named
            return [x for x in t.split("|") if x]  # a|b lists of earlier CSVs
        return v
    if kind == "str":
        if isinstance(v, float) and v.is_integer():
            return str(int(v))  # a code a spreadsheet or QGIS made numeric
        if isinstance(v, int | float):
            return str(v)
        if isinstance(v, datetime | time):
            return v.isoformat()
        return v if v != "" else None
    if kind == "int" and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def coerce_fields(d: resp.LayerDef, data: dict[str, Any]) -> dict[str, Any]:
    """Fields of a JSON or CSV row made what the schema reads: lists and objects given as
    JSON text parsed, a|b lists split (unknown fields are left for the schema to refuse)."""
    kinds = field_kinds(d)
    out = dict(data)
    for k, v in data.items():
        if kinds.get(k) == "json" and isinstance(v, str):
            out[k] = _from_file("json", v)
    return out


# ---------------------------------------------------------------- export


def export_rows(session: Session, d: resp.LayerDef, *, at: datetime | None = None,
                bbox: tuple[float, float, float, float] | None = None,
                filters: dict[str, Any] | None = None,
                shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                ) -> tuple[dict[str, list[Any]], list[Any]]:
    """The rows valid at a time (in a bbox, filtered by fields) as file columns and lon/lat
    geometries, ordered by key; `shown` masks what the caller may not see."""
    kinds = field_kinds(d)
    cols = [getattr(d.model, k) for k in kinds]
    q = select(*cols)
    if d.geometry:
        q = q.add_columns(func.ST_AsBinary(d.model.geom))  # type: ignore[attr-defined]
    q = resp.filtered(d, q, at=at, filters=filters, bbox=bbox)
    q = q.order_by(*[getattr(d.model, k) for k in d.key])
    fields: dict[str, list[Any]] = {k: [] for k in kinds}
    wkbs: list[bytes] = []
    names = list(kinds)
    for r in session.execute(q):
        row = dict(zip(names, r[:len(names)], strict=True))
        if shown is not None:
            row = shown(row)
        for k, kind in kinds.items():
            fields[k].append(_to_file(kind, row.get(k)))
        if d.geometry:
            wkbs.append(bytes(r[-1]))
    geoms = list(shapely.from_wkb(wkbs)) if d.geometry else []
    return fields, geoms


def export_layer(session: Session, d: resp.LayerDef, fmt: str, *, at: datetime | None = None,
                 bbox: tuple[float, float, float, float] | None = None,
                 filters: dict[str, Any] | None = None, crs: str | None = None,
                 shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> bytes:
    """A layer as one download in `fmt` (gisfile.FORMATS; a Shapefile zipped), its
    coordinates in `crs` (default EPSG:4326) at full precision."""
    if fmt not in gisfile.FORMATS:
        raise InvalidInput(f"f: unknown format {fmt!r}; one of {', '.join(gisfile.FORMATS)}")
    if crs is not None:
        crsmod.parse_crs(crs)  # 422 naming an unknown CRS before any work
        if not d.geometry:
            raise InvalidInput(f"crs: {d.name} have no geometry")
    fields, geoms = export_rows(session, d, at=at, bbox=bbox, filters=filters, shown=shown)
    if fmt == "shp":
        fields = shp_columns(d, fields)
    if d.geometry:
        return gisfile.export_bytes(fmt, fields, geoms, layer=d.name, crs=crs)
    return _attribute_bytes(fmt, fields, d.name)


def shp_columns(d: resp.LayerDef, fields: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Columns as a dBASE table holds them: short names, long text continued in numbered
    columns (refused beyond DBF_PARTS_MAX of them, naming gpkg)."""
    out: dict[str, list[Any]] = {}
    for k, values in fields.items():
        base = SHP_NAMES.get(k, k)
        split = [_utf8_parts(v) if isinstance(v, str) else [v] for v in values]
        parts = max((len(p) for p in split), default=1)
        if parts > DBF_PARTS_MAX:
            raise InvalidInput(f"{d.name}.{k}: a value is over {DBF_TEXT_MAX * DBF_PARTS_MAX:,}"
                               " bytes, more than a Shapefile can hold; export as gpkg")
        out[base] = [p[0] for p in split]
        for j in range(1, parts):
            out[_part_name(base, j + 1)] = [p[j] if j < len(p) else None for p in split]
    return out


def _part_name(base: str, n: int) -> str:
    return f"{base[:8]}_{n}"


def _utf8_parts(s: str) -> list[str]:
    """s cut into pieces of at most DBF_TEXT_MAX UTF-8 bytes, at character boundaries."""
    if len(s.encode("utf-8")) <= DBF_TEXT_MAX:
        return [s]
    parts: list[str] = []
    cur: list[str] = []
    size = 0
    for ch in s:
        n = len(ch.encode("utf-8"))
        if size + n > DBF_TEXT_MAX:
            parts.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += n
    parts.append("".join(cur))
    return parts


def _attribute_bytes(fmt: str, fields: dict[str, list[Any]], layer: str) -> bytes:
    """A table without geometry as `fmt` (a GeoPackage attribute table, a .dbf zipped...)."""
    with tempfile.TemporaryDirectory(prefix="gridops-export-") as tmp:
        if fmt == "csv":
            return _attribute_csv(fields)
        suffix = ".dbf" if fmt == "shp" else gisfile.FORMATS[fmt][1]
        path = Path(tmp) / f"{layer}{suffix}"
        names = list(fields)
        data = [gisfile._column(fields[n]) for n in names]
        options: dict[str, Any] = {}
        if fmt == "fgb":
            options["SPATIAL_INDEX"] = "NO"  # FlatGeobuf indexes only features with geometry
        if fmt == "geojson":
            options["RFC7946"] = "NO"
            options["WRITE_NAME"] = "NO"
        pyogrio.raw.write(str(path), None, data, names, layer=layer,
                          driver=gisfile.FORMATS[fmt][0], geometry_type=None,
                          encoding="UTF-8", layer_options=options or None)
        if fmt == "shp":
            return gisfile.zip_files([f for f in (path, path.with_suffix(".cpg"))
                                      if f.exists()])
        return path.read_bytes()


def _attribute_csv(fields: dict[str, list[Any]]) -> bytes:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf)
    names = list(fields)
    w.writerow(names)
    n = len(next(iter(fields.values()), []))
    for i in range(n):
        w.writerow(["" if fields[k][i] is None else fields[k][i] for k in names])
    return buf.getvalue().encode("utf-8")


# ---------------------------------------------------------------- reading


def read_upload(d: resp.LayerDef, data: bytes, *, name: str | None, media_type: str | None,
                max_bytes: int, layer: str | None = None, encoding: str | None = None,
                crs: str | None = None) -> gisfile.Table:
    """An uploaded file of a layer: gisfile.read_upload for spatial layers; for the others
    the attribute table (any geometry ignored)."""
    _check_encoding(encoding)
    if d.geometry:
        return gisfile.read_upload(data, name=name, media_type=media_type,
                                   max_bytes=max_bytes, layer=layer, encoding=encoding,
                                   crs=crs)
    if crs is not None:
        raise InvalidInput(f"crs: {d.name} have no geometry")
    if len(data) > max_bytes:
        raise TooLarge(f"the file is {len(data):,} bytes; at most {max_bytes:,} are accepted "
                       "(GRIDOPS_IMPORT_MAX_BYTES)")
    if not data:
        raise InvalidInput(f"{name or 'the upload'}: the file is empty")
    fmt = gisfile.guess_format(name, media_type)
    shown = name or f"upload ({fmt})"
    with gisfile.materialised(data, fmt, shown, (".dbf", ".shp")) as path:
        return read_attributes(path, layer=layer, encoding=encoding, display_name=shown)


def read_file(d: resp.LayerDef, path: str | Path, *, layer: str | None = None,
              encoding: str | None = None, crs: str | None = None) -> gisfile.Table:
    """A file on disk of a layer (a .zip of a Shapefile too)."""
    _check_encoding(encoding)
    p = Path(path)
    if p.suffix.lower() == ".zip":
        if not p.exists():
            raise InvalidInput(f"{p.name}: no such file")
        return read_upload(d, p.read_bytes(), name=p.name, media_type=None,
                           max_bytes=p.stat().st_size + 1, layer=layer, encoding=encoding,
                           crs=crs)
    gisfile.guess_format(p.name)  # 415 naming the formats for a file of none of them
    if d.geometry:
        return gisfile.read_table(p, layer=layer, encoding=encoding, crs=crs)
    if crs is not None:
        raise InvalidInput(f"crs: {d.name} have no geometry")
    return read_attributes(p, layer=layer, encoding=encoding)


def _check_encoding(encoding: str | None) -> None:
    if encoding is None:
        return
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InvalidInput(f"encoding: {encoding[:40]!r} is not an encoding Python knows "
                           "(e.g. UTF-8, GBK, GB18030)") from None


def read_attributes(path: str | Path, *, layer: str | None = None,
                    encoding: str | None = None, display_name: str | None = None
                    ) -> gisfile.Table:
    """A layer's attribute table (no geometry read) as a gisfile.Table."""
    p = Path(path)
    shown = display_name or p.name
    layers_ = gisfile.list_layers(p)
    if not layers_:
        raise InvalidInput(f"{shown}: the file holds no layer")
    if layer is None:
        if len(layers_) > 1:
            raise InvalidInput(f"{shown}: the file holds {len(layers_)} layers "
                               f"({', '.join(n for n, _ in layers_[:10])}); name one with "
                               "--layer / layer=")
        layer = layers_[0][0]
    elif layer not in {n for n, _ in layers_}:
        raise InvalidInput(f"{shown}: no layer {layer!r}; it has "
                           f"{', '.join(n for n, _ in layers_[:20])}")
    suffix = p.suffix.lower()
    kwargs: dict[str, Any] = {"AUTODETECT_TYPE": "NO"} if suffix == ".csv" else {}
    tries: Sequence[str | None] = [encoding]
    if encoding is None and suffix in (".dbf", ".shp", ".csv") and not any(
            p.with_suffix(s).exists() for s in (".cpg", ".CPG")):
        tries = _GUESSED_ENCODINGS
    last: Exception | None = None
    for enc in tries:
        try:
            meta, _, _, values = pyogrio.raw.read(str(p), layer=layer, encoding=enc,
                                                  read_geometry=False, **kwargs)
            break
        except UnicodeDecodeError as e:
            last = e
        except (DataSourceError, DataLayerError, FieldError) as e:
            raise InvalidInput(f"{shown}: GDAL cannot read layer {layer!r} "
                               f"({gisfile._short(e)})") from e
    else:
        raise InvalidInput(f"{shown}: the text of its fields is not valid "
                           f"{', '.join(str(t) for t in tries)} ({gisfile._short(last)}); "
                           "give the file's encoding with --encoding / encoding=")
    names = [str(n) for n in meta["fields"]]
    fields = {n: np.asarray(v, dtype=object) if v.dtype.kind in "OUS" else v
              for n, v in zip(names, values, strict=True)}
    n = len(values[0]) if len(values) else 0
    return gisfile.Table(source=shown, layer=str(layer), fields=fields,
                         geometry=np.full(n, None, dtype=object), crs="",
                         encoding=meta.get("encoding"))


# ---------------------------------------------------------------- import


def column_map(d: resp.LayerDef, table: gisfile.Table) -> dict[str, list[str]]:
    """Each of the layer's fields -> the file's columns holding it (more than one: a long
    text continued). 422 for a column that is no field, or a required field missing."""
    kinds = field_kinds(d)
    by_name = {c.lower(): c for c in table.fields}
    out: dict[str, list[str]] = {}
    used: set[str] = set()
    for k in kinds:
        col = by_name.get(k.lower())
        if col is None and k in SHP_NAMES:
            col = by_name.get(SHP_NAMES[k].lower())
        if col is None:
            continue
        cols = [col]
        base = SHP_NAMES.get(k, k)
        for j in range(2, DBF_PARTS_MAX + 1):
            more = by_name.get(_part_name(base, j).lower())
            if more is None:
                break
            cols.append(more)
        out[k] = cols
        used.update(cols)
    unknown = [c for c in table.fields if c not in used and c.lower() not in IGNORED]
    if unknown:
        raise InvalidInput(f"{table.source}: column(s) {', '.join(unknown[:10])} are not "
                           f"fields of {d.name}; its fields are {', '.join(kinds)}")
    missing = [k for k, f in d.schema.model_fields.items() if f.is_required() and k not in out]
    if missing:
        raise InvalidInput(f"{table.source}: no column {', '.join(missing)} (required by "
                           f"{d.name}; its fields are {', '.join(kinds)})")
    return out


def check_table(d: resp.LayerDef, table: gisfile.Table) -> None:
    """The file as a whole fits the layer: features, geometry of an allowed type."""
    if len(table) == 0:
        raise InvalidInput(f"{table.source}: layer {table.layer!r} holds no features")
    if not d.geometry:
        return
    geoms = table.geometry
    present = geoms[~shapely.is_missing(geoms)]
    if not len(present):
        raise InvalidInput(f"{table.source}: no feature has a geometry; {d.name} need "
                           f"{' or '.join(d.geometry)}")
    kinds, counts = np.unique(shapely.get_type_id(present), return_counts=True)
    names = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint",
             5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
    allowed = set(d.geometry) | {f"Multi{t}" for t in d.geometry}
    got = {names.get(int(k), str(k)): int(c) for k, c in zip(kinds, counts, strict=True)}
    if not set(got) & allowed:
        held = ", ".join(f"{c:,} {t}" for t, c in got.items())
        raise InvalidInput(f"{table.source}: {d.name} need {' or '.join(d.geometry)} "
                           f"geometries; layer {table.layer!r} holds {held}")


def table_rows(d: resp.LayerDef, table: gisfile.Table
               ) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """(feature number, fields, shapely geometry) of every feature, numbered from 1."""
    kinds = field_kinds(d)
    cmap = column_map(d, table)
    columns: dict[str, list[Any]] = {}
    for k, cs in cmap.items():
        if len(cs) == 1:
            columns[k] = _column_values(kinds[k], table.fields[cs[0]])
        else:  # a long text continued in numbered columns
            parts = [table.fields[c].tolist() for c in cs]
            joined = ["".join(str(x) for x in ps if isinstance(x, str)) or ps[0]
                      for ps in zip(*parts, strict=True)]
            columns[k] = [_from_file(kinds[k], v) for v in joined]
    names = list(columns)
    geoms = table.geometry if d.geometry else np.full(len(table), None, dtype=object)
    for i, (values, g) in enumerate(zip(zip(*columns.values(), strict=True), geoms,
                                        strict=True), start=1):
        yield i, {k: v for k, v in zip(names, values, strict=True) if v is not None}, g
    if not columns:
        for i in range(1, len(table) + 1):
            yield i, {}, geoms[i - 1]


def _column_values(kind: str, arr: np.ndarray) -> list[Any]:
    """A file's column as the schema reads it (None: absent); plain text as it is."""
    values = arr.tolist()
    if kind == "str" and all(type(v) is str or v is None for v in values):
        return [v or None for v in values]
    return [_from_file(kind, v) for v in values]


def import_layer_file(session: Session, d: resp.LayerDef, table: gisfile.Table, *,
                      actor: str = "import",
                      progress: Callable[[int], None] | None = None) -> resp.ImportReport:
    """Store a file's features in a layer (resp.import_rows: every refused feature with
    its number and reason; identical rows unchanged; changed rows a new version)."""
    check_table(d, table)
    rows = table_rows(d, table)
    report = resp.import_rows(session, d, rows, actor=actor, label="feature",
                              progress=progress, batch=50_000)
    report.notes.extend(table.notes)
    return report
