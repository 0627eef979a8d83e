"""The PostGIS baselines: the points in a table (COPY, GiST, ANALYZE), the default-plan
ST_Covers join, tuned polygon-outer formulations, and the sample gridops is checked against."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg2
from psycopg2.extensions import connection as PgConnection
from sqlalchemy.orm import Session

from layers import grids
from layers.db import make_engine
from layers.resolver import resolve_sql

from .report import log

POINTS = "bench_points"
SAMPLE = "bench_points_sample"
SUBSET = "bench_points_subset"

# the finest level's grids, every point covered counted once (edge points match twice)
DEFAULT_SQL = """
SELECT count(DISTINCT p.id) FROM {pts} p
  JOIN grid_unit u ON u.level = %(lvl)s AND ST_Covers(u.geom, p.geom)"""

SAMPLE_SQL = """
SELECT p.id, min(u.code) FROM {pts} p
  JOIN grid_unit u ON u.level = %(lvl)s AND ST_Covers(u.geom, p.geom)
 GROUP BY p.id"""

# polygon-outer: each (sub)polygon probes the points' GiST index, so PostGIS's
# per-polygon point-in-polygon cache is built once and reused for all its points
TUNED: list[tuple[str, list[str], str]] = [
    ("lateral over grid_piece (<=128 vertices), jit off", ["SET LOCAL jit = off"], """
SELECT count(DISTINCT x.id) FROM grid_piece gp
  JOIN grid_unit u ON u.id = gp.unit_id AND u.level = %(lvl)s
 CROSS JOIN LATERAL (SELECT p.id FROM {pts} p
                      WHERE p.geom && gp.geom AND ST_Covers(gp.geom, p.geom)) x"""),
    ("lateral over grid_unit, jit off", ["SET LOCAL jit = off"], """
SELECT count(DISTINCT x.id) FROM grid_unit u
 CROSS JOIN LATERAL (SELECT p.id FROM {pts} p
                      WHERE p.geom && u.geom AND ST_Covers(u.geom, p.geom)) x
 WHERE u.level = %(lvl)s"""),
    ("join grid_piece, hash/merge joins off, jit off",
     ["SET LOCAL enable_hashjoin = off", "SET LOCAL enable_mergejoin = off",
      "SET LOCAL jit = off"], """
SELECT count(DISTINCT p.id) FROM grid_piece gp
  JOIN grid_unit u ON u.id = gp.unit_id AND u.level = %(lvl)s
  JOIN {pts} p ON ST_Covers(gp.geom, p.geom)"""),
]


@contextmanager
def connect(url: str) -> Iterator[PgConnection]:
    """A plain psycopg2 connection (autocommit) to a libpq URL."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def finest_level(conn: PgConnection) -> int:
    """The finest level present in the database."""
    with conn.cursor() as cur:
        cur.execute("SELECT max(level) FROM grid_unit WHERE generation_high IS NULL")
        row = cur.fetchone()
    assert row is not None and row[0] is not None, "no grid loaded"
    return int(row[0])


def _index_table(cur: Any, table: str) -> None:
    cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    cur.execute(f"CREATE INDEX {table}_geom ON {table} USING gist (geom)")
    cur.execute(f"VACUUM ANALYZE {table}")


def load_points(conn: PgConnection, lon: np.ndarray, lat: np.ndarray) -> float:
    """COPY the points into `bench_points` (Point 4326, GiST, analysed); seconds it took."""
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {POINTS}, {POINTS}_xy")
        cur.execute(f"CREATE UNLOGGED TABLE {POINTS}_xy (id int, x float8, y float8)")
        # repr() round-trips a float64 exactly
        body = "".join(f"{i}\t{x!r}\t{y!r}\n"
                       for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)))
        cur.copy_expert(f"COPY {POINTS}_xy (id, x, y) FROM STDIN", io.StringIO(body))
        cur.execute(f"CREATE TABLE {POINTS} AS SELECT id, "
                    f"ST_SetSRID(ST_MakePoint(x, y), 4326)::geometry(Point, 4326) AS geom "
                    f"FROM {POINTS}_xy ORDER BY id")
        cur.execute(f"DROP TABLE {POINTS}_xy")
        _index_table(cur, POINTS)
    return time.perf_counter() - t0


def copy_subset(conn: PgConnection, table: str, n: int) -> None:
    """The first n points as a table of their own (own GiST index and statistics)."""
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} AS SELECT id, geom FROM {POINTS} WHERE id < %s "
                    f"ORDER BY id", (n,))
        _index_table(cur, table)


def _node(n: dict[str, Any]) -> str:
    name = n["Node Type"]
    if n.get("Relation Name"):
        name += f" {n['Relation Name']}"
    if n.get("Index Name"):
        name += f" using {n['Index Name']}"
    if n.get("Workers Planned"):
        name += f" ({n['Workers Planned']} workers)"
    kids = [_node(k) for k in n.get("Plans", [])]
    return name + (" [" + ", ".join(kids) + "]" if kids else "")


def plan(conn: PgConnection, sql: str, params: dict[str, Any],
         sets: Sequence[str] = ()) -> str:
    """The plan PostgreSQL chooses, as one line of nested node names."""
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        try:
            for s in sets:
                cur.execute(s)
            cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            row = cur.fetchone()
        finally:
            cur.execute("ROLLBACK")
    assert row is not None
    return _node(row[0][0]["Plan"])


@dataclass
class SqlRun:
    """One timed query: seconds of its best run (None: cancelled), what it found."""

    name: str
    seconds: float | None
    points: int
    covered: int | None
    plan: str
    runs: int = 1
    note: str = ""

    @property
    def rate(self) -> float | None:
        """Points per second."""
        return self.points / self.seconds if self.seconds else None


