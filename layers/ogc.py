"""OGC API Features collections of gridops: the grid per level (of a generation) and the
responsibility layers, read with the filters Part 1 defines (bbox, datetime, properties),
paged in a stable order. The web side is api/routers/ogc.py; this module knows only rows.

Feature ids are stable across versions: a grid unit's code, a layer row's key (its parts
joined by "~", e.g. a zone's "layer~code"); an edit makes a new version under the same id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from pyproj import CRS
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_crs_info
from sqlalchemy import ARRAY, JSON, select, text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from layers import cql, grids
from layers import responsibility as resp
from layers.versioning import in_generation, live, valid_at
from spatial.errors import GridopsError, NotFound, PreconditionFailed


class BadParameter(GridopsError, status=400, code="bad_request"):
    """A query parameter of OGC API Features that is wrong (400, as the standard asks)."""

ID_SEP = "~"
# the layers OGC API Features serves, and whether a public caller may read them
LAYER_COLLECTIONS = ("assets", "areas", "zones", "assignments", "departments", "categories",
                     "teams", "roles")
# the layers editable through OGC API Features (Part 4), by a planner, centre or admin
WRITABLE_LAYERS = ("assets", "areas", "zones")
DRAFT_ID = re.compile(r"^grid-(?P<key>[a-z0-9_]+)-draft-(?P<gen>[0-9]{1,9})$")


@dataclass(frozen=True)
class Collection:
    """One collection: a grid level or a responsibility layer."""

    id: str
    title: str
    description: str
    kind: str  # "grid" | "layer"
    geometry: str | None  # the GeoJSON geometry type family, None without geometry
    rank: int | None = None  # grid: the level
    layer: resp.LayerDef | None = None
    queryables: dict[str, str] = field(default_factory=dict)  # name -> JSON type
    generation: int | None = None  # a draft's grid level: the draft (else: as asked)

    @property
    def writable(self) -> bool:
        """Part 4 writes: the editable layers, and the grid levels of a draft."""
        return (self.layer is not None and self.layer.name in WRITABLE_LAYERS) or (
            self.kind == "grid" and self.generation is not None)


# fields the public does not see (layers.disclosure): no filter may probe them either
PRIVATE = {("roles", "name"), ("roles", "phone"), ("teams", "members"),
           ("departments", "contact_name"), ("departments", "contact_phone")}
# what the centre reads of a case: where, what, its state and times; never who reported it,
# what they wrote, or how to reach them
CASE_QUERYABLES = {"ref": "string", "channel": "string", "category_code": "string",
                   "status": "string", "inside": "boolean", "grid_code": "string",
                   "street_code": "string", "h3_cell": "string", "generation_id": "integer",
                   "owner_department": "string", "escalation": "integer",
                   "reporters": "integer", "satisfaction": "integer", "created_at": "string",
                   "accepted_at": "string", "dispatched_at": "string",
                   "deadline_at": "string", "closed_at": "string", "updated_at": "string"}
GRID_QUERYABLES = {"code": "string", "name": "string", "parent_code": "string",
                   "area_m2": "number"}


def _layer_queryables(d: resp.LayerDef) -> dict[str, str]:
    """A layer's plain columns (what a row shows) by their JSON type, from the table."""
    cols = d.model.__table__.columns
    out: dict[str, str] = {}
    for name in d.schema.model_fields:
        if name not in cols or name == "geom":
            continue
        if (d.name, name) in PRIVATE:
            continue
        typ = cols[name].type
        if isinstance(typ, JSON | ARRAY):
            continue
        try:
            py = typ.python_type
        except NotImplementedError:
            continue
        out[name] = ("boolean" if py is bool else "integer" if py is int
                     else "number" if py is float else "string")
    return out


def _grid_collection(lv: Any, gen_id: int | None = None) -> Collection:
    if gen_id is None:
        return Collection(f"grid-{lv.key}", f"{lv.name} ({lv.key})",
                          f"Grid units of level {lv.rank} ({lv.name}) of the active "
                          "generation (generation= or datetime= for another)", "grid",
                          "MultiPolygon", rank=lv.rank, queryables=GRID_QUERYABLES)
    return Collection(f"grid-{lv.key}-draft-{gen_id}", f"{lv.name} ({lv.key}), draft {gen_id}",
                      f"Grid units of level {lv.rank} ({lv.name}) of draft generation "
                      f"{gen_id}, for planners to edit (POST carves a new unit out of those "
                      "it covers, PUT/PATCH change one, DELETE gives its area to a "
                      "neighbour); invisible to the public", "grid", "MultiPolygon",
                      rank=lv.rank, queryables=GRID_QUERYABLES, generation=gen_id)


