"""The responsibility layers as versioned rows: create, edit (a new version), retire, read
as of a time, history, and bulk import with a reason for every refused row."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

import numpy as np
import orjson
import shapely
from pydantic import ValidationError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from layers import tiles, versioning
from layers.layer_schemas import (
    AreaIn,
    AssetIn,
    AssignmentIn,
    CategoryIn,
    DepartmentIn,
    LayerRow,
    RoleIn,
    TeamIn,
    ZoneIn,
)
from layers.models import (
    Asset,
    Base,
    Category,
    Department,
    DepartmentZone,
    GridRole,
    LayerEvent,
    OwnershipArea,
    PatrolAssignment,
    PatrolTeam,
)
from spatial.errors import Conflict, InvalidGeometry, InvalidInput, NotFound

LAYERS_CHANNEL = "gridops_layers"


@dataclass(frozen=True)
class LayerDef:
    """How one layer is stored, keyed, validated and shown."""

    name: str
    model: type[Base]
    schema: type[LayerRow]
    key: tuple[str, ...]
    geometry: tuple[str, ...] = ()  # allowed geometry types; () = no geometry
    departments: tuple[str, ...] = ()  # fields that must name an active department
    title: str = ""


LAYERS: dict[str, LayerDef] = {d.name: d for d in [
    LayerDef("departments", Department, DepartmentIn, ("code",), (), ("parent_code",),
             "linkage units (联动单位)"),
    LayerDef("categories", Category, CategoryIn, ("code",), (), ("default_department",),
             "the component/event taxonomy"),
    LayerDef("assets", Asset, AssetIn, ("code",), ("Point", "LineString", "Polygon"),
             ("supervising_department", "owner_department", "maintainer_department"),
             "components (部件)"),
    LayerDef("areas", OwnershipArea, AreaIn, ("code",), ("Polygon", "MultiPolygon"),
             ("owner_department",), "ownership areas"),
    LayerDef("zones", DepartmentZone, ZoneIn, ("layer", "code"), ("Polygon", "MultiPolygon"),
             ("department_code",), "department zones (多网)"),
    LayerDef("teams", PatrolTeam, TeamIn, ("code",), (), ("department_code",),
             "patrol teams"),
    LayerDef("assignments", PatrolAssignment, AssignmentIn, ("team_code", "grid_code", "shift"),
             (), (), "patrol shifts on grids"),
    LayerDef("roles", GridRole, RoleIn, ("grid_code", "role", "name"), (),
             ("department_code",), "grid roles (1 + X + Y)"),
]}


def layer(name: str) -> LayerDef:
    """A layer by its URL name; 404 naming the known ones."""
    d = LAYERS.get(name)
    if d is None:
        raise NotFound(f"no layer {name!r}; layers are {', '.join(LAYERS)}")
    return d


def _now(session: Session) -> datetime:
    return session.execute(select(func.clock_timestamp())).scalar_one()


def _current(d: LayerDef, at: datetime | None = None) -> Any:
    return versioning.row_valid_at(d.model, at)


def _key_filter(d: LayerDef, key: Sequence[str]) -> Any:
    if len(key) != len(d.key):
        raise InvalidInput(f"{d.name}: a key is {'/'.join(d.key)}")
    cond = None
    for k, v in zip(d.key, key, strict=True):
        c = getattr(d.model, k) == v
        cond = c if cond is None else cond & c
    return cond


def geometry_from_geojson(d: LayerDef, geom: Any, where: str) -> Any:
    """GeoJSON geometry (or an already parsed shapely one) -> a valid shapely geometry of
    an allowed type, in lon/lat."""
    if isinstance(geom, BaseGeometry):
        return check_geometry(d, geom, where)
    if not d.geometry:
        if geom is not None:
            raise InvalidGeometry(f"{where}: {d.name} have no geometry")
        return None
    if not isinstance(geom, dict):
        raise InvalidGeometry(f"{where}: a GeoJSON geometry is required "
                              f"({' or '.join(d.geometry)})")
    try:
        g = shape(geom)
    except Exception as e:
        raise InvalidGeometry(f"{where}: not a GeoJSON geometry "
                              f"({type(e).__name__}: {str(e)[:120]})") from None
    return check_geometry(d, g, where)


def check_geometry(d: LayerDef, g: BaseGeometry | None, where: str) -> Any:
    """A shapely geometry in lon/lat -> a valid one of an allowed type (a one-part Multi*
    where the layer takes the single type is that part; a Polygon where MultiPolygon is
    stored becomes one)."""
    if not d.geometry:
        if g is not None:
            raise InvalidGeometry(f"{where}: {d.name} have no geometry")
        return None
    if g is None:
        raise InvalidGeometry(f"{where}: a geometry is required ({' or '.join(d.geometry)})")
    if g.has_z:  # a height is not stored (the layers are 2-D); the position is kept
        g = shapely.force_2d(g)
    if (g.geom_type not in d.geometry and g.geom_type.startswith("Multi")
            and g.geom_type[5:] in d.geometry and len(g.geoms) == 1):
        g = g.geoms[0]
    if g.geom_type not in d.geometry:
        raise InvalidGeometry(f"{where}: geometry must be {' or '.join(d.geometry)}, "
                              f"got {g.geom_type}")
    if g.is_empty:
        raise InvalidGeometry(f"{where}: geometry is empty")
    x0, y0, x1, y1 = g.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90) or not all(
            map(lambda v: v == v, (x0, y0, x1, y1))):
        raise InvalidGeometry(f"{where}: coordinates are not lon/lat (bounds {x0:g} {y0:g} "
                              f"{x1:g} {y1:g}); send EPSG:4326")
    if not g.is_valid:
        raise InvalidGeometry(f"{where}: invalid geometry: {shapely.is_valid_reason(g)}")
    if "MultiPolygon" in d.geometry and g.geom_type == "Polygon":
        g = shapely.MultiPolygon([g])
    return g


@dataclass
class Refs:
    """What rows may refer to, read once per operation."""

    departments: set[str]
    categories: dict[str, str]  # code -> kind
    teams: set[str]
    grids: set[str]


def load_refs(session: Session) -> Refs:
    """Active departments, categories, teams and current grid codes."""
    return Refs(
        departments=set(session.scalars(select(Department.code).where(
            Department.valid_to.is_(None)))),
        categories=dict(session.execute(select(Category.code, Category.kind).where(
            Category.valid_to.is_(None))).all()),
        teams=set(session.scalars(select(PatrolTeam.code).where(PatrolTeam.valid_to.is_(None)))),
        grids=set(session.scalars(text(f"SELECT u.code FROM grid_unit u "
                                       f"WHERE {versioning.current('u')}"))),
    )


def check_row(d: LayerDef, data: dict[str, Any], refs: Refs, where: str) -> dict[str, Any]:
    """Validate one row's fields and references; returns the clean values."""
    try:
        row = d.schema.model_validate(data).model_dump()
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}"
                         for err in e.errors())
        raise InvalidInput(f"{where}: {msgs}") from None
    for f in d.departments:
        v = row.get(f)
        if v is not None and v not in refs.departments and not (
                d.name == "departments" and f == "parent_code" and v == row.get("code")):
            raise InvalidInput(f"{where}: {f} {v!r} is not an active department")
    if d.name == "assets":
        kind = refs.categories.get(row["category_code"])
        if kind is None:
            raise InvalidInput(f"{where}: category {row['category_code']!r} is unknown")
        if kind != "component":
            raise InvalidInput(f"{where}: category {row['category_code']} is an event, "
                               "assets belong to component categories")
        if row["code"][6:10] != row["category_code"][1:]:
            raise InvalidInput(f"{where}: code {row['code']} does not carry the major/minor "
                               f"digits of {row['category_code']} at positions 7-10")
    if d.name in ("assignments", "roles") and row["grid_code"] not in refs.grids:
        raise InvalidInput(f"{where}: grid {row['grid_code']!r} is not a current grid")
    if d.name == "assignments" and row["team_code"] not in refs.teams:
        raise InvalidInput(f"{where}: team {row['team_code']!r} is not an active team")
    if d.name == "roles" and row["role"] == "specialist" and not row["department_code"]:
        raise InvalidInput(f"{where}: a specialist names the department_code they serve")
    return row


