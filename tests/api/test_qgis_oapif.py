"""QGIS's own OGC API Features provider (Debian's python3-qgis, headless) against a real
gridops server on a copy of the demo city. tests/support/qgis_probe.py runs under
/usr/bin/python3 (QGIS's interpreter) and reports what QGIS saw; this side compares it with
PostGIS and with the server's access log (the requests QGIS made, step by step)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import Engine, text

from layers.cluster import Cluster
from layers.db import make_engine
from tests.support.clusters import clone_full
from tests.support.servers import serving

QGIS_PYTHON = "/usr/bin/python3"
PROBE = Path(__file__).parents[1] / "support" / "qgis_probe.py"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"

ACTIVE_FINEST = ("FROM grid_unit u JOIN generation g ON g.active "
                 "WHERE u.level = 4 AND u.generation_low <= g.id AND "
                 "(u.generation_high IS NULL OR u.generation_high >= g.id)")
BOX = (121.20, 31.00, 121.25, 31.04)


def _qgis_missing() -> str | None:
    """Why QGIS cannot run here (None when it can)."""
    if not os.access(QGIS_PYTHON, os.X_OK):
        return f"{QGIS_PYTHON} is missing"
    r = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if r.returncode != 0:
        return (f"{QGIS_PYTHON} cannot import qgis.core (apt-get install python3-qgis "
                f"qgis-providers; `make test` does): {r.stderr.strip().splitlines()[-1:]}")
    return None


@pytest.fixture(scope="module")
def qgis_server(pg_cluster: Cluster, full_engine: Engine, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[str, Engine, Path]]:
    why = _qgis_missing()
    if why:
        pytest.skip(why)
    url = clone_full(pg_cluster, full_engine, "gridops_qgis")
    engine = make_engine(url)
    log = tmp_path_factory.mktemp("qgis-server") / "server.log"
    with serving(url, log, GRIDOPS_SCHEDULER_INTERVAL_S="0", GRIDOPS_ACCESS_LOG="1") as base:
        yield base, engine, log
    engine.dispose()


def _requests_by_step(log: Path) -> dict[str, list[str]]:
    """The access log's request targets (decoded), grouped by the probe's step markers."""
    steps: dict[str, list[str]] = {}
    current = "before"
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r'"(GET|POST|PUT|PATCH|DELETE|OPTIONS|HEAD) (\S+) HTTP/[\d.]+"', line)
        if not m:
            continue
        target = unquote(m.group(2))
        probe = re.match(r"/health\?probe=(\w+)", target)
        if probe:
            current = probe.group(1)
            continue
        steps.setdefault(current, []).append(f"{m.group(1)} {target}")
    return steps


def _items(reqs: list[str]) -> list[dict[str, list[str]]]:
    """The query parameters of each items request in a step."""
    return [parse_qs(urlsplit(r.split(" ", 1)[1]).query) for r in reqs
            if "/ogc/collections/" in r and "/items" in r]


def test_qgis_reads_the_grid(qgis_server: tuple[str, Engine, Path], tmp_path: Path) -> None:
    """Debian's QGIS loads grid-grid with PostGIS's count and extent, pages through every
    unit by next, pushes a rectangle to the server as bbox= (and a date-time comparison
    as datetime=), evaluates other expressions itself; EPSG:4490 is latitude first."""
    base, engine, log = qgis_server
    with engine.connect() as c:
        total = int(c.execute(text(f"SELECT count(*) {ACTIVE_FINEST}")).scalar_one())
        x0, y0, x1, y1 = c.execute(text(
            f"SELECT min(ST_XMin(u.geom)), min(ST_YMin(u.geom)), max(ST_XMax(u.geom)), "
            f"max(ST_YMax(u.geom)) {ACTIVE_FINEST}")).one()
        unit, street, ux, uy = c.execute(text(
            f"SELECT u.code, u.parent_code, ST_X(ST_Centroid(u.geom)), "
            f"ST_Y(ST_Centroid(u.geom)) {ACTIVE_FINEST} AND ST_Intersects(u.geom, "
            f"ST_MakeEnvelope(:a, :b, :c, :d, 4326)) ORDER BY u.code LIMIT 1"),
            dict(zip("abcd", BOX, strict=True))).one()
        all_codes = sorted(c.execute(text(f"SELECT u.code {ACTIVE_FINEST}")).scalars())
        in_street = sorted(c.execute(text(
            f"SELECT u.code {ACTIVE_FINEST} AND u.parent_code = :s"), {"s": street}).scalars())
        in_box = sorted(c.execute(text(
            f"SELECT u.code {ACTIVE_FINEST} AND ST_Intersects(u.geom, "
            f"ST_MakeEnvelope(:a, :b, :c, :d, 4326))"), dict(zip("abcd", BOX, strict=True)))
            .scalars())
        zone_times = sorted(c.execute(text(
            "SELECT DISTINCT valid_from FROM department_zone")).scalars())
        before = zone_times[len(zone_times) // 2]
        zones_before = sorted(c.execute(text(
            "SELECT DISTINCT layer || '~' || code FROM department_zone WHERE valid_from <= :t"),
            {"t": before}).scalars())

    profile = tmp_path / "qgis-home"
    profile.mkdir()
    cfg = {"base": base, "profile": str(profile / "profiles"), "unit": unit, "street": street,
           "bbox": list(BOX), "zones_before": before.isoformat().replace("+00:00", "Z")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QGIS", "PYTHON"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(profile),
               XDG_CONFIG_HOME=str(profile / ".config"), XDG_DATA_HOME=str(profile / ".local"),
               XDG_CACHE_HOME=str(profile / ".cache"), XDG_RUNTIME_DIR=str(profile / "run"))
    t0 = time.monotonic()
    r = subprocess.run([QGIS_PYTHON, "-X", "faulthandler", str(PROBE), json.dumps(cfg)],
                       capture_output=True, text=True, timeout=80, env=env)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    steps = _requests_by_step(log)
    print(json.dumps({"took_s": round(took, 1), "qgis": out["qgis"],
                      "requests": steps}, indent=1))
    version = tuple(int(n) for n in re.findall(r"\d+", out["qgis"])[:2])
    assert version >= (3, 22)
    # what each generation of the provider does, from its source: Debian's 3.22 line (flat
    # src/providers/wfs/qgsoapif*.cpp) and 3.32+ (src/providers/wfs/oapif/); versions in
    # between are only checked for the results
    old, new = version < (3, 24), version >= (3, 32)

    # 1. count (numberMatched), extent (the collection's bbox), CRS, every unit once
    plain = out["plain"]
    assert plain["valid"], plain["error"]
    assert plain["count"] == total == 1322
    assert all(abs(g - w) < 1e-6 for g, w in zip(plain["extent"], (x0, y0, x1, y1),
                                                   strict=True)), (plain["extent"], x0, y0, x1, y1)
    assert plain["crs"] == "EPSG:4326"  # CRS84's datum and units; x is the longitude
    assert "MultiPolygon" in plain["wkb"]
    assert sorted(plain["codes"]) == all_codes  # every unit once, none twice
    ux_q, uy_q = plain["unit_centroid"]
    assert abs(ux_q - ux) < 1e-6 and abs(uy_q - uy) < 1e-6
    pages = _items(steps["plain"])
    assert pages[0]["limit"] == ["10"]  # the provider's first look
    paged = [p for p in pages if p.get("limit") == ["1000"]]  # min(max(1000, default), max)
    assert len(paged) >= 2 and any("offset" in p or "after" in p for p in paged)  # next links
    if old:  # no OPTIONS/POST/PUT/PATCH/DELETE requests in this provider
        assert not any(plain["editing"].values()), plain["editing"]

    # 2. a subset string: the same units as SQL's condition
    sub = out["subset"]
    assert sub["set"] and sorted(sub["codes"]) == in_street and sub["count"] == len(in_street)
    filters = [p for p in _items(steps["subset"]) if "filter" in p]
    if old:  # 3.22 evaluates it itself: the server sees whole pages
        assert not filters and not any("parent_code" in p for p in _items(steps["subset"]))
    elif new:  # CQL2 text, the conformance classes being declared
        assert filters and all(f"'{street}'" in p["filter"][0] for p in filters)

    # 3. a rectangle: sent as bbox=, the units PostGIS's ST_Intersects finds
    assert sorted(out["bbox"]["codes"]) == in_box and 0 < len(in_box) < total
    boxes = [p["bbox"][0] for p in _items(steps["bbox"]) if "bbox" in p]
    assert boxes and all(list(map(float, b.split(","))) == list(BOX) for b in boxes)

    # 4./5. EPSG:4490: the server answers latitude first; QGIS's CRS says so, and the
    # unit, read back in x = longitude order, is where PostGIS puts it
    axis = out["axis"]
    assert axis["status"] == 200 and axis["inverted"] is True
    lat_r, lon_r = axis["raw_centroid"]
    assert abs(lat_r - uy) < 1e-6 and abs(lon_r - ux) < 1e-6
    assert abs(axis["swapped_centroid"][0] - ux) < 1e-6
    assert abs(axis["transformed_centroid"][0] - ux) < 1e-6  # CGCS2000 ~ WGS 84 here
    srs = out["srsname"]
    assert srs["valid"] and srs["count"] == total
    crs_params = [p.get("crs") for p in _items(steps["srsname"])]
    if old:  # no Part 2: srsname is ignored, everything stays CRS84
        assert srs["crs"] == "EPSG:4326" and crs_params and not any(crs_params)
    elif new:  # Part 2: the layer in EPSG:4490, asked with crs=, read back latitude first
        assert srs["crs"] == "EPSG:4490" and all(c == [EPSG + "4490"] for c in crs_params)
    assert abs(srs["unit_centroid"][0] - ux) < 1e-6 and abs(srs["unit_centroid"][1] - uy) < 1e-6

    # 6. a date-time comparison on a layer
    dt = out["datetime"]
    pushed = [p["datetime"] for p in _items(steps["datetime"]) if "datetime" in p]
    if old:  # the one comparison 3.22 pushes; 0000-01-01 is its open start
        assert pushed == [[f"0000-01-01T00:00:00Z/{cfg['zones_before']}"]]
    assert dt["valid"] and sorted(set(dt["ids"])) == zones_before and dt["count"] == len(dt["ids"])
    assert took < 90