CASES = Collection("cases", "Cases (the centre's view)",
                   "Every reported problem: its point, category, grid, owner department, "
                   "state and times, without who reported it or what they wrote (a centre "
                   "token only); datetime= gives the cases open then", "cases", "Point",
                   queryables=CASE_QUERYABLES)


def catalogue(session: Session, *, drafts: bool = False, cases: bool = False
              ) -> list[Collection]:
    """Every collection, grid levels first (coarse to fine), then the layers; with
    drafts (a planner or the centre asking), each draft's grid levels; with cases (the
    centre asking), the cases."""
    levels = grids.levels(session)
    out = [_grid_collection(lv) for lv in levels]
    for name in LAYER_COLLECTIONS:
        d = resp.LAYERS[name]
        geom = ("MultiPolygon" if "MultiPolygon" in d.geometry else "Geometry") \
            if d.geometry else None
        out.append(Collection(name, d.title or name, f"The responsibility layer {name} "
                              f"(key {ID_SEP.join(d.key)}); datetime= for the rows valid "
                              "then", "layer", geom, layer=d, queryables=_layer_queryables(d)))
    if drafts:
        for gen_id in session.scalars(text(
                "SELECT id FROM generation WHERE activated_at IS NULL AND NOT active "
                "ORDER BY id")):
            out += [_grid_collection(lv, gen_id) for lv in levels]
    if cases:
        out.append(CASES)
    return out


def collection(session: Session, cid: str) -> Collection:
    """A collection by id (a draft's grid level too: whether the caller may read it is
    api.visibility's to say); 404 naming the known ones."""
    if cid == CASES.id:
        return CASES
    m = DRAFT_ID.match(cid)
    if m is not None:
        for lv in grids.levels(session):
            if lv.key == m["key"]:
                return _grid_collection(lv, int(m["gen"]))
    for c in catalogue(session):
        if c.id == cid:
            return c
    known = ", ".join(c.id for c in catalogue(session))
    raise NotFound(f"no collection {cid!r}; collections are {known} (and, for planners, "
                   "grid-<level>-draft-<generation>)")


# ---------------------------------------------------------------- CRS (Part 2)

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/"


@dataclass(frozen=True)
class Crs:
    """A CRS a client may ask for: its URI, its SRID, and whether its first axis is the
    latitude or northing (EPSG:4326, 4490 and the Gauss-Kruger zones: the coordinates
    are swapped from PostGIS's x, y)."""

    uri: str
    srid: int
    flip: bool
    geographic: bool


@lru_cache(maxsize=16)
def crs_list(bounds: tuple[float, float, float, float] | None) -> tuple[Crs, ...]:
    """CRS84 (the storage CRS), EPSG:4326, EPSG:4490 (CGCS2000), every CGCS2000
    Gauss-Kruger zone (3 and 6 degree, with and without the zone prefix) whose area of use
    holds the territory, and EPSG:3857."""
    out = [Crs(CRS84, 4326, False, True), _epsg(4326), _epsg(4490)]
    if bounds is not None:
        area = AreaOfInterest(*bounds)
        zones = sorted(int(i.code) for i in query_crs_info(
            auth_name="EPSG", area_of_interest=area, contains=True)
            if i.name.startswith("CGCS2000 /") and "Gauss-Kruger" in i.name)
        out += [_epsg(z) for z in zones]
    out.append(_epsg(3857))
    return tuple(out)


def _epsg(code: int) -> Crs:
    crs = CRS.from_epsg(code)
    first = crs.axis_info[0].direction.lower()
    return Crs(f"{EPSG_URI}{code}", code, first in ("north", "south"), crs.is_geographic)


