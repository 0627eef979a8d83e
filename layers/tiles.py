"""Mapbox Vector Tiles of the OGC collections (the grid per level of a generation, and the
geometric layers: assets, ownership areas, department zones) built by PostGIS
(ST_TileEnvelope, ST_AsMVTGeom, ST_AsMVT) in the WebMercatorQuad tile matrix set, with a
tile cache. The web side is api/routers/tiles.py.

Each tile holds one MVT layer named after its collection: the features whose geometry meets
the tile's envelope widened by its buffer (BUFFER of EXTENT units on each side),
simplified to about half a pixel of its zoom, with plain properties only: a grid unit's
code, name, parent_code and level; a layer row's key and a few fields that
layers.disclosure never hides from the public (no leader, no phone, no person), so that one
tile serves every caller and the cache needs no key per viewer.

The cache is the table tile_cache (alembic 0015), one row a tile, keyed by (collection,
generation, z, x, y) where generation is the grid generation shown (0 for a layer), with
the lon/lat envelope the tile was built from. Why a table rather than memory or files:
every worker shares it, it survives a restart, and an edit deletes the tiles it touched in
its own transaction, so no worker can serve a tile older than a committed edit:
- a layer edit (layers.responsibility: create, update, retire, import) calls invalidate()
  with the bounding boxes of the old and the new geometry: exactly the cached tiles whose
  envelope meets one of them go. invalidate() holds an exclusive advisory lock on the
  collection until the edit commits; a reader caches a tile only under the shared lock,
  taken without waiting (pg_try_advisory_xact_lock_shared), and builds it after taking it.
  So a tile built from data older than an edit is either deleted by that edit's DELETE
  (the reader committed first, the DELETE sees its row) or never stored (the edit held the
  lock: the reader answers the tile it built without caching it).
- a published generation never changes (a draft changes only its own rows, and those
  are not in any published generation), so its tiles stay valid for good (history);
  activating a generation is a new key, and activate() carries the previous generation's
  cached tiles over to the new one except those whose envelope meets a unit that changed
  (in one of the two generations and not in the other): only where it touched is cold.
- a draft's tiles (planner and centre tokens only) are never cached: a draft changes with
  every edit, and its edits (layers.drafts) need no invalidation hook for the same reason.

Because a published generation's grid tiles never change, each worker also keeps the ones
it served in memory (MEMORY, bounded by bytes, least recently used out first): a hit there
costs no database round trip. Layer tiles are read from the table every time (an edit in
another worker must be seen at once). prewarm() builds the tiles of the wall's first
views of a generation in the background, after start-up and after an activation, so no
one waits for a cold first screen.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import CursorResult, text
from sqlalchemy.orm import Session

from layers.versioning import in_generation, live
from spatial.errors import GridopsError, NotFound

if TYPE_CHECKING:
    from layers.ogc import Collection

TMS = "WebMercatorQuad"
Box = tuple[float, float, float, float]  # lon/lat: west, south, east, north
TMS_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
MVT = "application/vnd.mapbox-vector-tile"
MAX_ZOOM = 22
EXTENT = 4096  # MVT units a tile side
BUFFER = 128  # MVT units drawn beyond each side (8 px of a 256 px tile: wider than a stroke)
TOLERANCE_PX = 0.5  # simplification, in pixels of a 256 px tile at the tile's zoom
HALF = 20037508.342789244  # half the WebMercatorQuad's side, metres
LOCK_NS = 7_311_016  # advisory lock namespace (key 2: hashtext of the collection)
MANY_BOXES = 10_000  # beyond this, boxes are merged per CELL_DEG cell before the DELETE
CELL_DEG = 0.01

# what a tile of a layer holds (column -> SQL; no personal data: see the docstring)
LAYER_PROPERTIES: dict[str, dict[str, str]] = {
    "assets": {"code": "t.code", "kind": "t.kind", "name": "t.name",
               "category_code": "t.category_code", "owner_department": "t.owner_department",
               "state": "t.state"},
    "areas": {"code": "t.code", "kind": "t.kind", "name": "t.name",
              "owner_department": "t.owner_department", "priority": "t.priority"},
    "zones": {"layer": "t.layer", "code": "t.code", "name": "t.name",
              "department_code": "t.department_code", "department_name": "d.name"},
}
# joins a layer's tile needs, and the layers whose edits change another's tiles
LAYER_JOINS = {"zones": f"LEFT JOIN department d ON d.code = t.department_code AND {live('d')}"}
ALSO_CHANGES = {"departments": ("zones",)}  # a department's name is in its zones' tiles


class BadTile(GridopsError, status=400, code="bad_request"):
    """A tile address that is not a number (400)."""


@dataclass(frozen=True)
class Tile:
    """A built or cached tile: its bytes (empty: no feature there), whether it came from
    the cache, and whether it may be cached by clients for long (a published generation)."""

    data: bytes
    hit: bool
    cached: bool


TileKey = tuple[str, int, int, int, int]  # collection, generation, z, x, y


class TileMemory:
    """Tiles that never change (a published generation's grid levels) kept in this
    worker, at most max_bytes of them, the least recently used dropped first; keyed by
    (collection, generation, z, x, y)."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[TileKey, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: TileKey) -> bytes | None:
        with self._lock:
            data = self._tiles.get(key)
            if data is not None:
                self._tiles.move_to_end(key)
            return data

    def put(self, key: TileKey, data: bytes) -> None:
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = data
            self._bytes += len(data) + 100
            while self._bytes > self.max_bytes and self._tiles:
                _, old = self._tiles.popitem(last=False)
                self._bytes -= len(old) + 100

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._tiles)


