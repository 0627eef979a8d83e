"""A grid's KPIs and case history by lineage over a period that spans a boundary change
(real PostGIS): a year of cases on the demo city, one grid split in two (new codes) and
the draft activated, new reports in both halves after it; ?lineage=true next to the grid
code counts the grid and its successors (or a half and its predecessor), as SQL over
the stored grid codes says; without it nothing changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth import create_token
from layers.settings import Settings
from tests.api.test_activation import Split, bind_registries, make_split


def _h(session: Session, role: str) -> dict[str, str]:
    _, secret = create_token(session, f"lineage-kpis-{role}", role)
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture()
def changed(history_client: TestClient, history_session: Session, settings: Settings
            ) -> tuple[TestClient, Split, dict[str, Any]]:
    """History, the split activated (open cases kept), then one report in each half."""
    s = history_session
    split = make_split(s, settings)
    c = history_client
    bind_registries(c, s, settings)
    r = c.post(f"/generations/{split.draft}/activate", json={"confirm_unpatrolled": True},
               headers=_h(s, "planner"))
    assert r.status_code == 200, r.text
    bind_registries(c, s, settings)  # the workers' index after the NOTIFY
    centre = _h(s, "centre")
    for k, (code, category) in enumerate(zip(split.halves, ("E0501", "E0103"), strict=True)):
        lon, lat = s.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grid_unit "
            "WHERE code = :c) x"), {"c": code}).one()
        r = c.post("/cases", json={"channel": "patrol_app", "category": category,
                                   "lon": lon, "lat": lat,
                                   "description": f"after the split, half {k + 1}"},
                   headers=centre)
        assert r.status_code == 201, r.text
        assert r.json()["grid"] == code
    now = datetime.now(UTC)
    period = {"since": (now - timedelta(days=400)).isoformat(),
              "until": (now + timedelta(days=1)).isoformat()}
    return c, split, {"period": period, "centre": centre}


def _count(session: Session, codes: list[str]) -> int:
    return int(session.scalar(text('SELECT count(*) FROM "case" WHERE grid_code = ANY(:c)'),
                              {"c": codes}) or 0)


def test_kpis_by_lineage_span_the_split(changed: tuple[TestClient, Split, dict[str, Any]],
                                        history_session: Session) -> None:
    c, split, ctx = changed
    s = history_session
    old = split.grid
    h1, h2 = split.halves
    every = sorted([old, h1, h2])
    assert _count(s, [old]) and _count(s, [h1]) and _count(s, [h2])
    q = {"unit": "grid", **ctx["period"]}

    def kpis(**kw: Any) -> dict[str, Any]:
        r = c.get("/kpis", params={**q, **kw}, headers=ctx["centre"])
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    # the split grid's lineage: its own cases and both halves', one row under its code
    body = kpis(grid=old, lineage="true")
    assert body["lineage"] == {"code": old, "codes": every}
    (row,) = body["rows"]
    assert row["code"] == old and row["name"]
    assert row["reported"] == _count(s, every)
    # a half's lineage: the half and its predecessor
    body = kpis(grid=h1, lineage="true")
    assert body["lineage"]["codes"] == sorted([old, h1])
    (row,) = body["rows"]
    assert row["code"] == h1 and row["reported"] == _count(s, [old, h1])
    # without lineage: the code alone; without a grid: the table as before
    (row,) = kpis(grid=old)["rows"]
    assert row["reported"] == _count(s, [old]) and "lineage" not in kpis(grid=old)
    whole = {r["code"]: r for r in kpis()["rows"]}
    assert {old, h1, h2} <= set(whole) and whole[old]["reported"] == _count(s, [old])
    # monthly: one row a month, summing to the whole
    months = kpis(grid=old, lineage="true", monthly="true")["rows"]
    assert {r["code"] for r in months} == {old} and len(months) > 1
    assert sum(r["reported"] for r in months) == _count(s, every)
    # other units narrowed to the lineage's cases
    (centre_row,) = kpis(unit="centre", grid=old, lineage="true")["rows"]
    assert centre_row["reported"] == _count(s, every)
    street = s.scalar(text('SELECT street_code FROM "case" WHERE grid_code = :c LIMIT 1'),
                      {"c": h1})
    streets = {r["code"]: r for r in kpis(unit="street", grid=old, lineage="true")["rows"]}
    assert sum(r["reported"] for r in streets.values()) == _count(s, every)
    assert street in streets
    # CSV has the same row
    r = c.get("/kpis", params={**q, "grid": old, "lineage": "true", "format": "csv"},
              headers=ctx["centre"])
    assert r.status_code == 200 and f",{old}," in r.text
    # lineage needs a code
    r = c.get("/kpis", params={**q, "lineage": "true"}, headers=ctx["centre"])
    assert r.status_code == 422 and "lineage" in r.json()["detail"]


def test_case_history_by_lineage(changed: tuple[TestClient, Split, dict[str, Any]],
                                 history_session: Session) -> None:
    c, split, ctx = changed
    s = history_session
    old = split.grid
    h1, h2 = split.halves

    def listed(**kw: Any) -> dict[str, Any]:
        r = c.get("/cases", params={"limit": 1000, **kw}, headers=ctx["centre"])
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    body = listed(grid=old, lineage="true")
    assert body["numberMatched"] == _count(s, [old, h1, h2])
    codes = {i["grid"] for i in body["items"]}
    assert codes == {old, h1, h2}
    assert listed(grid=old)["numberMatched"] == _count(s, [old])
    assert listed(grid=h2, lineage="true")["numberMatched"] == _count(s, [old, h2])
    # newest first: the reports made after the split lead
    first = body["items"][0]
    assert first["grid"] in (h1, h2)
    r = c.get("/cases", params={"lineage": "true"}, headers=ctx["centre"])
    assert r.status_code == 422 and "grid" in r.json()["detail"]
