"""The run's own throw-away PostGIS cluster, its databases and the grid loads (real loader)."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from etl.demo import to_inputs
from etl.demo_city import UnitSpec, build_city, megacity_source, songjiang_units
from layers import grids
from layers.cluster import Cluster, find_bindir
from layers.db import make_engine, upgrade
from layers.settings import Settings


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A cluster like tests/conftest.py's: temp dir (0755), free port, destroyed at the end."""
    base = Path(tempfile.mkdtemp(prefix="gridops-bench-"))
    os.chmod(base, 0o755)  # the postgres user must enter it when we are root
    cluster = Cluster(datadir=base / "pgdata", bindir=find_bindir(), preferred_port=0)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def create_database(cluster: Cluster, name: str) -> str:
    """A new database in the cluster, migrated to head; its URL."""
    admin = make_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    url = cluster.url().rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    return url


@dataclass
class Loaded:
    """A grid loaded and activated by the real loader."""

    generation: int | None
    seconds: float
    error: str | None = None


def load_grid(engine: Engine, specs: list[UnitSpec], settings: Settings, label: str,
              budget_s: float | None = None) -> Loaded:
    """`grids.load_generation` in one transaction (validated in PostGIS, then activated).

    With a budget, a watchdog cancels the running statement once it is spent; the
    transaction then rolls back and the error says so.
    """
    units = to_inputs(specs)
    t0 = time.perf_counter()
    timer: threading.Timer | None = None
    cancelled = threading.Event()
    try:
        with Session(engine) as s, s.begin():
            if budget_s is not None:
                pid = int(s.scalar(text("SELECT pg_backend_pid()")) or 0)

                def cancel() -> None:
                    cancelled.set()
                    with engine.connect() as c:
                        c.execute(text("SELECT pg_cancel_backend(:p)"), {"p": pid})
                        c.commit()

                timer = threading.Timer(budget_s, cancel)
                timer.daemon = True
                timer.start()
            grids.sync_levels(s, settings)
            gen = grids.load_generation(s, units, settings, label=label)
            gen_id = gen.id
    except DBAPIError as e:
        if not cancelled.is_set():
            raise
        return Loaded(None, time.perf_counter() - t0,
                      f"cancelled after the {budget_s:.0f} s budget ({type(e.orig).__name__})")
    finally:
        if timer is not None:
            timer.cancel()
    return Loaded(gen_id, time.perf_counter() - t0)


def analyze(engine: Engine) -> float:
    """ANALYZE the grid tables (autovacuum would, a while after a load); seconds."""
    t0 = time.perf_counter()
    with engine.connect() as c:
        c.execute(text("ANALYZE grid_unit"))
        c.execute(text("ANALYZE grid_piece"))
        c.commit()
    return time.perf_counter() - t0


def validation_seconds(engine: Engine, gen_id: int, settings: Settings) -> dict[str, float]:
    """Seconds of each invariant check on an already loaded generation (read-only)."""
    out: dict[str, float] = {}
    params = {"g": gen_id, "srid": settings.metric_srid, "tol": settings.topology_tolerance_m2}
    with engine.connect() as c:
        for kind, sql in grids._CHECKS:
            t0 = time.perf_counter()
            c.execute(text(sql), params).all()
            out[kind] = time.perf_counter() - t0
        c.rollback()
    return out


def cities(cluster: Cluster, n_grids: int, prefix: str
           ) -> Iterator[tuple[str, list[UnitSpec], str]]:
    """The demo city, then (n_grids > 0) a megacity of n_grids grids, each built and given
    a new database of the cluster: (name, its units, the database's URL)."""
    from .report import log

    for name in ("demo", "megacity"):
        if name == "megacity" and not n_grids:
            continue
        log(f"{name}: building")
        specs = (songjiang_units() if name == "demo"
                 else build_city(megacity_source(n_grids=n_grids)))
        yield name, specs, create_database(cluster, f"{prefix}_{name}")
