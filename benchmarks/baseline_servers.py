"""The two servers `GET /resolve` is measured against, served like gridops (uvicorn, the
same number of workers) on the same database:

- `bare_app`: a minimal Starlette app answering the finest grid's code from a shapely
  STRtree built at start-up (the floor a Python web stack can reach);
- `postgis_app`: a minimal Starlette app asking PostGIS per request (`ST_Covers ... ORDER
  BY code LIMIT 1` on the finest level of the active generation) through a connection
  pool, in Starlette's thread pool (psycopg2 is blocking).

Both answer `{"code": ...}` (null outside) at `/resolve?lon=&lat=`, read
GRIDOPS_DATABASE_URL, and are started with
`python -m uvicorn benchmarks.baseline_servers:bare_app --factory --workers 2`.
`/ready` answers 200 once the app has started."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np
import psycopg2
import psycopg2.pool
import shapely
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from layers.versioning import ACTIVE_GENERATION_SQL, in_generation

ACTIVE = in_generation("u", ACTIVE_GENERATION_SQL)
FINEST = f"(SELECT max(u.level) FROM grid_unit u WHERE {ACTIVE})"

# the query the PostGIS baseline runs per request (the lowest covering code wins), prepared
# once per pooled connection so that a request costs its execution, not its planning
COVERS_SQL = f"""
SELECT u.code FROM grid_unit u
 WHERE u.level = %(lvl)s AND {ACTIVE}
   AND ST_Covers(u.geom, ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 4326))
 ORDER BY u.code LIMIT 1"""
PREPARE_SQL = "PREPARE covers_point(int, float8, float8) AS " + COVERS_SQL % {
    "lvl": "$1", "x": "$2", "y": "$3"}
EXECUTE_SQL = "EXECUTE covers_point(%(lvl)s, %(x)s, %(y)s)"


def _dsn() -> str:
    url = os.environ["GRIDOPS_DATABASE_URL"]
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _finest_level(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(FINEST)
        (lvl,) = cur.fetchone()
    if lvl is None:
        raise RuntimeError("no active generation with grid units")
    return int(lvl)


def _ready(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _point(request: Request) -> tuple[float, float]:
    q = request.query_params
    return float(q["lon"]), float(q["lat"])


# ---------------------------------------------------------------- shapely STRtree


def bare_app() -> Starlette:
    """The STRtree baseline (uvicorn --factory)."""
    with psycopg2.connect(_dsn()) as conn:
        lvl = _finest_level(conn)
        with conn.cursor() as cur:
            cur.execute(f"SELECT u.code, ST_AsBinary(u.geom) FROM grid_unit u "
                        f"WHERE u.level = %(lvl)s AND {ACTIVE} ORDER BY u.code", {"lvl": lvl})
            rows = cur.fetchall()
    conn.close()
    codes = [r[0] for r in rows]
    geoms = shapely.from_wkb([bytes(r[1]) for r in rows])
    tree = shapely.STRtree(geoms)

    async def resolve(request: Request) -> JSONResponse:
        lon, lat = _point(request)
        hits = tree.query(shapely.Point(lon, lat), predicate="covered_by")
        # rows are in code order: the lowest index is the lowest covering code
        code = codes[int(np.min(hits))] if hits.size else None
        return JSONResponse({"code": code})

    return Starlette(routes=[Route("/resolve", resolve), Route("/ready", _ready)])


# ---------------------------------------------------------------- PostGIS per request


def postgis_app(pool_size: int = 16) -> Starlette:
    """The per-request PostGIS baseline (uvicorn --factory): `pool_size` connections per
    worker, opened at start-up and kept (autocommit, the statement prepared on each); a
    request waits for a free one."""
    state: dict[str, Any] = {}
    free = threading.BoundedSemaphore(pool_size)

    @contextmanager
    def connection() -> Iterator[Any]:
        pool: psycopg2.pool.ThreadedConnectionPool = state["pool"]
        with free:
            conn = pool.getconn()
            try:
                yield conn
            finally:
                pool.putconn(conn)

    def resolve(request: Request) -> JSONResponse:  # sync: Starlette's thread pool runs it
        lon, lat = _point(request)
        with connection() as conn, conn.cursor() as cur:
            cur.execute(EXECUTE_SQL, {"lvl": state["lvl"], "x": lon, "y": lat})
            row = cur.fetchone()
        return JSONResponse({"code": row[0] if row else None})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # minconn = maxconn: psycopg2's pool closes a connection given back beyond minconn
        pool = psycopg2.pool.ThreadedConnectionPool(pool_size, pool_size, _dsn())
        state["pool"] = pool
        conns = [pool.getconn() for _ in range(pool_size)]
        for c in conns:
            c.autocommit = True  # one statement per request: no transaction around it
            with c.cursor() as cur:
                cur.execute(PREPARE_SQL)
        state["lvl"] = _finest_level(conns[0])
        for c in conns:
            pool.putconn(c)
        yield
        pool.closeall()

    return Starlette(routes=[Route("/resolve", resolve), Route("/ready", _ready)],
                     lifespan=lifespan)