MEMORY = TileMemory()


def parse_address(z: str, x: str, y: str) -> tuple[int, int, int]:
    """z/x/y of WebMercatorQuad: 400 when not whole numbers, 404 outside the matrix set
    (zoom 0..MAX_ZOOM, x and y 0..2^z - 1), each naming what is wrong."""
    out = []
    for name, v in (("z", z), ("x", x), ("y", y)):
        if not v.isdigit() or len(v) > 9:
            raise BadTile(f"tile {z[:12]}/{x[:12]}/{y[:12]}: {name} {v[:12]!r} is not a "
                          "whole number")
        out.append(int(v))
    zi, xi, yi = out
    if zi > MAX_ZOOM:
        raise NotFound(f"tile {zi}/{xi}/{yi}: {TMS} has zoom levels 0 to {MAX_ZOOM} here")
    n = 1 << zi
    if xi >= n or yi >= n:
        raise NotFound(f"tile {zi}/{xi}/{yi} is outside {TMS}: at zoom {zi} x and y are "
                       f"0 to {n - 1}")
    return zi, xi, yi


def tolerance_m(z: int) -> float:
    """The simplification tolerance at zoom z, in Web Mercator metres."""
    return TOLERANCE_PX * 2 * HALF / (256 * (1 << z))


def has_tiles(c: Collection) -> bool:
    """Whether a collection has vector tiles (a grid level, or a layer with geometry)."""
    return c.kind == "grid" or (c.layer is not None and c.id in LAYER_PROPERTIES)


def tiled(c: Collection) -> Collection:
    """The collection, if it has tiles; 404 naming those that have."""
    if not has_tiles(c):
        raise NotFound(f"{c.id} has no geometry, so no tiles; the collections with tiles "
                       f"are the grid levels and {', '.join(LAYER_PROPERTIES)}")
    return c


def _features_sql(c: Collection) -> tuple[str, str]:
    """(SQL of the tile's rows: properties and the MVT geometry, over the CTE `box`;
    the MVT layer's name)."""
    # clipped to the buffered tile first, in lon/lat: a district's outline is not projected
    # and simplified whole for every tile it meets
    geom = ("ST_AsMVTGeom(ST_Simplify(ST_Transform(ST_ClipByBox2D({g}, box.e4), 3857), :tol, "
            "true), box.e, "
            f"{EXTENT}, {BUFFER}, true) AS geom")
    if c.kind == "grid":
        return (f"SELECT u.code, u.name, u.parent_code, u.level, {geom.format(g='u.geom')} "
                f"FROM grid_unit u, box WHERE {in_generation('u')} AND u.level = :lvl "
                f"AND u.geom && box.e4 AND ST_Intersects(u.geom, box.e4)"), c.id
    tiled(c)
    assert c.layer is not None
    props = ", ".join(f"{sql} AS {name}" for name, sql in LAYER_PROPERTIES[c.id].items())
    return (f"SELECT {props}, {geom.format(g='t.geom')} "
            f"FROM {c.layer.model.__tablename__} t {LAYER_JOINS.get(c.id, '')} CROSS JOIN box "
            f"WHERE {live('t')} AND t.geom && box.e4 AND ST_Intersects(t.geom, box.e4)"), c.id


