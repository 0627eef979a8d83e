"""The gridops command end to end: an embedded cluster of its own, its URL in psql."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from layers.cluster import ClusterError, check_postgis

GRIDOPS = [sys.executable, "-m", "etl.cli"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDOPS, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_embedded_cluster_lifecycle_and_psql() -> None:
    home = Path(tempfile.mkdtemp(prefix="gridops-cli-"))
    os.chmod(home, 0o755)
    env = {k: v for k, v in os.environ.items() if k != "GRIDOPS_DATABASE_URL"}
    env.update(GRIDOPS_HOME=str(home / "h"), GRIDOPS_DB_PORT="0")
    try:
        st = run("db", "status", env=env)
        assert st.returncode == 3 and "not created yet" in st.stdout
        up = run("db", "upgrade", env=env)
        assert up.returncode == 0, up.stderr
        st = run("db", "status", env=env)
        assert st.returncode == 0 and "running on 127.0.0.1:" in st.stdout
        url = run("db", "url", env=env).stdout.strip()
        assert url.startswith("postgresql://gridops:")
        psql = shutil.which("psql")
        assert psql, "psql is installed with PostgreSQL"
        out = subprocess.run([psql, url, "-Atc", "SELECT postgis_lib_version(), "
                              "(SELECT count(*) FROM grid_level)"],
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith("|4")
        assert "stopped" in run("db", "stop", env=env).stdout
        assert run("db", "status", env=env).returncode == 3
    finally:
        run("db", "stop", env=env)
        shutil.rmtree(home, ignore_errors=True)


def test_external_database_is_not_managed(settings) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, GRIDOPS_DATABASE_URL=settings.database_url)
    r = run("db", "start", env=env)
    assert r.returncode == 1 and "GRIDOPS_DATABASE_URL is set" in r.stderr
    assert run("db", "url", env=env).stdout.strip() == settings.database_url


def test_missing_postgis_names_the_package(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    with pytest.raises(ClusterError, match="postgresql-15-postgis-3"):
        check_postgis(tmp_path / "bin")
