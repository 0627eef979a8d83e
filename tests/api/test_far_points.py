"""Points anywhere on Earth are answered, not failed: far from the deployment the metric
CRS breaks, so the owner search and the nearest grid work without it (geodesic)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from layers.auth import create_token

FAR = [(-100.0, 40.0), (0.0, 0.0), (179.99, -16.5), (-179.99, 65.0), (2.35, 48.85),
       (121.47, -31.23), (60.0, 10.0), (0.0, 89.99), (0.0, -89.99)]


@pytest.mark.parametrize(("lon", "lat"), FAR)
def test_far_points_are_answered_everywhere(full_client: TestClient, full_session: Session,
                                            lon: float, lat: float) -> None:
    r = full_client.get("/owner", params={"lon": lon, "lat": lat, "category": "C0101"})
    assert r.status_code == 200, r.text
    assert r.json()["inside"] is False
    r = full_client.get("/lookup", params={"lon": lon, "lat": lat})
    assert r.status_code == 200, r.text
    r = full_client.get("/resolve", params={"lon": lon, "lat": lat})
    near = r.json()["nearest"]
    assert r.status_code == 200 and near["code"].startswith("310117")
    # Songjiang is at least 1,000 km away from every one of these points
    assert near["distance_m"] > 1_000_000
    _, secret = create_token(full_session, "far-centre", "centre")
    r = full_client.post("/cases", json={"channel": "hotline_12345", "category": "C0101",
                                          "lon": lon, "lat": lat, "description": "far away"},
                         headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["resolution"]["chain"] == [] and case["resolution"]["nearest"]["code"]
    r = full_client.post("/open311/v2/requests.json",
                         data={"service_code": "C0101", "long": lon, "lat": lat,
                               "description": "far away"})
    assert r.status_code in (200, 201), r.text


def test_the_antipode_distance_is_half_the_earth(full_client: TestClient) -> None:
    r = full_client.get("/resolve", params={"lon": 121.23 - 180, "lat": -31.03}).json()
    assert 19_900_000 < r["nearest"]["distance_m"] < 20_050_000