def _tile_sql(c: Collection) -> str:
    rows, name = _features_sql(c)
    return (f"WITH box AS (SELECT ST_TileEnvelope(:z, :x, :y) AS e, "
            f"ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => {BUFFER / EXTENT}), 4326) "
            f"AS e4) SELECT coalesce(ST_AsMVT(f, '{name}', {EXTENT}, 'geom'), ''::bytea) AS data "
            f"FROM ({rows}) f WHERE f.geom IS NOT NULL")


def envelope_sql() -> str:
    """SQL: the lon/lat envelope a tile :z/:x/:y is built from (the tile and its buffer)."""
    return f"ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => {BUFFER / EXTENT}), 4326)"


def _params(c: Collection, gen_id: int | None, z: int, x: int, y: int) -> dict[str, Any]:
    p: dict[str, Any] = {"z": z, "x": x, "y": y, "tol": tolerance_m(z)}
    if c.kind == "grid":
        p.update(g=gen_id, lvl=c.rank)
    return p


def cache_generation(c: Collection, gen_id: int | None) -> int:
    """The cache key's generation: the grid's generation, 0 for a layer."""
    return int(gen_id or 0) if c.kind == "grid" else 0


def tile(session: Session, c: Collection, z: int, x: int, y: int, *,
         gen_id: int | None = None, cache: bool = True) -> Tile:
    """The tile z/x/y of a collection (a grid level: of generation gen_id), from the cache
    when it is there; built and stored otherwise (cache=False: a draft, never stored)."""
    sql = _tile_sql(c)
    params = _params(c, gen_id, z, x, y)
    if not cache:
        return Tile(bytes(session.execute(text(sql), params).scalar_one()), False, False)
    kg = cache_generation(c, gen_id)
    key = {"c": c.id, "kg": kg, "z": z, "x": x, "y": y}
    mem: TileKey | None = (c.id, kg, z, x, y) if c.kind == "grid" else None  # never changes
    if mem is not None and (kept := MEMORY.get(mem)) is not None:
        return Tile(kept, True, True)
    got = session.execute(text(
        "SELECT data FROM tile_cache WHERE collection = :c AND generation = :kg AND z = :z "
        "AND x = :x AND y = :y"), key).scalar_one_or_none()
    if got is not None:
        if mem is not None:
            MEMORY.put(mem, bytes(got))
        return Tile(bytes(got), True, True)
    if c.kind != "grid" and not session.execute(text(
            "SELECT pg_try_advisory_xact_lock_shared(:ns, hashtext(:c))"),
            {"ns": LOCK_NS, "c": c.id}).scalar_one():
        # an edit of this layer is in flight: answer what is committed, store nothing
        return Tile(bytes(session.execute(text(sql), params).scalar_one()), False, True)
    data = session.execute(text(
        f"WITH t AS MATERIALIZED ({sql}), "
        "ins AS (INSERT INTO tile_cache (collection, generation, z, x, y, envelope, data) "
        f"SELECT :c, :kg, :z, :x, :y, {envelope_sql()}, t.data FROM t "
        "ON CONFLICT DO NOTHING) SELECT data FROM t"), params | key).scalar_one()
    session.commit()  # the tile is stored, the shared lock let go
    if mem is not None:
        MEMORY.put(mem, bytes(data))
    return Tile(bytes(data), False, True)


SCREEN = (1600, 900)  # the wall's screen, in CSS pixels