def run(conn: PgConnection, name: str, sql: str, params: dict[str, Any], points: int,
        sets: Sequence[str] = (), repeats: int = 1, timeout_s: float = 600.0,
        budget_s: float = 30.0) -> SqlRun:
    """Time a count query (best of `repeats`, fewer past `budget_s`); None if it timed out."""
    pl = plan(conn, sql, params, sets)
    best: float | None = None
    covered: int | None = None
    runs = 0
    spent = 0.0
    with conn.cursor() as cur:
        for _ in range(max(1, repeats)):
            cur.execute("BEGIN")
            try:
                cur.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                for s in sets:
                    cur.execute(s)
                t0 = time.perf_counter()
                cur.execute(sql, params)
                row = cur.fetchone()
                dt = time.perf_counter() - t0
            except psycopg2.errors.QueryCanceled:
                cur.execute("ROLLBACK")
                return SqlRun(name, None, points, None, pl, runs + 1,
                              f"cancelled after {timeout_s:.0f} s")
            cur.execute("COMMIT")
            runs += 1
            spent += dt
            assert row is not None
            covered = int(row[0])
            best = dt if best is None else min(best, dt)
            if spent >= budget_s:
                break
    log(f"    {name}: {best:.2f} s, {covered:,} points covered, plan: {pl}")
    return SqlRun(name, best, points, covered, pl, runs)


def sample_codes(conn: PgConnection, lvl: int) -> tuple[dict[int, str], float]:
    """The default plan's answer for the sample table: point id -> lowest covering code."""
    with conn.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute(SAMPLE_SQL.format(pts=SAMPLE), {"lvl": lvl})
        rows = cur.fetchall()
        dt = time.perf_counter() - t0
    return {int(i): str(c) for i, c in rows}, dt


def time_resolve_sql(url: str, lon: np.ndarray, lat: np.ndarray
                     ) -> tuple[float, list[str | None]]:
    """`layers.resolver.resolve_sql` (the product's SQL path) on points: seconds, codes."""
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            gen = grids.active_generation(s)
            assert gen is not None
            t0 = time.perf_counter()
            codes = resolve_sql(s, gen.id, lon, lat)
            return time.perf_counter() - t0, codes
    finally:
        engine.dispose()


@dataclass
class Baselines:
    """Everything measured in PostGIS for one grid set."""

    load_s: float
    sample_n: int
    sample_s: float
    sample_codes: dict[int, str]
    default: SqlRun
    default_scaled_from: int | None  # measured on this many points, rate applied to all
    tuned: list[SqlRun]
    resolve_sql_n: int = 0  # layers.resolver.resolve_sql on the first points of the sample
    resolve_sql_s: float | None = None
    resolve_sql_differ: int | None = None  # its codes against the default plan's

    @property
    def best_tuned(self) -> SqlRun | None:
        """The fastest tuned formulation that finished."""
        done = [t for t in self.tuned if t.seconds is not None]
        return min(done, key=lambda t: t.seconds or 0.0) if done else None


def measure(url: str, lon: np.ndarray, lat: np.ndarray, *, sample_n: int = 20_000,
            max_default_s: float = 300.0, subset_target_s: float = 60.0,
            resolve_sql_budget_s: float = 10.0) -> Baselines:
    """Load the points, then time the default-plan join and the tuned polygon-outer ones."""
    n = len(lon)
    with connect(url) as conn:
        lvl = finest_level(conn)
        load_s = load_points(conn, lon, lat)
        log(f"    {n:,} points loaded into PostGIS in {load_s:.1f} s")
        k = min(sample_n, n)
        copy_subset(conn, SAMPLE, k)
        codes, sample_s = sample_codes(conn, lvl)
        pilot_rate = k / sample_s if sample_s > 0 else float("inf")
        log(f"    default plan on the {k:,}-point sample: {sample_s:.2f} s "
            f"({pilot_rate:,.0f} points/s); plan: "
            f"{plan(conn, SAMPLE_SQL.format(pts=SAMPLE), {'lvl': lvl})}")
        params = {"lvl": lvl}
        scaled_from: int | None = None
        if n / pilot_rate > max_default_s:
            m = max(k, min(n, int(pilot_rate * subset_target_s)))
            copy_subset(conn, SUBSET, m)
            default = run(conn, "default plan", DEFAULT_SQL.format(pts=SUBSET), params, m,
                          timeout_s=4 * max_default_s)
            scaled_from = m
        else:
            default = run(conn, "default plan", DEFAULT_SQL.format(pts=POINTS), params, n,
                          repeats=2, timeout_s=4 * max_default_s)
        ref = default.seconds * (n / default.points) if default.seconds else max_default_s
        tuned = [run(conn, name, sql.format(pts=POINTS), params, n, sets=sets, repeats=2,
                     timeout_s=min(max_default_s, 1.5 * ref + 10))
                 for name, sets, sql in TUNED]
    out = Baselines(load_s, k, sample_s, codes, default, scaled_from, tuned)
    # a pilot first: per point, this path can cost milliseconds on a large grid
    m = min(k, 200)
    secs, rcodes = time_resolve_sql(url, lon[:m], lat[:m])
    want = min(k, max(m, int(m / secs * resolve_sql_budget_s))) if secs > 0 else k
    if want > m:
        m = want
        secs, rcodes = time_resolve_sql(url, lon[:m], lat[:m])
    out.resolve_sql_n, out.resolve_sql_s = m, secs
    out.resolve_sql_differ = sum(c != codes.get(i) for i, c in enumerate(rcodes))
    return out