def parse_crs(value: str, known: Sequence[Crs], where: str) -> Crs:
    """A CRS URI (or a [EPSG:n] safe CURIE, or EPSG:n) among those offered; 400 naming
    them otherwise."""
    v = value.strip().strip("<>").strip()
    if v.startswith("[") and v.endswith("]"):
        v = v[1:-1]
    if v.upper().startswith("EPSG:"):
        v = EPSG_URI + v.split(":", 1)[1]
    v = v.replace("https://", "http://")
    for c in known:
        if v == c.uri:
            return c
    raise BadParameter(f"{where}: {value[:120]!r} is not offered; the CRSs are "
                       f"{', '.join(c.uri for c in known)}")


def geometry_sql(col: str, crs: Crs | None) -> str:
    """The GeoJSON of a stored lon/lat geometry in the answer's CRS, at full precision."""
    if crs is None or (crs.srid == 4326 and not crs.flip):
        return f"ST_AsGeoJSON({col}, 15)"
    g = col if crs.srid == 4326 else f"ST_Transform({col}, {int(crs.srid)})"
    if crs.flip:
        g = f"ST_FlipCoordinates({g})"
    return f"ST_AsGeoJSON({g}, {15 if crs.geographic else 6})"


@dataclass(frozen=True)
class Box:
    """A bbox in some CRS, in that CRS's x, y order (flipped axes already put back)."""

    x0: float
    y0: float
    x1: float
    y1: float
    srid: int = 4326


def box_sql(col: str, box: Box, params: dict[str, Any]) -> str:
    """col meets the box: in lon/lat directly, else the box's outline densified and
    brought to lon/lat by PostGIS (its edges stay true to the box)."""
    params.update(bx0=box.x0, by0=box.y0, bx1=box.x1, by1=box.y1)
    env = "ST_MakeEnvelope(:bx0, :by0, :bx1, :by1, 4326)"
    if box.srid != 4326:
        params["bsrid"] = box.srid
        env = ("ST_Transform(ST_Segmentize(ST_MakeEnvelope(:bx0, :by0, :bx1, :by1, :bsrid),"
               " greatest(:bx1 - :bx0, :by1 - :by0) / 64 + 1e-9), 4326)")
    return f"{col} && {env} AND ST_Intersects({col}, {env})"


# ---------------------------------------------------------------- time

_OPEN = ("", "..")
# the open ends QGIS's OAPIF provider sends for a one-sided time filter (year 0 is no
# Python date)
FAKE_OPEN = ("0000-01-01", "9999-12-31")


def parse_datetime(value: str | None) -> tuple[datetime | None, datetime | None, bool]:
    """OGC `datetime`: an instant or an interval ("a/b", "../b", "a/.."), RFC 3339.
    Returns (start, end, is_interval); 400 naming what is wrong."""
    if value is None:
        return None, None, False
    parts = value.split("/")
    if len(parts) > 2:
        raise BadParameter(f"datetime: {value[:60]!r} is neither an instant nor an interval "
                           "(start/end)")

    def one(v: str, where: str) -> datetime | None:
        if len(parts) == 2 and (v in _OPEN or v.startswith(FAKE_OPEN)):
            return None
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadParameter(f"datetime: {where} {v[:40]!r} is not an RFC 3339 time") \
                from None
        if t.tzinfo is None:
            raise BadParameter(f"datetime: {where} {v[:40]!r} has no time zone (add Z or "
                               "+08:00)")
        return t

    if len(parts) == 1:
        t = one(parts[0], "the instant")
        return t, t, False
    a, b = one(parts[0], "the start"), one(parts[1], "the end")
    if a is None and b is None:
        raise BadParameter("datetime: an interval needs a start or an end")
    if a is not None and b is not None and a > b:
        raise BadParameter(f"datetime: the start {parts[0]} is after the end {parts[1]}")
    return a, b, True


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Filter:
    """A parsed CQL2 filter and the CRS of its geometry literals."""

    tree: dict[str, Any]
    crs: Crs | None = None


def _cql_sql(f: Filter, c: Collection, alias: str, params: dict[str, Any]) -> str:
    crs = f.crs or Crs(CRS84, 4326, False, True)
    t = cql.translate(f.tree, alias=alias, queryables=c.queryables,
                      geometry=c.geometry is not None, srid=crs.srid, flip=crs.flip)
    params.update(t.params)
    return t.sql