def _xy(lon: float, lat: float, z: int) -> tuple[float, float]:
    n = 1 << z
    return ((lon + 180) / 360 * n,
            (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def fit_zoom(bounds: Box) -> int:
    """The zoom at which Leaflet's fitBounds shows the lon/lat box on SCREEN."""
    for z in range(MAX_ZOOM, -1, -1):
        x0, y1 = _xy(bounds[0], bounds[1], z)
        x1, y0 = _xy(bounds[2], bounds[3], z)
        if (x1 - x0) * 256 <= SCREEN[0] and (y1 - y0) * 256 <= SCREEN[1]:
            return z
    return 0


def box_tiles(bounds: Box, z: int) -> list[tuple[int, int, int]]:
    """Every tile of zoom z that meets the lon/lat box."""
    x0, y1 = _xy(bounds[0], bounds[1], z)
    x1, y0 = _xy(bounds[2], bounds[3], z)
    n = 1 << z
    return [(z, x, y) for x in range(max(0, int(x0)), min(n - 1, int(x1)) + 1)
            for y in range(max(0, int(y0)), min(n - 1, int(y1)) + 1)]


def view_tiles(centre: tuple[float, float], z: int) -> list[tuple[int, int, int]]:
    """The tiles a SCREEN-sized view centred on a lon/lat point at zoom z shows."""
    cx, cy = _xy(centre[0], centre[1], z)
    hx, hy = SCREEN[0] / 512, SCREEN[1] / 512
    n = 1 << z
    return [(z, x, y) for x in range(max(0, int(cx - hx)), min(n - 1, int(cx + hx)) + 1)
            for y in range(max(0, int(cy - hy)), min(n - 1, int(cy + hy)) + 1)]


def first_views(bounds: Box, zooms: int = 2) -> list[tuple[int, int, int]]:
    """The tiles of the wall's first screens: the territory fitted on SCREEN (the whole
    screen, beyond the territory's box too), one zoom out (a smaller window) and `zooms - 1`
    zooms in (the territory's box)."""
    z0 = fit_zoom(bounds)
    centre = ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    out: set[tuple[int, int, int]] = set()
    for z in range(max(0, z0 - 1), min(MAX_ZOOM, z0 + zooms - 1) + 1):
        out.update(view_tiles(centre, z) if z <= z0 else box_tiles(bounds, z))
    return sorted(out)


PREWARM_LOCK = 7_311_017  # advisory lock: one worker builds a generation's first views


def prewarm(session: Session, collections: Sequence[Collection], gen_id: int,
            bounds: Box, *, zooms: int = 2) -> int:
    """Build (into tile_cache and this worker's memory) every tile of the grid levels that
    the wall's first screens show (first_views). One worker builds while the others wait,
    then they read the stored tiles in one query. Returns how many tiles it holds."""
    addrs = first_views(bounds, zooms)
    lock = {"ns": PREWARM_LOCK, "g": gen_id}
    bind: Any = session.get_bind()
    engine = bind.engine  # an Engine's engine is itself; a Connection's, its engine
    with engine.connect() as held:  # its own connection: the session commits after each
        held.execute(text("SELECT pg_advisory_lock(:ns, :g)"), lock)
        held.commit()
        try:
            zs = sorted({z for z, _, _ in addrs})
            # what another worker built already: into memory in one read
            for r in session.execute(text(
                    "SELECT collection, z, x, y, data FROM tile_cache WHERE generation = :g "
                    "AND collection = ANY(:cs) AND z = ANY(:zs)"),
                    {"g": gen_id, "cs": [c.id for c in collections], "zs": zs}):
                MEMORY.put((r.collection, gen_id, r.z, r.x, r.y), bytes(r.data))
            n = 0
            for z, x, y in addrs:
                for c in collections:
                    if MEMORY.get((c.id, gen_id, z, x, y)) is None:
                        tile(session, c, z, x, y, gen_id=gen_id)
                    n += 1
            return n
        finally:
            held.execute(text("SELECT pg_advisory_unlock(:ns, :g)"), lock)
            held.commit()


def merge_boxes(boxes: Sequence[Box]) -> list[Box]:
    """Many boxes (a large import) as fewer: those whose centre falls in the same
    CELL_DEG cell merged into their common bounds (a superset: safe to invalidate)."""
    if len(boxes) <= MANY_BOXES:
        return list(boxes)
    b = np.asarray(boxes, dtype=float)
    cells = np.floor(np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2])
                     / CELL_DEG).astype(np.int64)
    _, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n = int(inverse.max()) + 1
    out = np.empty((n, 4))
    out[:, 0] = np.full(n, np.inf)
    out[:, 1] = np.full(n, np.inf)
    out[:, 2] = np.full(n, -np.inf)
    out[:, 3] = np.full(n, -np.inf)
    np.minimum.at(out[:, 0], inverse, b[:, 0])
    np.minimum.at(out[:, 1], inverse, b[:, 1])
    np.maximum.at(out[:, 2], inverse, b[:, 2])
    np.maximum.at(out[:, 3], inverse, b[:, 3])
    return [tuple(map(float, r)) for r in out]  # type: ignore[misc]


def _count(res: Any) -> int:
    """How many rows a DELETE or INSERT touched."""
    assert isinstance(res, CursorResult)
    return int(res.rowcount or 0)


