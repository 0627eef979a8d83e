"""GET /generations/{id}/impact and GET /grids/{code}/lineage through the API on the demo
city (real PostGIS): who may ask, the statuses the document declares, bodies in the shape
of their models (no key a model leaves out), and a draft's lineage invisible to the public
until it is activated."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.schemas.common import ErrorOut
from api.schemas.planning import ImpactOut, LineageOut
from layers import grids, impact, lineage
from layers.auth import create_token
from layers.settings import Settings
from tests.layers.test_lineage import DemoDraft, demo_draft


def _token(session: Session, role: str) -> dict[str, str]:
    _, secret = create_token(session, f"impact-test-{role}", role,
                             department="CGZF" if role == "department" else None)
    return {"authorization": f"Bearer {secret}"}


def _same_keys(model: Any, body: Any, where: str = "body") -> None:
    """Every key of the answer is one its model declares (recursively)."""
    if isinstance(body, dict):
        dumped = model if isinstance(model, dict) else None
        if isinstance(model, BaseModel):
            extra = model.model_extra or {}
            dumped = model.model_dump(by_alias=True)
            keys = set(type(model).model_fields) | {
                f.alias for f in type(model).model_fields.values() if f.alias} | set(extra)
            assert set(body) <= keys, (where, set(body) - keys)
            for k, v in body.items():
                name = next((n for n, f in type(model).model_fields.items()
                             if (f.alias or n) == k), k)
                _same_keys(getattr(model, name, dumped.get(k) if dumped else None), v,
                           f"{where}.{k}")
    elif isinstance(body, list) and isinstance(model, list):
        for i, (m, b) in enumerate(zip(model, body, strict=True)):
            _same_keys(m, b, f"{where}[{i}]")


@pytest.fixture()
def demo(full_session: Session, settings: Settings) -> DemoDraft:
    return demo_draft(full_session, settings)


def test_impact_answers_planners_and_the_centre(full_client: TestClient,
                                                full_session: Session, settings: Settings,
                                                demo: DemoDraft) -> None:
    c, s = full_client, full_session
    url = f"/generations/{demo.draft.id}/impact"
    r = c.get(url, headers=_token(s, "planner"))
    assert r.status_code == 200, r.text[:400]
    body = r.json()
    _same_keys(ImpactOut.model_validate(body), body)
    assert body["generation"] == demo.draft.id and body["against"] == demo.active
    direct = impact.impact(s, demo.draft.id, settings)
    for k in ("summary", "units", "cases", "assets", "patrol", "roles", "alignment",
              "streets"):
        assert body[k] == direct[k], k
    assert len(body["changes"]["features"]) == len(direct["changes"]["features"])
    assert c.get(url, headers=_token(s, "centre")).status_code == 200

    for who, status in ((None, 401), ("department", 403), ("patrol", 403)):
        r = c.get(url, headers=_token(s, who) if who else {})
        assert r.status_code == status, (who, r.text[:200])
        ErrorOut.model_validate(r.json())
    planner = _token(s, "planner")
    r = c.get("/generations/2000000000/impact", headers=planner)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = c.get(f"/generations/{demo.active}/impact", headers=planner)
    assert r.status_code == 409 and "not a draft" in r.json()["detail"]
    assert c.get("/generations/0/impact", headers=planner).status_code == 422


def test_lineage_is_public_for_activated_generations_only(
        full_client: TestClient, full_session: Session, settings: Settings,
        demo: DemoDraft) -> None:
    c, s = full_client, full_session
    west, east = demo.halves
    lineage.record(s, demo.draft.id, settings)  # even written early, a draft's stays hidden
    r = c.get(f"/grids/{demo.split}/lineage")
    assert r.status_code == 200
    body = r.json()
    _same_keys(LineageOut.model_validate(body), body)
    assert body["successors"] == [] and body["codes"] == [demo.split]
    assert c.get(f"/grids/{west}/lineage").status_code == 404
    assert c.get("/grids/abc/lineage").status_code == 422

    grids.activate_generation(s, demo.draft, settings)
    lineage.record(s, demo.draft.id, settings)
    body = c.get(f"/grids/{demo.split}/lineage").json()
    _same_keys(LineageOut.model_validate(body), body)
    assert {st["to"]["code"] for st in body["successors"]} == {west, east}
    assert all(st["kind"] == "split" and st["generation"] == demo.draft.id
               for st in body["successors"])
    body = c.get(f"/grids/{east}/lineage").json()
    assert [st["from"]["code"] for st in body["predecessors"]] == [demo.split]
    assert body["codes"] == sorted([east, demo.split])
    keep, gone = demo.merged
    body = c.get(f"/grids/{keep}/lineage").json()
    assert {(st["from"]["code"], st["kind"]) for st in body["predecessors"]} == {
        (keep, "merge"), (gone, "merge")}
    assert [v["generation_low"] for v in body["versions"]] == [demo.active, demo.draft.id]
    assert body["versions"][0]["generation_high"] == demo.active
