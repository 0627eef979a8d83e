"""OGC API Features collections of gridops: the grid per level (of a generation) and the
responsibility layers, read with the filters Part 1 defines (bbox, datetime, properties),
paged in a stable order. The web side is api/routers/ogc.py; this module knows only rows.

Feature ids are stable across versions: a grid unit's code, a layer row's key (its parts
joined by "~", e.g. a zone's "layer~code"); an edit makes a new version under the same id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, JSON, select, text
from sqlalchemy.orm import Session

from layers import grids
from layers import responsibility as resp
from layers.versioning import in_generation
from spatial.errors import InvalidInput, NotFound

ID_SEP = "~"
# the layers OGC API Features serves, and whether a public caller may read them
LAYER_COLLECTIONS = ("assets", "areas", "zones", "assignments", "departments", "categories",
                     "teams", "roles")


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


# fields the public does not see (layers.disclosure): no filter may probe them either
PRIVATE = {("roles", "name"), ("roles", "phone"), ("teams", "members"),
           ("departments", "contact_name"), ("departments", "contact_phone")}
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


def catalogue(session: Session) -> list[Collection]:
    """Every collection, grid levels first (coarse to fine)."""
    out = [Collection(f"grid-{lv.key}", f"{lv.name} ({lv.key})",
                      f"Grid units of level {lv.rank} ({lv.name}) of the active generation "
                      "(generation= or datetime= for another)", "grid", "MultiPolygon",
                      rank=lv.rank, queryables=GRID_QUERYABLES)
           for lv in grids.levels(session)]
    for name in LAYER_COLLECTIONS:
        d = resp.LAYERS[name]
        geom = ("MultiPolygon" if "MultiPolygon" in d.geometry else "Geometry") \
            if d.geometry else None
        out.append(Collection(name, d.title or name, f"The responsibility layer {name} "
                              f"(key {ID_SEP.join(d.key)}); datetime= for the rows valid "
                              "then", "layer", geom, layer=d, queryables=_layer_queryables(d)))
    return out


def collection(session: Session, cid: str) -> Collection:
    """A collection by id; 404 naming the known ones."""
    for c in catalogue(session):
        if c.id == cid:
            return c
    known = ", ".join(c.id for c in catalogue(session))
    raise NotFound(f"no collection {cid!r}; collections are {known}")


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
        raise InvalidInput(f"datetime: {value[:60]!r} is neither an instant nor an interval "
                           "(start/end)")

    def one(v: str, where: str) -> datetime | None:
        if len(parts) == 2 and (v in _OPEN or v.startswith(FAKE_OPEN)):
            return None
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"datetime: {where} {v[:40]!r} is not an RFC 3339 time") \
                from None
        if t.tzinfo is None:
            raise InvalidInput(f"datetime: {where} {v[:40]!r} has no time zone (add Z or "
                               "+08:00)")
        return t

    if len(parts) == 1:
        t = one(parts[0], "the instant")
        return t, t, False
    a, b = one(parts[0], "the start"), one(parts[1], "the end")
    if a is None and b is None:
        raise InvalidInput("datetime: an interval needs a start or an end")
    if a is not None and b is not None and a > b:
        raise InvalidInput(f"datetime: the start {parts[0]} is after the end {parts[1]}")
    return a, b, True


# ---------------------------------------------------------------- reading


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
            raise InvalidInput(f"{k}: not a queryable of {c.id}; queryables are "
                               f"{', '.join(c.queryables)}")
        p = f"p{i}"
        if typ in ("integer", "number"):
            try:
                params[p] = int(v) if typ == "integer" else float(v)
            except ValueError:
                raise InvalidInput(f"{k}: {v[:40]!r} is not a {typ}") from None
        elif typ == "boolean":
            if v.lower() not in ("true", "false"):
                raise InvalidInput(f"{k}: {v[:40]!r} is not true or false")
            params[p] = v.lower() == "true"
        else:
            params[p] = v
        if typ == "string":  # a time, a date or an enum compared as its text: never a 500
            out.append(f"CAST({alias}.{k} AS text) = :{p}")
        else:
            out.append(f"{alias}.{k} = :{p}")
    return out


def grid_items(session: Session, c: Collection, gen_id: int, *,
               bbox: tuple[float, float, float, float] | None, props: dict[str, str],
               limit: int, offset: int, precision: int = 15) -> Page:
    """A page of a grid level's units of a generation, in code order."""
    params: dict[str, Any] = {"g": gen_id, "lvl": c.rank, "limit": limit, "offset": offset,
                              "precision": precision}
    where = [in_generation("u"), "u.level = :lvl", *_where_properties(c, props, "u", params)]
    if bbox is not None:
        where.append("u.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) AND "
                     "ST_Intersects(u.geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))")
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    cond = " AND ".join(where)
    total = int(session.execute(text(f"SELECT count(*) FROM grid_unit u WHERE {cond}"),
                                params).scalar_one())
    rows = session.execute(text(
        f"SELECT u.code, u.name, u.level, lv.key AS level_key, lv.name AS level_name, "
        f"u.parent_code, u.area_m2, u.leader_name, u.leader_phone, u.attributes, "
        f"u.generation_low, ST_AsGeoJSON(u.geom, :precision) AS geojson "
        f"FROM grid_unit u JOIN grid_level lv ON lv.rank = u.level WHERE {cond} "
        f"ORDER BY u.code LIMIT :limit OFFSET :offset"), params).mappings().all()
    return Page([dict(r) for r in rows], total)


