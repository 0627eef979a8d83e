"""A throw-away PostgreSQL cluster from the machine's binaries, on a free port, in a
directory the postgres user can enter (when the tests run as root)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from layers.cluster import Cluster, find_bindir
from layers.db import make_engine


@contextmanager
def throwaway_cluster(prefix: str = "gridops-test-") -> Iterator[Cluster]:
    """Started on entry, destroyed (data and all) on exit."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("GRIDOPS_TEST_TMP")))
    os.chmod(base, 0o755)  # the postgres user must enter it when we are root
    cluster = Cluster(datadir=base / "pgdata", bindir=find_bindir(), preferred_port=0)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def clone_full(pg_cluster: Cluster, full_engine: Engine, name: str) -> str:
    """A new database copied from the full demo city (a file copy: ~1 s against ~20 s to
    load it); its URL."""
    full_engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template to be idle
    admin = make_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = 'gridops_full' AND pid <> pg_backend_pid()"))
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE gridops_full"))
    admin.dispose()
    return pg_cluster.url().rsplit("/", 1)[0] + "/" + name
