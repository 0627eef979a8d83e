"""Planners edit a draft of the demo city through the API: make it, replace a unit with
its ETag, split, merge, redraw an edge across two communities, move a grid to another
community; every accepted edit leaves the whole draft valid (the incremental check agrees
with the full report), a broken one is a 422 with its location and changes nothing, the
public keeps seeing the active grid, and each step is in the audit log."""

from __future__ import annotations

from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from shapely import LineString, box
from shapely.geometry import mapping, shape
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth import create_token


def _bearer(session: Session, name: str, role: str) -> dict[str, str]:
    _, secret = create_token(session, name, role)
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture()
def planner(session: Session, demo_loaded: int) -> dict[str, str]:
    return _bearer(session, "planner-wang", "planner")


@pytest.fixture()
def draft(client: TestClient, planner: dict[str, str]) -> int:
    r = client.post("/generations", json={"label": "2027 boundary review"}, headers=planner)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/generations/{r.json()['id']}"
    assert r.json()["state"] == "draft" and r.json()["created_by"] == "planner-wang"
    return int(r.json()["id"])


def _pair(session: Session, same_parent: bool) -> tuple[str, str]:
    """Two finest grids of the demo sharing an edge over 50 m, siblings or not."""
    op = "=" if same_parent else "<>"
    row = session.execute(text(f"""
        SELECT a.code AS a, b.code AS b FROM grid_unit a JOIN grid_unit b
          ON b.level = a.level AND b.code > a.code AND b.parent_code {op} a.parent_code
         AND a.geom && b.geom AND b.generation_high IS NULL
         WHERE a.level = 4 AND a.generation_high IS NULL
           AND ST_Length(ST_Transform(ST_Intersection(ST_Boundary(a.geom),
                         ST_Boundary(b.geom)), 4549)) > 50
         ORDER BY a.code, b.code LIMIT 1""")).one()
    return row.a, row.b