def _insert(session: Session, d: LayerDef, rows: Sequence[dict[str, Any]],
            geoms: Sequence[Any], now: datetime) -> list[int]:
    """Insert many rows in one statement (insertmanyvalues); assets get their grid."""
    if not rows:
        return []
    values = []
    for row, g in zip(rows, geoms, strict=True):
        v = dict(row, valid_from=now)
        if d.geometry:
            v["geom"] = f"SRID=4326;{g.wkt}"
        values.append(v)
    ids = list(session.scalars(insert(d.model).returning(d.model.id), values))  # type: ignore[attr-defined]
    if d.name == "assets":
        locate_assets(session, ids)
    return ids


COPY_MIN_ROWS = 1000  # from this many rows a batch is COPYed rather than INSERTed


def _copy_text(v: Any, is_array: bool) -> str:
    """A value in COPY's text format."""
    if v is None:
        return "\\N"
    if is_array:
        v = "{" + ",".join('"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"'
                           for x in v) + "}"
    elif isinstance(v, dict | list):
        v = orjson.dumps(v).decode()
    elif isinstance(v, time | datetime):
        v = v.isoformat()
    else:
        v = str(v)
    return (v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


_COPY_SPECIAL = ("\\", "\t", "\n", "\r")


def _copy_column(values: list[Any], is_array: bool) -> list[str]:
    """A column in COPY's text format; a column of plain text without a character COPY
    escapes is taken as it is."""
    if not is_array and all(type(v) is str for v in values):
        joined = "\x1f".join(values)
        if not any(c in joined for c in _COPY_SPECIAL):
            return values
    return [_copy_text(v, is_array) for v in values]


class _Grids:
    """The active generation's in-memory index, built once an import needs it."""

    def __init__(self) -> None:
        self.index: Any = None

    def codes(self, session: Session, geoms: Sequence[Any]) -> list[str | None]:
        """The finest grid covering each point (None for other geometries and outside)."""
        from layers import grids as gridsmod
        from layers.resolver import build_index
        from layers.settings import Settings

        if self.index is None:
            gen = gridsmod.active_generation(session)
            if gen is None:
                return [None] * len(geoms)
            self.index = build_index(session, gen, Settings())
        arr = np.asarray(geoms, dtype=object)
        pts = shapely.get_type_id(arr) == 0
        out: list[str | None] = [None] * len(arr)
        if pts.any():
            at = np.flatnonzero(pts)
            found = self.index.lookup(shapely.get_x(arr[at]), shapely.get_y(arr[at]))
            for i, g in zip(at, found, strict=True):
                if g >= 0:
                    out[int(i)] = str(self.index.codes[g])
        return out


def _copy_insert(session: Session, d: LayerDef, rows: Sequence[dict[str, Any]],
                 geoms: Sequence[Any], now: datetime, grids: _Grids) -> int:
    """Many rows in one COPY; point assets get their grid from the in-memory index (the
    same ST_Covers + lowest-code rule), other assets by one UPDATE."""
    table = d.model.__table__
    names = list(d.schema.model_fields)
    arrays = [isinstance(table.c[k].type, ARRAY) for k in names]
    cols = [*names, "valid_from"]
    if d.geometry:
        cols.append("geom")
        hexes = shapely.to_wkb(np.asarray(geoms, dtype=object), hex=True, include_srid=True,
                               output_dimension=2)
    located = d.name == "assets"
    if located:
        cols.append("grid_code")
        codes = grids.codes(session, geoms)
    columns = [_copy_column([row.get(k) for row in rows], a)
               for k, a in zip(names, arrays, strict=True)]
    columns.append([now.isoformat()] * len(rows))
    if d.geometry:
        columns.append(list(hexes))
    if located:
        columns.append([c or "\\N" for c in codes])
    buf = io.StringIO("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n")
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.copy_expert(f"COPY {d.model.__tablename__} ({', '.join(cols)}) FROM STDIN", buf)
    if located and any(shapely.get_type_id(np.asarray(geoms, dtype=object)) != 0):
        session.execute(text(_locate_sql("a.valid_from = :now AND a.valid_to IS NULL "
                                         "AND GeometryType(a.geom) <> 'POINT'")),
                        {"now": now})
    return len(rows)


def _locate_sql(where: str) -> str:
    """SQL: the assets `a` matching `where` get the finest current grid they stand in
    (ST_Covers of a point on them, lowest code)."""
    return f"""
        UPDATE asset a SET grid_code = (
            SELECT u.code FROM grid_unit u
             WHERE {versioning.current('u')}
               AND u.level = {versioning.finest_level(versioning.ACTIVE_GENERATION_SQL)}
               AND ST_Covers(u.geom, ST_PointOnSurface(a.geom))
             ORDER BY u.code LIMIT 1)
         WHERE {where}"""


def locate_assets(session: Session, ids: Sequence[int]) -> None:
    """Resolve each asset to the finest current grid it stands in (ST_Covers, lowest code)."""
    session.execute(text(_locate_sql("a.id = ANY(:ids)")), {"ids": list(ids)})


def _event(session: Session, d: LayerDef, code: str, action: str, actor: str,
           detail: dict[str, Any] | None = None) -> None:
    session.add(LayerEvent(layer=d.name, code=code, action=action, actor=actor,
                           detail=detail or {}))


def _code(d: LayerDef, row: dict[str, Any]) -> str:
    return "/".join(str(row[k]) for k in d.key)


def _notify(session: Session) -> None:
    session.execute(text("SELECT pg_notify(:ch, '')"), {"ch": LAYERS_CHANNEL})


def create(session: Session, d: LayerDef, data: dict[str, Any], geometry: Any = None, *,
           actor: str = "system") -> Any:
    """Add a row; 409 if its key is already current."""
    refs = load_refs(session)
    row = check_row(d, data, refs, d.name)
    g = geometry_from_geojson(d, geometry, "geometry")
    key = [str(row[k]) for k in d.key]
    if session.scalar(select(d.model.id).where(  # type: ignore[attr-defined]
            _key_filter(d, key), _current(d))) is not None:
        raise Conflict(f"{d.name}: {'/'.join(key)} already exists; PUT to change it")
    (rid,) = _insert(session, d, [row], [g], _now(session))
    tiles.invalidate(session, d.name, tiles.row_bounds(session, d, [rid]))
    _event(session, d, _code(d, row), "create", actor)
    _notify(session)
    return session.get(d.model, rid)


def update(session: Session, d: LayerDef, key: Sequence[str], data: dict[str, Any],
           geometry: Any = None, *, actor: str = "system") -> Any:
    """A new version of a row: the current one ends now, the new one starts now."""
    cur = get(session, d, key)
    old = {c.key: getattr(cur, c.key) for c in d.model.__table__.columns
           if c.key in d.schema.model_fields}
    merged = {**old, **data}
    refs = load_refs(session)
    row = check_row(d, merged, refs, d.name)
    if [str(row[k]) for k in d.key] != list(key):
        raise InvalidInput(f"{d.name}: the key {'/'.join(d.key)} cannot change; "
                           "retire the row and create another")
    g = (geometry_from_geojson(d, geometry, "geometry") if geometry is not None
         else (shapely.from_wkb(bytes(session.scalar(text(
             f"SELECT ST_AsBinary(geom) FROM {d.model.__tablename__} WHERE id = :i"),
             {"i": cur.id}))) if d.geometry else None))
    now = _now(session)
    cur.valid_to = now
    session.flush()
    (rid,) = _insert(session, d, [row], [g], now)
    tiles.invalidate(session, d.name, tiles.row_bounds(session, d, [cur.id, rid]))  # old, new
    changed = sorted(k for k in data if old.get(k) != row.get(k))
    _event(session, d, _code(d, row), "update", actor,
           {"changed": changed, "geometry": geometry is not None})
    _notify(session)
    return session.get(d.model, rid)


def retire(session: Session, d: LayerDef, key: Sequence[str], *, actor: str = "system") -> Any:
    """End a row now; its history stays."""
    cur = get(session, d, key)
    cur.valid_to = _now(session)
    tiles.invalidate(session, d.name, tiles.row_bounds(session, d, [cur.id]))
    _event(session, d, "/".join(key), "retire", actor)
    _notify(session)
    return cur


def get(session: Session, d: LayerDef, key: Sequence[str], at: datetime | None = None) -> Any:
    """The row valid at a time (default: the current one); 404 if none."""
    row = session.scalar(select(d.model).where(_key_filter(d, key), _current(d, at)))
    if row is None:
        when = f" at {at.isoformat()}" if at else ""
        raise NotFound(f"{d.name}: {'/'.join(key)} does not exist{when}")
    return row


def history(session: Session, d: LayerDef, key: Sequence[str]) -> list[Any]:
    """Every version of a row, oldest first."""
    rows = list(session.scalars(select(d.model).where(_key_filter(d, key)).order_by(
        d.model.valid_from)))  # type: ignore[attr-defined]
    if not rows:
        raise NotFound(f"{d.name}: {'/'.join(key)} never existed")
    return rows


def filtered(d: LayerDef, q: Any, *, at: datetime | None = None,
             filters: dict[str, Any] | None = None,
             bbox: tuple[float, float, float, float] | None = None) -> Any:
    """A select of a layer narrowed to the rows valid at a time, equal to the given field
    values and (spatial layers) meeting a lon/lat bbox."""
    q = q.where(_current(d, at))
    for k, v in (filters or {}).items():
        if v is not None:
            q = q.where(getattr(d.model, k) == v)
    if bbox is not None and d.geometry:
        q = q.where(d.model.geom.intersects(  # type: ignore[attr-defined]
            func.ST_MakeEnvelope(*bbox, 4326)))
    return q


def list_rows(session: Session, d: LayerDef, *, at: datetime | None = None,
              bbox: tuple[float, float, float, float] | None = None,
              filters: dict[str, Any] | None = None, limit: int = 1000, offset: int = 0
              ) -> tuple[list[Any], int]:
    """A page of rows valid at a time, optionally in a bbox and filtered by fields."""
    q = filtered(d, select(d.model), at=at, filters=filters, bbox=bbox)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    order = [getattr(d.model, k) for k in d.key]
    rows = list(session.scalars(q.order_by(*order).limit(limit).offset(offset)))
    return rows, int(total)


def geojson_of(session: Session, d: LayerDef, rows: Sequence[Any]) -> dict[int, Any]:
    """GeoJSON geometries of rows by id (one query)."""
    if not d.geometry or not rows:
        return {}
    res = session.execute(text(
        f"SELECT id, ST_AsGeoJSON(geom, 7) AS g FROM {d.model.__tablename__} "
        f"WHERE id = ANY(:ids)"), {"ids": [r.id for r in rows]})
    return {r.id: orjson.Fragment(r.g) for r in res}


def as_dict(d: LayerDef, row: Any) -> dict[str, Any]:
    """A row's fields as the API shows them."""
    out = {k: getattr(row, k) for k in d.schema.model_fields}
    for k in ("start_time", "end_time"):
        if k in out and out[k] is not None:
            out[k] = out[k].isoformat(timespec="minutes")
    out["valid_from"] = row.valid_from
    out["valid_to"] = row.valid_to
    if d.name == "assets":
        out["grid_code"] = row.grid_code
    return out


@dataclass
class ImportReport:
    """What a bulk import did: counts and every refused row with its line and reason."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"read": self.read, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "refused_count": len(self.refused),
                "refused": self.refused[:1000], "notes": self.notes}


def _same_value(a: Any, b: Any) -> bool:
    """Equal field values; an empty string and null are the same text (a Shapefile or a
    CSV cannot tell them apart)."""
    if a == b:
        return True
    return a in (None, "") and b in (None, "")


SAME_VERTEX_DEG = 1e-9  # about 0.1 mm: what a CRS round trip (EPSG:4549 and back) moves


def _same_geometry(a: Any, b: Any) -> bool:
    """The same vertices to within SAME_VERTEX_DEG (ring orientation and start vertex
    aside)."""
    if a is None or b is None:
        return a is None and b is None
    return bool(shapely.equals_exact(shapely.normalize(a), shapely.normalize(b),
                                     SAME_VERTEX_DEG))


def _stored_rows(session: Session, d: LayerDef, ids: Sequence[int]
                 ) -> dict[int, tuple[dict[str, Any], Any]]:
    """Current rows by id: their fields as the schema gives them, and their geometry."""
    cols = [getattr(d.model, k) for k in d.schema.model_fields]
    q = select(d.model.id, *cols)  # type: ignore[attr-defined]
    if d.geometry:
        q = q.add_columns(func.ST_AsBinary(d.model.geom))  # type: ignore[attr-defined]
    out: dict[int, tuple[dict[str, Any], Any]] = {}
    names = list(d.schema.model_fields)
    for r in session.execute(q.where(d.model.id.in_(list(ids)))):  # type: ignore[attr-defined]
        vals = dict(zip(names, r[1:1 + len(names)], strict=True))
        with contextlib.suppress(ValidationError):  # a row stored before a rule tightened
            vals = d.schema.model_validate(vals).model_dump()
        geom = shapely.from_wkb(bytes(r[-1])) if d.geometry else None
        out[int(r[0])] = (vals, geom)
    return out


def changed_fields(d: LayerDef, new: dict[str, Any], new_geom: Any,
                   old: dict[str, Any], old_geom: Any) -> list[str]:
    """The fields (and 'geometry') in which a new row differs from the stored one."""
    out = [k for k in d.schema.model_fields if not _same_value(new.get(k), old.get(k))]
    if d.geometry and not _same_geometry(new_geom, old_geom):
        out.append("geometry")
    return out


def import_rows(session: Session, d: LayerDef,
                rows: Iterable[tuple[int, dict[str, Any], Any]], *,
                actor: str = "import", batch: int = 5000, label: str = "line",
                progress: Callable[[int], None] | None = None) -> ImportReport:
    """Validate and store many rows: (line, fields, GeoJSON or shapely geometry or None).

    A row that fails validation, repeats a key of the same import, or names an unknown
    department is refused with its line and reason. A row whose key is current already is
    compared with it: identical, nothing happens (`unchanged`); different, the current
    version ends and the new one starts (`updated`). The others are created. Every batch
    writes one layer_event naming the rows it created and changed (who, what, when)."""
    refs = load_refs(session)
    existing: dict[tuple[str, ...], int] = {
        tuple(str(x) for x in r[1:]): int(r[0]) for r in session.execute(
            select(d.model.id,  # type: ignore[attr-defined]
                   *[getattr(d.model, k) for k in d.key]).where(_current(d)))}
    report = ImportReport()
    seen: dict[tuple[str, ...], int] = {}
    new_rows: list[dict[str, Any]] = []
    new_geoms: list[Any] = []
    same_key: list[tuple[int, dict[str, Any], Any]] = []  # (stored id, row, geometry)
    now = _now(session)
    grids = _Grids()

    def flush() -> None:
        created = [_code(d, r) for r in new_rows]
        updated: dict[str, list[str]] = {}
        old_geoms: list[Any] = []  # of the rows this batch ends (their tiles change too)
        if same_key:
            stored = _stored_rows(session, d, [i for i, _, _ in same_key])
            ended: list[int] = []
            for rid, row, g in same_key:
                old, old_g = stored[rid]
                diff = changed_fields(d, row, g, old, old_g)
                if not diff:
                    report.unchanged += 1
                    continue
                ended.append(rid)
                old_geoms.append(old_g)
                new_rows.append(row)
                new_geoms.append(g)
                updated[_code(d, row)] = diff
            if ended:
                session.execute(text(f"UPDATE {d.model.__tablename__} SET valid_to = :now "
                                     "WHERE id = ANY(:ids)"), {"now": now, "ids": ended})
        if len(new_rows) >= COPY_MIN_ROWS:
            n = _copy_insert(session, d, new_rows, new_geoms, now, grids)
        else:
            n = len(_insert(session, d, new_rows, new_geoms, now))
        if new_rows:
            tiles.invalidate(session, d.name, tiles.bounds_of([*new_geoms, *old_geoms]))
        report.created += n - len(updated)
        report.updated += len(updated)
        if created or updated:
            _event(session, d, "*", "import", actor, {"created": created, "changed": updated})
        if progress is not None:
            progress(len(new_rows) - len(updated) + len(same_key))
        new_rows.clear()
        new_geoms.clear()
        same_key.clear()

    for line, data, geom in rows:
        report.read += 1
        where = f"{label} {line}"
        try:
            row = check_row(d, data, refs, where)
            g = geometry_from_geojson(d, geom, where)
            key = tuple(str(row[k]) for k in d.key)
            if key in seen:
                raise Conflict(f"{where}: {'/'.join(key)} already exists in this import "
                               f"({label} {seen[key]})")
        except (InvalidInput, Conflict) as e:
            report.refused.append({"line": line, "reason": e.detail})
            if progress is not None:
                progress(1)
            continue
        seen[key] = line
        if key in existing:
            same_key.append((existing[key], row, g))
        else:
            new_rows.append(row)
            new_geoms.append(g)
        if d.name == "departments":
            refs.departments.add(row["code"])
        if d.name == "teams":
            refs.teams.add(row["code"])
        if d.name == "categories":
            refs.categories[row["code"]] = row["kind"]
        if len(new_rows) + len(same_key) >= batch:
            flush()
    flush()
    _event(session, d, "*", "import", actor,
           {"read": report.read, "created": report.created, "updated": report.updated,
            "unchanged": report.unchanged, "refused": len(report.refused)})
    _notify(session)
    return report
