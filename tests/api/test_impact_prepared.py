"""A real worker (listener on) computes the active generation's alignment with every
department's zones in the background at start-up, and again after an activation, so the
first impact preview a planner asks for is warm."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.app import create_app
from layers import grids, impact
from layers.cluster import Cluster
from layers.db import make_engine
from layers.lookup import zone_departments
from layers.settings import Settings
from tests.support.clusters import clone_full


def _prepared(url: str, gen: int) -> set[str]:
    return {k[1] for k in list(impact._ALIGNED) if k[0] == url and k[2] == gen}


def _wait_prepared() -> None:
    """Until no preparation thread runs."""
    deadline = time.monotonic() + 60
    while any(t.name == "gridops-impact-prepare" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the preparation did not end"
        time.sleep(0.05)


def test_alignment_is_ready_after_start_up(pg_cluster: Cluster, full_engine: Engine,
                                           settings: Settings) -> None:
    url = clone_full(pg_cluster, full_engine, "gridops_prepare")
    eng = make_engine(url)
    key = eng.url.render_as_string()
    live = settings.model_copy(update={"database_url": url, "scheduler_interval_s": 0,
                                       "jobs_worker": False})
    try:
        with Session(eng) as s:
            gen = grids.active_generation(s)
            assert gen is not None
            depts = set(zone_departments(s, datetime.now(UTC)))
        assert depts, "the demo city has department zones"
        impact._ALIGNED.clear()
        with TestClient(create_app(live, listen=True)) as c:
            _wait_prepared()
            assert _prepared(key, gen.id) == depts
            with Session(eng) as s, s.begin():  # the same grid as a new generation
                new = grids.load_generation(s, grids.generation_units(s, gen.id), live,
                                            label="copy").id
            deadline = time.monotonic() + 60  # NOTIFY, the swap, then the preparation
            while _prepared(key, new) != depts:
                assert time.monotonic() < deadline, _prepared(key, new)
                time.sleep(0.05)
            assert c.get("/health").status_code == 200
    finally:
        eng.dispose()
