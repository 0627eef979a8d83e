"""Grid staff are not public: anonymous callers collect no personal phone and no role
holder or patrol member from any way out; staff tokens see them all; a deployment may post
the grid leader's service number (GRIDOPS_PUBLIC_STAFF=leader_phone)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth import create_token

MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
P = (121.2277, 31.0322)


@pytest.fixture()
def grid_code(full_client: TestClient) -> str:
    return full_client.get("/resolve", params={"lon": P[0], "lat": P[1]}).json()["grid"]["code"]


def _urls(grid: str) -> list[str]:
    return ["/layers/roles?limit=500", "/layers/teams?limit=500",
            "/grids?level=grid&limit=500", f"/grids/{grid}", f"/grids/{grid}/history",
            f"/owner?lon={P[0]}&lat={P[1]}&category=C0101",
            f"/owner?lon={P[0]}&lat={P[1]}&category=E0501",
            f"/lookup?lon={P[0]}&lat={P[1]}", f"/map/grid/{grid}",
            f"/map/lookup?lon={P[0]}&lat={P[1]}"]


def _phones(client: TestClient, grid: str, headers: dict[str, str] | None = None) -> set[str]:
    found: set[str] = set()
    for url in _urls(grid):
        r = client.get(url, headers=headers or {})
        assert r.status_code == 200, (url, r.text[:300])
        found |= set(MOBILE.findall(r.text))
    return found


@pytest.fixture()
def staff(full_session: Session) -> Iterator[dict[str, str]]:
    _, secret = create_token(full_session, "privacy-patrol", "patrol")
    yield {"authorization": f"Bearer {secret}"}


def test_the_public_collects_no_staff_phone(full_client: TestClient, full_session: Session,
                                            grid_code: str, staff: dict[str, str]) -> None:
    people = {r.phone for r in full_session.execute(text(
        "SELECT phone FROM grid_role WHERE phone IS NOT NULL UNION "
        "SELECT leader_phone FROM grid_unit WHERE leader_phone IS NOT NULL"))}
    assert people, "the demo has staff with phones"
    seen_by_staff = _phones(full_client, grid_code, staff)
    assert seen_by_staff & people  # staff see them
    assert not _phones(full_client, grid_code) & people  # the public sees none


def test_role_holders_and_patrol_members_are_for_staff(full_client: TestClient,
                                                      staff: dict[str, str]) -> None:
    roles = full_client.get("/layers/roles?limit=50").json()["items"]
    assert roles and all(r["name"] is None and r["phone"] is None for r in roles)
    assert any(r["name"] for r in full_client.get("/layers/roles?limit=50",
                                                  headers=staff).json()["items"])
    teams = full_client.get("/layers/teams?limit=50").json()["items"]
    assert teams and all(t["members"] == [] for t in teams)
    owner = full_client.get("/owner", params={"lon": P[0], "lat": P[1],
                                              "category": "E0501"}).json()
    assert all(p["members"] == [] for p in owner["patrol"])
    lead = owner["grid_leader"]
    assert lead is None or (lead["name"] and lead["phone"] is None)


def test_a_deployment_may_post_the_leaders_service_number(full_client: TestClient,
                                                         grid_code: str) -> None:
    settings = full_client.app.state.services.settings  # type: ignore[attr-defined]
    settings.public_staff = "leader_phone"
    try:
        lead = full_client.get(f"/grids/{grid_code}").json()["properties"]["leader"]
        assert lead["name"] and lead["phone"]
        settings.public_staff = "none"
        assert full_client.get(f"/grids/{grid_code}").json()["properties"]["leader"] is None
    finally:
        settings.public_staff = "leader"