def _unit(client: TestClient, gen: int, code: str, headers: dict[str, str]) -> Any:
    r = client.get(f"/generations/{gen}/units/{code}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == r.json()["properties"]["etag"]
    return r


def _valid(client: TestClient, gen: int, headers: dict[str, str]) -> None:
    r = client.get(f"/generations/{gen}/validation", headers=headers)
    assert r.status_code == 200
    assert r.json()["features"] == [], r.json()["counts"]


def _cut(geom: Any) -> dict[str, Any]:
    """A north-south line through a point inside the polygon, beyond its box."""
    p = geom.representative_point()
    _, y0, _, y1 = geom.bounds
    return mapping(LineString([(p.x, y0 - 0.001), (p.x, y1 + 0.001)]))


def test_one_draft_at_a_time(client: TestClient, session: Session, draft: int) -> None:
    other = _bearer(session, "planner-li", "planner")
    r = client.post("/generations", json={}, headers=other)
    assert r.status_code == 409
    assert "planner-wang" in r.json()["detail"] and str(draft) in r.json()["detail"]
    r = client.post("/generations", json={"label": "x"})  # the admin test client
    assert r.status_code == 409


def test_edits_need_a_planner(client: TestClient, session: Session, draft: int) -> None:
    centre = _bearer(session, "centre", "centre")
    a, _ = _pair(session, True)
    assert client.post(f"/generations/{draft}/move", json={"code": a, "parent": a[:12]},
                       headers=centre).status_code == 403
    assert client.post("/generations", json={},
                       headers={"authorization": ""}).status_code == 401


def test_put_with_etag_and_the_second_planner_gets_409(
        client: TestClient, session: Session, planner: dict[str, str], draft: int) -> None:
    a, _ = _pair(session, True)
    got = _unit(client, draft, a, planner)
    tag = got.headers["etag"]
    feat = got.json()
    feat["properties"] = {"name": "新网格名", "leader_name": "王芳"}
    r = client.put(f"/generations/{draft}/units/{a}", json=feat, headers=planner)
    assert r.status_code == 428, r.text
    r = client.put(f"/generations/{draft}/units/{a}", json=feat,
                   headers={**planner, "if-match": tag})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == [a] and r.headers["etag"] != tag
    second = _bearer(session, "planner-li", "planner")
    feat["properties"] = {"name": "别的名字"}
    r = client.put(f"/generations/{draft}/units/{a}", json=feat,
                   headers={**second, "if-match": tag})
    assert r.status_code == 409 and r.json()["code"] == "stale_version"
    assert _unit(client, draft, a, planner).json()["properties"]["name"] == "新网格名"
    # the public sees the active grid's name
    assert client.get(f"/grids/{a}").json()["properties"]["name"] != "新网格名"


def test_split_merge_redraw_move_end_to_end(client: TestClient, session: Session,
                                            planner: dict[str, str], draft: int) -> None:
    a, _ = _pair(session, True)
    geom_a = shape(_unit(client, draft, a, planner).json()["geometry"])
    # split
    r = client.post(f"/generations/{draft}/split", json={"code": a, "line": _cut(geom_a)},
                    headers=planner)
    assert r.status_code == 200, r.text
    parts = r.json()["created"]
    assert r.json()["ended"] == [a] and len(parts) >= 2
    assert all(p[:12] == a[:12] and int(p[12:]) > int(a[12:]) for p in parts)
    assert r.json()["validation"]["ok"] and r.json()["validation"]["took_ms"] < 5000
    _valid(client, draft, planner)
    pt = shape(_unit(client, draft, parts[0], planner).json()["geometry"]
               ).representative_point()
    public = client.get("/resolve", params={"lon": pt.x, "lat": pt.y}, headers={})
    assert public.json()["grid"]["code"] == a  # the draft is invisible
    # merge the parts back, keeping none of their codes
    r = client.post(f"/generations/{draft}/merge", json={"codes": parts}, headers=planner)
    assert r.status_code == 200, r.text
    merged = r.json()["created"][0]
    assert shape(_unit(client, draft, merged, planner).json()["geometry"]).area == \
        pytest.approx(geom_a.area, rel=1e-9)
    # redraw an edge between two grids of different communities: both parents follow
    c, d = _pair(session, False)
    gc = shape(_unit(client, draft, c, planner).json()["geometry"])
    gd = shape(_unit(client, draft, d, planner).json()["geometry"])
    edge = shapely.intersection(gc.boundary, gd.boundary)
    mid = edge.interpolate(0.5, normalized=True)
    bite = box(mid.x - 0.0004, mid.y - 0.0004, mid.x + 0.0004, mid.y + 0.0004)
    new_c = shapely.union(gc, shapely.intersection(gd, bite))
    r = client.post(f"/generations/{draft}/redraw",
                    json={"codes": [c, d], "geometry": mapping(new_c)}, headers=planner)
    assert r.status_code == 200, r.text
    assert {c[:12], d[:12]} <= set(r.json()["parents_updated"])
    _valid(client, draft, planner)
    # move d to c's community: a new code under it, d's ends
    r = client.post(f"/generations/{draft}/move", json={"code": d, "parent": c[:12]},
                    headers=planner)
    assert r.status_code == 200, r.text
    moved = r.json()["created"][0]
    assert moved.startswith(c[:12]) and r.json()["ended"] == [d]
    _valid(client, draft, planner)
    # the audit log has every step, by whom
    events = client.get(f"/generations/{draft}/events", headers=planner).json()
    assert [e["action"] for e in events] == ["create", "split", "merge", "redraw", "move"]
    assert {e["actor"] for e in events} == {"planner-wang"}
    # the draft's counts changed, the active one's did not
    active = client.get("/generations").json()
    act = next(g for g in active if g["active"])
    dr = next(g for g in active if g["id"] == draft)
    assert dr["counts"]["grid"] == act["counts"]["grid"]  # split + merge: one for one


@pytest.mark.parametrize("how", ["grow", "shrink", "outside"])
def test_broken_edit_is_a_422_with_its_location(client: TestClient, session: Session,
                                                planner: dict[str, str], draft: int,
                                                how: str) -> None:
    a, _ = _pair(session, False)
    got = _unit(client, draft, a, planner)
    g = shape(got.json()["geometry"])
    if how == "grow":
        new = shapely.affinity.scale(g, 1.3, 1.3)
    elif how == "shrink":
        new = shapely.affinity.scale(g, 0.7, 0.7)
    else:  # far out of the district
        new = shapely.affinity.translate(g, 1.0, 0.0)
    feat = {"type": "Feature", "geometry": mapping(new), "properties": {}}
    r = client.put(f"/generations/{draft}/units/{a}", json=feat,
                   headers={**planner, "if-match": got.headers["etag"]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "grid_invariant_violated"
    kinds = {v["kind"] for v in body["violations"]}
    assert kinds & {"overlap", "sibling_overlap", "gap_in_parent", "outside_parent"}, kinds
    assert all(v["location"] is not None for v in body["violations"])
    assert body["problems"]["type"] == "FeatureCollection"
    # nothing changed
    again = _unit(client, draft, a, planner)
    assert again.headers["etag"] == got.headers["etag"]
    _valid(client, draft, planner)


def test_crs_and_dry_run(client: TestClient, session: Session, planner: dict[str, str],
                         draft: int) -> None:
    from spatial.coverage import to_metric

    a, _ = _pair(session, True)
    g = shape(_unit(client, draft, a, planner).json()["geometry"])
    line = shape(_cut(g))
    metric = to_metric([line], 4549)[0]
    r = client.post(f"/generations/{draft}/split?dry_run=true",
                    json={"code": a, "line": mapping(metric), "crs": "EPSG:4549"},
                    headers=planner)
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] and len(r.json()["created"]) >= 2
    assert all(u["etag"] is None for u in r.json()["units"].values())
    assert _unit(client, draft, a, planner).status_code == 200  # still there
    assert [e["action"] for e in client.get(f"/generations/{draft}/events",
                                            headers=planner).json()] == ["create"]
    r = client.post(f"/generations/{draft}/split", json={"code": a, "line": mapping(line),
                                                         "crs": "EPSG:4549"},
                    headers=planner)
    assert r.status_code == 422 and "EPSG:4549" in r.text  # lon/lat given as metres


def test_the_public_does_not_see_a_draft_in_the_listing(
        client: TestClient, planner: dict[str, str], draft: int) -> None:
    public = {"authorization": ""}
    listed = [g["id"] for g in client.get("/generations", headers=public).json()]
    assert draft not in listed and listed  # the active generation is listed
    r = client.get(f"/generations/{draft}", headers=public)
    assert r.status_code == 404 and r.json()["detail"] == f"generation {draft} is not published"
    assert client.get(f"/generations/{draft + 1000}", headers=public).json()["detail"] == \
        f"generation {draft + 1000} is not published"
    assert draft in [g["id"] for g in client.get("/generations", headers=planner).json()]
    assert client.get(f"/generations/{draft}", headers=planner).json()["state"] == "draft"