def grid_item(session: Session, c: Collection, gen_id: int, fid: str,
              precision: int = 15) -> dict[str, Any]:
    """One unit of a grid level by code; 404 if the level has none."""
    page = grid_items(session, c, gen_id, bbox=None, props={"code": fid}, limit=1, offset=0,
                      precision=precision)
    if not page.rows:
        raise NotFound(f"{c.id}: no unit {fid!r} in generation {gen_id}")
    return page.rows[0]


def layer_items(session: Session, c: Collection, *, at: datetime | None,
                interval: tuple[datetime | None, datetime | None] | None,
                bbox: tuple[float, float, float, float] | None, props: dict[str, str],
                limit: int, offset: int, precision: int = 15) -> Page:
    """A page of a layer's rows valid at a time (default now) or during an interval, in
    key order (then validity)."""
    d = c.layer
    assert d is not None
    table = d.model.__tablename__
    params: dict[str, Any] = {"limit": limit, "offset": offset, "precision": precision}
    where = _where_properties(c, props, "t", params)
    if interval is not None:
        a, b = interval
        if a is not None:
            where.append("(t.valid_to IS NULL OR t.valid_to > :a)")
            params["a"] = a
        if b is not None:
            where.append("t.valid_from <= :b")
            params["b"] = b
    elif at is not None:
        where.append("t.valid_from <= :at AND (t.valid_to IS NULL OR t.valid_to > :at)")
        params["at"] = at
    else:
        where.append("t.valid_to IS NULL")
    if bbox is not None and d.geometry:
        where.append("t.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) AND "
                     "ST_Intersects(t.geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))")
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    cond = " AND ".join(where) or "true"
    total = int(session.execute(text(f"SELECT count(*) FROM {table} t WHERE {cond}"),
                                params).scalar_one())
    geo = ", ST_AsGeoJSON(t.geom, :precision) AS geojson" if d.geometry else \
        ", NULL AS geojson"
    order = ", ".join(f"t.{k}" for k in d.key)
    ids = [r[0] for r in session.execute(text(
        f"SELECT t.id FROM {table} t WHERE {cond} ORDER BY {order}, t.valid_from, t.id "
        f"LIMIT :limit OFFSET :offset"), params)]
    if not ids:
        return Page([], total)
    model: Any = d.model
    rows = {r.id: r for r in session.scalars(select(model).where(model.id.in_(ids)))}
    geoms: dict[int, str | None] = dict(session.execute(text(
        f"SELECT t.id{geo} FROM {table} t WHERE t.id = ANY(:ids)"),
        {"ids": ids, "precision": precision}).all())
    out = []
    for i in ids:
        row = rows[i]
        props_ = resp.as_dict(d, row)
        props_["valid_from"] = row.valid_from
        props_["valid_to"] = row.valid_to
        out.append({"id": ID_SEP.join(str(getattr(row, k)) for k in d.key),
                    "properties": props_, "geojson": geoms.get(i)})
    return Page(out, total)


def split_id(c: Collection, fid: str) -> list[str]:
    """A layer feature id -> its key parts; 404 when it cannot name a row."""
    d = c.layer
    assert d is not None
    parts = fid.split(ID_SEP)
    if len(parts) != len(d.key):
        raise NotFound(f"{c.id}: a feature id is {ID_SEP.join(d.key)}, got {fid!r}")
    return parts


def layer_item(session: Session, c: Collection, fid: str, at: datetime | None,
               precision: int = 15) -> dict[str, Any]:
    """One layer row by feature id, valid at a time (default now); 404 if none."""
    parts = split_id(c, fid)
    d = c.layer
    assert d is not None
    props = dict(zip(d.key, parts, strict=True))
    page = layer_items(session, c, at=at, interval=None, bbox=None, props=props, limit=1,
                       offset=0, precision=precision)
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
    """A layer's temporal extent: its first version's start, open-ended."""
    if c.layer is None:
        return None
    first = session.scalar(text(
        f"SELECT min(valid_from) FROM {c.layer.model.__tablename__}"))
    return [first.isoformat() if first else None, None]

