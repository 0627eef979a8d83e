"""`gridops generations ...` as a planner runs it: every change is a dry run unless
--commit; a draft made, a grid split by a WKT line, the audit log, the whole validation,
a discard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.orm import Session

from layers import grids
from layers.db import make_engine, upgrade
from layers.settings import Settings
from tests.support.tinycity import X0, Y0, D, tiny_city

GRIDOPS = [sys.executable, "-m", "etl.cli", "generations"]


def test_draft_split_dry_run_then_commit(scratch_db: str, tmp_path: Path) -> None:
    upgrade(scratch_db)
    settings = Settings(database_url=scratch_db)
    eng = make_engine(scratch_db)
    with Session(eng) as s, s.begin():
        grids.sync_levels(s, settings)
        grids.load_generation(s, tiny_city(), settings, label="tiny")
    eng.dispose()
    env = {**os.environ, "GRIDOPS_DATABASE_URL": scratch_db, "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GRIDOPS, *args], capture_output=True, text=True, env=env,
                              timeout=300, check=False)

    r = run("create", "--label", "review", "--actor", "planner-zhao")
    assert r.returncode == 0, r.stderr
    assert "draft generation 2" in r.stdout and "dry run" in r.stderr
    assert "draft" not in run("list").stdout  # nothing kept
    r = run("create", "--label", "review", "--actor", "planner-zhao", "--commit")
    assert r.returncode == 0 and "draft generation" in r.stdout, r.stderr
    gen = r.stdout.split("draft generation ")[1].split()[0]
    line = f"LINESTRING ({X0 + D / 2} {Y0 + D / 2 - 0.001}, {X0 + D / 2} {Y0 + D + 0.001})"
    r = run("split", gen, "319999001001001", "--line", line)
    assert r.returncode == 0, r.stderr
    assert "created: 319999001001003, 319999001001004" in r.stdout and "dry run" in r.stderr
    r = run("split", gen, "319999001001001", "--line", line, "--commit",
            "--actor", "planner-zhao")
    assert r.returncode == 0 and "valid (" in r.stdout, r.stderr
    r = run("validate", gen)
    assert r.returncode == 0 and "0 violation(s)" in r.stdout, r.stdout + r.stderr
    r = run("events", gen)
    assert "planner-zhao" in r.stdout and "split" in r.stdout and "create" in r.stdout
    # a broken edit: refused with where, exit 1
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", '
                   f'"coordinates": [[[{X0}, {Y0}], [{X0 + D}, {Y0}], [{X0 + D}, '
                   f'{Y0 + 0.3 * D}], [{X0}, {Y0 + 0.3 * D}], [{X0}, {Y0}]]]}}}}',
                   encoding="utf-8")
    r = run("put", gen, "319999001001002", str(bad), "--commit")
    assert r.returncode == 1 and "gap_in_parent" in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr
    r = run("list")
    assert "draft  review by planner-zhao from 1" in r.stdout, r.stdout
    r = run("discard", gen, "--commit")
    assert r.returncode == 0 and "discarded" in r.stdout, r.stderr
    assert "draft" not in run("list").stdout