def _run(session: Session, sql: str, params: dict[str, Any]) -> Any:
    """Execute a read whose values come from the caller: a value PostgreSQL refuses (an
    arithmetic overflow, a time it cannot read) is the caller's 400, not a 500."""
    try:
        return session.execute(text(sql), params)
    except DataError as e:
        session.rollback()
        msg = str(e.orig).splitlines()[0] if e.orig else "a value PostgreSQL cannot use"
        raise BadParameter(f"filter: {msg}") from None


@dataclass
class Page:
    """A page of features (GeoJSON dicts without their geometry parsed) and the total."""

    rows: list[dict[str, Any]]
    matched: int


_SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")


def _where_properties(c: Collection, props: dict[str, str], alias: str,
                      params: dict[str, Any]) -> list[str]:
    """Equality on queryables (Part 1's property filters), typed by the queryable."""
    out = []
    for i, (k, v) in enumerate(sorted(props.items())):
        typ = c.queryables.get(k)
        if typ is None or not _SAFE.match(k):
            raise BadParameter(f"{k}: not a queryable of {c.id}; queryables are "
                               f"{', '.join(c.queryables)}")
        p = f"p{i}"
        if typ in ("integer", "number"):
            try:
                params[p] = int(v) if typ == "integer" else float(v)
            except ValueError:
                raise BadParameter(f"{k}: {v[:40]!r} is not a {typ}") from None
        elif typ == "boolean":
            if v.lower() not in ("true", "false"):
                raise BadParameter(f"{k}: {v[:40]!r} is not true or false")
            params[p] = v.lower() == "true"
        else:
            params[p] = v
        if typ == "string":  # a time, a date or an enum compared as its text: never a 500
            out.append(f"CAST({alias}.{k} AS text) = :{p}")
        else:
            out.append(f"{alias}.{k} = :{p}")
    return out


def _filters(c: Collection, alias: str, props: dict[str, str], cql: Filter | None,
             bbox: Box | None, params: dict[str, Any]) -> list[str]:
    """What every items read narrows by: the property filters, the CQL2 filter, the bbox."""
    where = _where_properties(c, props, alias, params)
    if cql is not None:
        where.append(_cql_sql(cql, c, alias, params))
    if bbox is not None and c.geometry is not None:
        where.append(box_sql(f"{alias}.geom", bbox, params))
    return where


def _during(start: str, end: str, a: datetime | None, b: datetime | None,
            params: dict[str, Any]) -> list[str]:
    """Rows whose time span [start, end) meets [a, b] (an end of null: still on; a bound
    of None: open)."""
    out = []
    if a is not None:
        out.append(f"({end} IS NULL OR {end} > :a)")
        params["a"] = a
    if b is not None:
        out.append(f"{start} <= :b")
        params["b"] = b
    return out


def _count(session: Session, table: str, alias: str, cond: str,
           params: dict[str, Any]) -> int:
    return int(_run(session, f"SELECT count(*) FROM {table} {alias} WHERE {cond}",
                    params).scalar_one())


def grid_items(session: Session, c: Collection, gen_id: int, *, bbox: Box | None,
               props: dict[str, str], limit: int, offset: int, crs: Crs | None = None,
               cql: Filter | None = None, after: str | None = None) -> Page:
    """A page of a grid level's units of a generation, in code order: from `offset`, or
    (a next link's cursor, as fast deep in the level as at its start) after the code
    `after`."""
    params: dict[str, Any] = {"g": gen_id, "lvl": c.rank, "limit": limit,
                              "offset": 0 if after is not None else offset}
    cond = " AND ".join([in_generation("u"), "u.level = :lvl",
                         *_filters(c, "u", props, cql, bbox, params)])
    total = _count(session, "grid_unit", "u", cond, params)
    if after is not None:
        cond += " AND u.code > :after"
        params["after"] = after
    rows = _run(session,
        f"SELECT u.id, u.revision, u.code, u.name, u.level, lv.key AS level_key, "
        f"lv.name AS level_name, u.parent_code, u.area_m2, "
        f"u.leader_name, u.leader_phone, u.attributes, "
        f"u.generation_low, {geometry_sql('u.geom', crs)} AS geojson "
        f"FROM grid_unit u JOIN grid_level lv ON lv.rank = u.level WHERE {cond} "
        f"ORDER BY u.code LIMIT :limit OFFSET :offset", params).mappings().all()
    return Page([dict(r) for r in rows], total)


