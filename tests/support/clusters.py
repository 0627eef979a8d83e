"""A throw-away PostgreSQL cluster from the machine's binaries, on a free port, in a
directory the postgres user can enter (when the tests run as root)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from layers.cluster import Cluster, find_bindir


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