def invalidate(session: Session, collection: str, boxes: Iterable[Box | None] | None) -> int:
    """Delete the cached tiles of a layer (and of the layers whose tiles show it) whose
    envelope meets one of the lon/lat boxes (None: every tile of it), in the caller's
    transaction, holding the collection's lock until it commits (see the module
    docstring). Returns how many tiles went."""
    targets = ((collection,) if collection in LAYER_PROPERTIES else ()) + \
        ALSO_CHANGES.get(collection, ())
    gone = 0
    for target in targets:
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:c))"),
                        {"ns": LOCK_NS, "c": target})
        if target != collection or boxes is None:  # a name shown in tiles anywhere
            gone += _count(session.execute(text(
                "DELETE FROM tile_cache WHERE collection = :c"), {"c": target}))
            continue
        real = merge_boxes([b for b in boxes if b is not None and all(map(math.isfinite, b))])
        if not real:
            continue
        cols = list(zip(*real, strict=True))
        gone += _count(session.execute(text(
            "DELETE FROM tile_cache t USING (SELECT ST_MakeEnvelope(x0, y0, x1, y1, "
            "4326) AS b FROM unnest(CAST(:x0 AS float8[]), CAST(:y0 AS float8[]), "
            "CAST(:x1 AS float8[]), CAST(:y1 AS float8[])) AS u(x0, y0, x1, y1)) bx "
            "WHERE t.collection = :c AND t.envelope && bx.b"),
            {"c": target, "x0": list(cols[0]), "y0": list(cols[1]), "x1": list(cols[2]),
             "y1": list(cols[3])}))
    return gone


def carry_over(session: Session, old_gen: int, new_gen: int) -> int:
    """At an activation: the grid tiles cached for the generation being replaced become the
    new generation's too, except those whose envelope meets the bounding box of a unit in
    one of the two and not in the other (what the activation changed). Returns how many."""
    return _count(session.execute(text(f"""
        WITH changed AS MATERIALIZED (
            SELECT 'grid-' || lv.key AS collection, u.geom FROM grid_unit u
              JOIN grid_level lv ON lv.rank = u.level
             WHERE ({in_generation('u', ':old')}) <> ({in_generation('u', ':new')})),
        touched AS (
            SELECT DISTINCT c.collection, c.z, c.x, c.y FROM tile_cache c
              JOIN changed ch ON ch.collection = c.collection AND c.envelope && ch.geom
             WHERE c.generation = :old)
        INSERT INTO tile_cache (collection, generation, z, x, y, envelope, data)
        SELECT c.collection, :new, c.z, c.x, c.y, c.envelope, c.data FROM tile_cache c
         WHERE c.generation = :old AND c.collection LIKE 'grid-%'
           AND NOT EXISTS (SELECT 1 FROM touched t WHERE t.collection = c.collection
                           AND t.z = c.z AND t.x = c.x AND t.y = c.y)
        ON CONFLICT DO NOTHING"""), {"old": old_gen, "new": new_gen}))


def bounds_of(geoms: Sequence[Any]) -> list[Box | None]:
    """The lon/lat bounds of shapely geometries (None for a missing one)."""
    if not geoms:
        return []
    arr = np.asarray(list(geoms), dtype=object)
    present = np.array([g is not None for g in arr])
    out: list[Box | None] = [None] * len(arr)
    if present.any():
        import shapely

        b = shapely.bounds(arr[present])
        for i, row in zip(np.flatnonzero(present), b, strict=True):
            out[int(i)] = (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
    return out


def row_bounds(session: Session, d: Any, ids: Sequence[int]) -> list[Box | None]:
    """The stored bounds of rows of a layer (a layers.responsibility.LayerDef) by id, old
    versions included; none for a layer without geometry."""
    if not ids or not d.geometry:
        return []
    table = d.model.__tablename__
    rows = session.execute(text(
        f"SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM {table} "
        "WHERE id = ANY(:ids) AND geom IS NOT NULL"), {"ids": list(ids)})
    return [(float(a), float(b), float(c), float(e)) for a, b, c, e in rows]


def tile_bounds(z: int, x: int, y: int) -> Box:
    """A tile's lon/lat bounds (without its buffer)."""
    n = 1 << z

    def lon(i: int) -> float:
        return i / n * 360.0 - 180.0

    def lat(j: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * j / n))))

    return lon(x), lat(y + 1), lon(x + 1), lat(y)


def prewarm_active(session: Session) -> tuple[int | None, int]:
    """prewarm() the active generation's grid levels over the territory: (generation,
    tiles), (None, 0) without an active generation."""
    from layers import ogc

    gen = session.scalar(text("SELECT id FROM generation WHERE active"))
    if gen is None:
        return None, 0
    levels = [c for c in ogc.catalogue(session) if c.kind == "grid"]
    box = ogc.extent(session, levels[0], int(gen)) if levels else None
    if box is None:
        return int(gen), 0
    return int(gen), prewarm(session, levels, int(gen), (box[0], box[1], box[2], box[3]))