def grid_item(session: Session, c: Collection, gen_id: int, fid: str,
              crs: Crs | None = None) -> dict[str, Any]:
    """One unit of a grid level by code; 404 if the level has none."""
    page = grid_items(session, c, gen_id, bbox=None, props={"code": fid}, limit=1, offset=0,
                      crs=crs)
    if not page.rows:
        raise NotFound(f"{c.id}: no unit {fid!r} in generation {gen_id}")
    return page.rows[0]


def layer_items(session: Session, c: Collection, *, at: datetime | None,
                interval: tuple[datetime | None, datetime | None] | None,
                bbox: Box | None, props: dict[str, str], limit: int, offset: int,
                crs: Crs | None = None, cql: Filter | None = None) -> Page:
    """A page of a layer's rows valid at a time (default now) or during an interval, in
    key order (then validity)."""
    d = c.layer
    assert d is not None
    table = d.model.__tablename__
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = _filters(c, "t", props, cql, bbox, params)
    if interval is not None:
        where += _during("t.valid_from", "t.valid_to", *interval, params)
    elif at is not None:
        where.append(valid_at("t"))
        params["at"] = at
    else:
        where.append(live("t"))
    cond = " AND ".join(where) or "true"
    total = _count(session, table, "t", cond, params)
    geo = f", {geometry_sql('t.geom', crs)} AS geojson" if d.geometry else ", NULL AS geojson"
    order = ", ".join(f"t.{k}" for k in d.key)
    ids = [r[0] for r in _run(
        session, f"SELECT t.id FROM {table} t WHERE {cond} ORDER BY {order}, t.valid_from, "
        f"t.id LIMIT :limit OFFSET :offset", params)]
    if not ids:
        return Page([], total)
    model: Any = d.model
    rows = {r.id: r for r in session.scalars(select(model).where(model.id.in_(ids)))}
    geoms: dict[int, str | None] = dict(session.execute(text(
        f"SELECT t.id{geo} FROM {table} t WHERE t.id = ANY(:ids)"), {"ids": ids}).all())
    out = []
    for i in ids:
        row = rows[i]
        props_ = resp.as_dict(d, row)
        props_["valid_from"] = row.valid_from
        props_["valid_to"] = row.valid_to
        out.append({"id": ID_SEP.join(str(getattr(row, k)) for k in d.key),
                    "properties": props_, "geojson": geoms.get(i), "version": row.id})
    return Page(out, total)


CASE_COLUMNS = ", ".join(f"t.{k}" for k in CASE_QUERYABLES)


def case_items(session: Session, c: Collection, *, start: datetime | None,
               end: datetime | None, bbox: Box | None, props: dict[str, str], limit: int,
               offset: int, crs: Crs | None = None, cql: Filter | None = None,
               after: str | None = None) -> Page:
    """A page of cases in report order (from offset, or after the case numbered `after`).
    A time (start = end) or an interval gives the cases open then: reported before its
    end and not closed before its start."""
    params: dict[str, Any] = {"limit": limit, "offset": 0 if after is not None else offset}
    where = [*_filters(c, "t", props, cql, bbox, params),
             *_during("t.created_at", "t.closed_at", start, end, params)]
    cond = " AND ".join(where) or "true"
    total = _count(session, '"case"', "t", cond, params)
    if after is not None:
        if not after.isdigit() or len(after) > 18:
            raise BadParameter(f"after: {after[:40]!r} is not a cursor a next link gave")
        cond += " AND t.id > :after"
        params["after"] = int(after)
    rows = _run(session, f'SELECT t.id, t.version, {CASE_COLUMNS}, '
                f'{geometry_sql("t.geom", crs)} AS geojson '
                f'FROM "case" t WHERE {cond} ORDER BY t.id LIMIT :limit OFFSET :offset',
                params).mappings().all()
    out = []
    for r in rows:
        props_ = {k: r[k] for k in CASE_QUERYABLES}
        out.append({"id": r["ref"], "properties": props_, "geojson": r["geojson"],
                    "version": f"{r['id']}-{r['version']}", "cursor": str(r["id"])})
    return Page(out, total)


def case_item(session: Session, c: Collection, ref: str, crs: Crs | None = None
              ) -> dict[str, Any]:
    """One case by its reference; 404 if none."""
    page = case_items(session, c, start=None, end=None, bbox=None, props={"ref": ref},
                      limit=1, offset=0, crs=crs)
    if not page.rows:
        raise NotFound(f"cases: no case {ref!r}")
    return page.rows[0]


def split_id(c: Collection, fid: str) -> list[str]:
    """A layer feature id -> its key parts; 404 when it cannot name a row."""
    d = c.layer
    assert d is not None
    parts = fid.split(ID_SEP)
    if len(parts) != len(d.key):
        raise NotFound(f"{c.id}: a feature id is {ID_SEP.join(d.key)}, got {fid!r}")
    return parts


def layer_item(session: Session, c: Collection, fid: str, at: datetime | None,
               crs: Crs | None = None) -> dict[str, Any]:
    """One layer row by feature id, valid at a time (default now); 404 if none."""
    parts = split_id(c, fid)
    d = c.layer
    assert d is not None
    props = dict(zip(d.key, parts, strict=True))
    page = layer_items(session, c, at=at, interval=None, bbox=None, props=props, limit=1,
                       offset=0, crs=crs)
    if not page.rows:
        when = f" at {at.isoformat()}" if at else ""
        raise NotFound(f"{c.id}: no feature {fid!r}{when}")
    return page.rows[0]


def extent(session: Session, c: Collection, gen_id: int | None) -> list[float] | None:
    """The collection's lon/lat bounding box (current rows), None without geometry."""
    if c.geometry is None:
        return None
    if c.kind == "grid":
        row = session.execute(text(
            f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
            f"ST_Extent(u.geom) AS e FROM grid_unit u WHERE {in_generation('u')} "
            f"AND u.level = :lvl) x"), {"g": gen_id, "lvl": c.rank}).one()
    elif c.kind == "cases":
        row = session.execute(text(
            'SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT '
            'ST_Extent(geom) AS e FROM "case") x')).one()
    else:
        assert c.layer is not None
        row = session.execute(text(
            f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
            f"ST_Extent(geom) AS e FROM {c.layer.model.__tablename__} "
            f"WHERE valid_to IS NULL) x")).one()
    if row[0] is None:
        return None
    return [float(v) for v in row]


def temporal(session: Session, c: Collection) -> list[str | None] | None:
    """A layer's temporal extent: its first version's start, open-ended (the cases': the
    first report's time)."""
    if c.kind == "cases":
        first = session.scalar(text('SELECT min(created_at) FROM "case"'))
        return [first.isoformat() if first else None, None]
    if c.layer is None:
        return None
    first = session.scalar(text(
        f"SELECT min(valid_from) FROM {c.layer.model.__tablename__}"))
    return [first.isoformat() if first else None, None]


# ---------------------------------------------------------------- writes (Part 4)


def lock_current(session: Session, c: Collection, key: list[str], if_match: str | None
                 ) -> Any:
    """The current row, locked for this write; 404 if none, 412 if If-Match is stale."""
    d = c.layer
    assert d is not None
    model: Any = d.model
    cond = [getattr(model, k) == v for k, v in zip(d.key, key, strict=True)]
    current = select(model).where(*cond, model.valid_to.is_(None)).with_for_update()
    row = session.scalar(current)
    if row is None:  # none, or another write ended it while this one waited for the lock
        resp.get(session, d, key)  # 404 if there is none now
        row = session.scalar(current)  # the version the other write made, locked
    if row is None:
        raise NotFound(f"{c.id}: {ID_SEP.join(key)} was retired meanwhile")
    if if_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_match.split(",")}
        now = f'"{row.id}"'
        if "*" not in tags and now not in tags:
            raise PreconditionFailed(
                f"If-Match: {c.id} {ID_SEP.join(key)} is at version {now}, not "
                f"{if_match[:80]}: somebody changed it first; read it again and retry",
                extra={"etag": now})
    return row
