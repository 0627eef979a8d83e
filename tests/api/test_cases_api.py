"""The case loop over HTTP on the demo city: intake, idempotency, duplicates, outside
reports, the full loop, bounces, illegal and stale actions, who sees what."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.auth import create_token
from layers.models import Case

P = (121.2277, 31.0322)


@pytest.fixture()
def tokens(full_session: Session) -> Iterator[dict[str, dict[str, str]]]:
    def h(role: str, dept: str | None = None) -> dict[str, str]:
        _, secret = create_token(full_session, f"test-{role}-{dept}", role, dept)
        return {"authorization": f"Bearer {secret}"}

    yield {"centre": h("centre"), "patrol": h("patrol"), "cgzf": h("department", "CGZF"),
           "psb": h("department", "PSB")}


def _report(client: TestClient, headers: dict[str, str], **kw: object):  # type: ignore[no-untyped-def]
    body = {"channel": "patrol_app", "category": "E0501", "lon": P[0], "lat": P[1],
            "description": "无照经营游商 at the market gate",
            "reporter": {"name": "张三", "phone": "13912345678"}} | kw
    return client.post("/cases", json=body, headers=headers)


def _act(client: TestClient, ref: str, headers: dict[str, str], action: str,
         **kw: object):  # type: ignore[no-untyped-def]
    version = client.get(f"/cases/{ref}", headers=headers).json()["version"]
    return client.post(f"/cases/{ref}/actions",
                       json={"action": action, "version": version, **kw}, headers=headers)


def test_intake_resolves_and_keeps_the_answer(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    assert _report(full_client, {}).status_code == 401
    r = _report(full_client, tokens["patrol"])
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["status"] == "collected" and c["inside"] and len(c["grid"]) == 15
    assert c["department"] == "CGZF"
    res = c["resolution"]
    assert [u["level"] for u in res["chain"]] == [1, 2, 3, 4]
    assert res["owner"]["trail"] and res["owner"]["decided_by"] == "category"
    assert res["crs"]["key"] == "EPSG:4326" and res["generation"] >= 1
    assert "reporter" not in c and "rating_code" not in c  # not the patrol's to see
    full = full_client.get(f"/cases/{c['ref']}", headers=tokens["centre"]).json()
    assert full["reporter"]["phone"] == "13912345678"
    assert len(full["rating_code"]) == 8  # for the centre to give the reporter
    listed = full_client.get("/cases", headers=tokens["centre"]).json()["items"]
    assert all("rating_code" not in x and "reporter" not in x for x in listed)


def test_bad_reports_are_precise_4xx(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    r = _report(full_client, tokens["patrol"], category="Z9999")
    assert r.status_code == 422 and "Z9999" in r.json()["detail"]
    r = _report(full_client, tokens["patrol"], lon=None)
    assert r.status_code == 422 and "location" in r.json()["detail"]
    r = _report(full_client, tokens["patrol"], channel="pigeon")
    assert r.status_code == 422 and "pigeon" in r.json()["detail"]
    r = _report(full_client, tokens["patrol"], lat=95)
    assert r.status_code == 422 and "lat" in r.json()["detail"]
    r = _report(full_client, tokens["cgzf"])
    assert r.status_code == 403


def test_idempotency_and_duplicates(full_client: TestClient, tokens,
                                    full_session: Session) -> None:  # type: ignore[no-untyped-def]
    key = {"idempotency-key": "app-42-retry"}
    a = _report(full_client, tokens["patrol"] | key).json()
    n = full_session.scalar(select(func.count()).select_from(Case))
    b = _report(full_client, tokens["patrol"] | key)
    assert b.status_code == 200 and b.json()["ref"] == a["ref"]
    assert full_session.scalar(select(func.count()).select_from(Case)) == n
    # the same key for another report: the caller's mistake, named; nothing stored
    e = _report(full_client, tokens["patrol"] | key, category="E0101")
    assert e.status_code == 422 and a["ref"] in e.json()["detail"]
    assert "category" in e.json()["detail"] and "app-42-retry" in e.json()["detail"]
    assert full_session.scalar(select(func.count()).select_from(Case)) == n
    # the same problem, 10 m away, reported by a hotline: joins the open case
    d = _report(full_client, tokens["centre"], channel="hotline_12345", lon=P[0] + 1e-4).json()
    # the original named by its public reference (never by a database id), everywhere
    assert d["status"] == "merged" and d["duplicate_of"] == a["ref"]
    assert full_client.get(f"/cases/{d['ref']}", headers=tokens["centre"]).json()[
        "duplicate_of"] == a["ref"]
    listed = full_client.get("/cases", params={"status": "merged"},
                             headers=tokens["centre"]).json()["items"]
    assert next(x for x in listed if x["ref"] == d["ref"])["duplicate_of"] == a["ref"]
    first = full_client.get(f"/cases/{a['ref']}", headers=tokens["centre"]).json()
    assert first["reporters"] == 2 and first["duplicate_of"] is None
    ev = full_client.get(f"/cases/{a['ref']}/events", headers=tokens["centre"]).json()
    assert [e["action"] for e in ev["events"]] == ["report", "reporter_added"]
    # another category at the same spot is another case
    other = _report(full_client, tokens["patrol"], category="E0101").json()
    assert other["status"] == "collected"
    # the worker's intake counters on /health: three new cases, one replay, nothing lost
    intake = full_client.get("/health").json()["intake"]
    assert (intake["stored"], intake["replayed"], intake["failed"]) == (3, 1, 1)
    assert intake["running"] and intake["queued"] == 0 and intake["batches"] >= 1
    assert intake["largest_batch"] >= 1 and intake["last_batch_at"] > 0


def test_outside_every_grid_is_kept_and_flagged(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    c = _report(full_client, tokens["patrol"], lon=121.6, lat=31.2).json()
    assert c["inside"] is False and c["grid"] is None and c["status"] == "collected"
    assert c["resolution"]["nearest"]["distance_m"] > 1000
    ev = full_client.get(f"/cases/{c['ref']}/events", headers=tokens["centre"]).json()
    assert "flag" in [e["action"] for e in ev["events"]]
    listed = full_client.get("/cases", params={"status": "collected"},
                             headers=tokens["centre"]).json()["items"]
    assert c["ref"] in [x["ref"] for x in listed]


def test_the_whole_loop(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    ref = _report(full_client, tokens["patrol"]).json()["ref"]
    c, d = tokens["centre"], tokens["cgzf"]
    assert _act(full_client, ref, c, "accept").json()["status"] == "accepted"
    disp = _act(full_client, ref, c, "dispatch").json()
    assert disp["status"] == "dispatched" and disp["deadline_at"]
    # the department bounces it ("not ours"), needs a reason, the centre re-dispatches
    assert _act(full_client, ref, d, "bounce").status_code == 422
    assert _act(full_client, ref, d, "bounce", note="not ours: PSB").json()["status"] == "bounced"
    again = _act(full_client, ref, c, "dispatch", data={"department": "PSB"}).json()
    assert again["department"] == "PSB"
    # CGZF no longer sees it; PSB does
    assert full_client.get(f"/cases/{ref}", headers=d).status_code == 404
    p = tokens["psb"]
    assert _act(full_client, ref, p, "take").json()["status"] == "in_progress"
    ext = _act(full_client, ref, c, "extend", data={"hours": 24}).json()
    assert ext["deadline_at"] > again["deadline_at"]
    assert _act(full_client, ref, p, "feedback", note="vendor moved on").json()[
        "status"] == "feedback"
    assert _act(full_client, ref, tokens["patrol"], "reopen", note="still there").json()[
        "status"] == "in_progress"
    _act(full_client, ref, p, "feedback", note="done")
    closed = _act(full_client, ref, tokens["patrol"], "verify", note="checked on site").json()
    assert closed["status"] == "closed" and closed["closed_at"]
    pub = full_client.get(f"/public/cases/{ref}").json()
    assert pub["can_rate"] and "reporter" not in pub and "description" not in pub
    # the reference is public (Open311 lists it); rating needs the reporter's code too
    code = full_client.get(f"/cases/{ref}", headers=c).json()["rating_code"]
    rate = f"/public/cases/{ref}/rating"
    assert full_client.post(rate, json={"satisfaction": 1}).status_code == 422
    wrong = full_client.post(rate, json={"satisfaction": 1, "code": "AAAAAAAA"})
    assert wrong.status_code == 403 and ref in wrong.json()["detail"]
    assert full_client.get(f"/public/cases/{ref}").json()["status"] == "closed"
    rated = full_client.post(rate, json={"satisfaction": 5, "code": code.lower()}).json()
    assert rated["status"] == "evaluated" and rated["satisfaction"] == 5
    events = full_client.get(f"/cases/{ref}/events", headers=c).json()["events"]
    assert [e["action"] for e in events] == [
        "report", "accept", "dispatch", "bounce", "dispatch", "take", "extend", "feedback",
        "reopen", "feedback", "verify", "evaluate"]
    assert events[3]["role"] == "department" and events[3]["note"] == "not ours: PSB"


def test_illegal_stale_and_forbidden(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    ref = _report(full_client, tokens["patrol"]).json()["ref"]
    c = tokens["centre"]
    r = _act(full_client, ref, c, "verify")
    assert r.status_code == 409
    assert set(r.json()["allowed"]) >= {"accept", "reject"}
    ok = _act(full_client, ref, c, "accept").json()
    stale = full_client.post(f"/cases/{ref}/actions",
                             json={"action": "dispatch", "version": ok["version"] - 1},
                             headers=c)
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    assert _act(full_client, ref, tokens["patrol"], "dispatch").status_code == 403
    listing = full_client.get("/cases", headers=tokens["cgzf"]).json()["items"]
    assert all(x["department"] == "CGZF" for x in listing)
    assert all("reporter" not in x for x in listing)
    # contacts typed into the description are hidden from all but the centre's own view
    said = "游商 at the gate, call me on 13912345678 or li@example.cn"
    typed = _report(full_client, tokens["patrol"], lon=P[0] + 0.003, description=said).json()
    assert "13912345678" not in typed["description"] and "li@" not in typed["description"]
    listed = full_client.get("/cases", headers=tokens["cgzf"]).json()["items"]
    mine = next(x for x in listed if x["ref"] == typed["ref"])
    assert mine["description"] == ("游商 at the gate, call me on [phone removed] or "
                                   "[email removed]")
    assert full_client.get(f"/cases/{typed['ref']}", headers=c).json()["description"] == said


def test_overdue_cases_escalate_step_by_step(full_client: TestClient, tokens,
                                             full_session: Session) -> None:  # type: ignore[no-untyped-def]
    import time

    from layers.escalation import escalate_overdue
    from layers.settings import Settings

    ref = _report(full_client, tokens["patrol"]).json()["ref"]
    c = tokens["centre"]
    _act(full_client, ref, c, "accept")
    _act(full_client, ref, c, "dispatch", data={"deadline_hours": 0.0001})  # 0.36 s
    time.sleep(0.6)
    s = Settings(escalate_second_tier_h=0.00001, escalate_first_tier_h=10)
    seen = full_client.get(f"/cases/{ref}", headers=c).json()["version"]
    out = escalate_overdue(full_session, s)
    assert out["ran"] and out["escalated"] >= 1
    case = full_client.get(f"/cases/{ref}", headers=c).json()
    assert case["escalation"] == 2  # 0.6 s late: past supervision and the second tier
    assert case["version"] == seen  # the department's pending action is still good
    ev = [e for e in full_client.get(f"/cases/{ref}/events", headers=c).json()["events"]
          if e["action"] == "escalate"]
    assert [e["data"]["level"] for e in ev] == [1, 2]
    assert escalate_overdue(full_session, s)["escalated"] == 0  # nothing new to raise
    overdue = full_client.get("/cases", params={"overdue": True}, headers=c).json()["items"]
    assert ref in [x["ref"] for x in overdue]


def test_photos_are_checked_and_kept(full_client: TestClient, tokens, tmp_path) -> None:  # type: ignore[no-untyped-def]
    full_client.app.state.services.settings.photos_dir = tmp_path  # type: ignore[attr-defined]
    ref = _report(full_client, tokens["patrol"]).json()["ref"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    h = tokens["patrol"]
    r = full_client.post(f"/cases/{ref}/photos", content=png,
                         headers=h | {"content-type": "image/png"})
    assert r.status_code == 201, r.text
    name = r.json()["photo"]["file"]
    got = full_client.get(f"/cases/{ref}/photos/{name}", headers=tokens["centre"])
    assert got.status_code == 200 and got.content == png
    bad = full_client.post(f"/cases/{ref}/photos", content=b"GIF89a....",
                           headers=h | {"content-type": "image/png"})
    assert bad.status_code == 415 and "not a image/png" in bad.json()["detail"]
    pdf = full_client.post(f"/cases/{ref}/photos", content=b"%PDF-1.4",
                           headers=h | {"content-type": "application/pdf"})
    assert pdf.status_code == 415
    full_client.app.state.services.settings.photo_max_bytes = 50  # type: ignore[attr-defined]
    try:
        big = full_client.post(f"/cases/{ref}/photos", content=png,
                               headers=h | {"content-type": "image/png"})
        assert big.status_code == 413
    finally:
        full_client.app.state.services.settings.photo_max_bytes = 10 * 1024 * 1024  # type: ignore[attr-defined]
        full_client.app.state.services.settings.photos_dir = None  # type: ignore[attr-defined]
    assert len(list((tmp_path / ref).iterdir())) == 1  # nothing half-stored


def _events(client: TestClient, ref: str, headers: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    return client.get(f"/cases/{ref}/events", headers=headers).json()["events"]


def test_split_of_a_wrong_merge(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    c = tokens["centre"]
    a = _report(full_client, tokens["patrol"]).json()
    # a hotline report 10 m away, same category: linked to a as a duplicate
    d = _report(full_client, c, channel="hotline_12345", lon=P[0] + 1e-4,
                description="a different vendor, at the other gate").json()
    assert d["status"] == "merged" and d["duplicate_of"] == a["ref"]
    assert full_client.get(f"/cases/{a['ref']}", headers=c).json()["reporters"] == 2
    ref = d["ref"]
    assert "split" in full_client.get(f"/cases/{ref}", headers=c).json()["allowed"]

    # who may not split: a patrol member, the department (403); another department does
    # not even see it (404); a case that is not merged cannot be split (409); nor a stale one
    assert _act(full_client, ref, tokens["patrol"], "split").status_code == 403
    assert _act(full_client, ref, tokens["cgzf"], "split").status_code == 403
    assert full_client.post(f"/cases/{ref}/actions", json={
        "action": "split", "version": d["version"]}, headers=tokens["psb"]).status_code == 404
    r = _act(full_client, a["ref"], c, "split")
    assert r.status_code == 409 and r.json()["code"] == "illegal_transition"
    stale = full_client.post(f"/cases/{ref}/actions",
                             json={"action": "split", "version": d["version"] + 1}, headers=c)
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    assert full_client.get(f"/cases/{a['ref']}", headers=c).json()["reporters"] == 2

    # the centre splits it: its own case again, the original counts one reporter less
    r = _act(full_client, ref, c, "split", note="not the same vendor")
    assert r.status_code == 200, r.text
    split = r.json()
    assert split["status"] == "collected" and split["duplicate_of"] is None
    orig = full_client.get(f"/cases/{a['ref']}", headers=c).json()
    assert orig["reporters"] == 1 and orig["status"] == "collected"
    assert orig["version"] == a["version"]  # nobody's action on the original went stale
    ev = _events(full_client, ref, c)
    assert [(e["action"], e["from"], e["to"]) for e in ev] == [
        ("report", None, "collected"), ("merge", "collected", "merged"),
        ("split", "merged", "collected")]
    assert ev[-1]["role"] == "centre" and ev[-1]["note"] == "not the same vendor"
    assert ev[-1]["data"]["from"] == a["ref"]
    ev = _events(full_client, a["ref"], c)
    assert [e["action"] for e in ev] == ["report", "reporter_added", "reporter_removed"]
    assert ev[-1]["data"] == {"split": ref, "reporters": 1}
    assert _act(full_client, ref, c, "split").status_code == 409  # only once

    # dispatched on its own, the original stays where it was
    assert _act(full_client, ref, c, "accept").json()["status"] == "accepted"
    disp = _act(full_client, ref, c, "dispatch").json()
    assert disp["status"] == "dispatched" and disp["department"] == "CGZF"
    assert _act(full_client, ref, tokens["cgzf"], "take").json()["status"] == "in_progress"
    assert full_client.get(f"/cases/{a['ref']}", headers=c).json()["status"] == "collected"
    merged = full_client.get("/cases", params={"status": "merged"}, headers=c).json()["items"]
    assert ref not in [x["ref"] for x in merged]


def test_the_centre_merges_by_hand_and_splits_back(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    c = tokens["centre"]
    a = _report(full_client, tokens["patrol"]).json()
    # 300 m away: not linked at intake; the centre sees it is the same problem
    b = _report(full_client, c, channel="hotline_12345", lon=P[0] + 0.003).json()
    assert b["status"] == "collected"
    r = _act(full_client, b["ref"], c, "merge")
    assert r.status_code == 422 and "into" in r.json()["detail"]
    r = _act(full_client, b["ref"], c, "merge", data={"into": b["ref"]})
    assert r.status_code == 422
    r = _act(full_client, b["ref"], c, "merge", data={"into": "SJ2026-NOPE"})
    assert r.status_code == 404
    assert _act(full_client, b["ref"], tokens["patrol"], "merge",
                data={"into": a["ref"]}).status_code == 403
    m = _act(full_client, b["ref"], c, "merge", data={"into": a["ref"]}).json()
    assert m["status"] == "merged" and m["duplicate_of"] == a["ref"]
    assert full_client.get(f"/cases/{a['ref']}", headers=c).json()["reporters"] == 2
    # nothing merges into a merged case
    other = _report(full_client, c, channel="web", lon=P[0] - 0.003).json()
    r = _act(full_client, other["ref"], c, "merge", data={"into": b["ref"]})
    assert r.status_code == 409 and a["ref"] in r.json()["detail"]
    s = _act(full_client, b["ref"], c, "split").json()
    assert s["status"] == "collected" and s["duplicate_of"] is None
    assert full_client.get(f"/cases/{a['ref']}", headers=c).json()["reporters"] == 1
    assert [e["action"] for e in _events(full_client, a["ref"], c)] == [
        "report", "reporter_added", "reporter_removed"]


def test_duplicate_rules_are_per_category(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    """Illegal parking (E0503: a car, 20 m, 4 h) is not a fire (E0406: the whole block
    calls, 150 m); a category without a rule of its own takes the server's default (30 m);
    the rule applied is kept with the case."""
    c = tokens["centre"]
    north = 1 / 110_574.0  # degrees of latitude per metre

    spots = iter(range(4))

    def pair(category: str, metres: float) -> tuple[dict, dict]:  # type: ignore[type-arg]
        lon = P[0] + 0.003 * next(spots)  # each pair ~300 m from the others
        a = _report(full_client, c, channel="hotline_12345", category=category,
                    lon=lon).json()
        b = _report(full_client, c, channel="hotline_12345", category=category, lon=lon,
                    lat=P[1] + metres * north).json()
        assert a["status"] == "collected"
        return a, b

    a, b = pair("E0503", 25)
    assert a["resolution"]["owner"]["category"]["duplicate"] == {"radius_m": 20.0,
                                                                 "window_h": 4.0}
    assert b["status"] == "collected"  # 25 m from a parked car is another car
    a, b = pair("E0406", 120)
    assert a["resolution"]["owner"]["category"]["duplicate"]["radius_m"] == 150.0
    assert b["status"] == "merged" and b["duplicate_of"] == a["ref"]
    assert full_client.get(f"/cases/{a['ref']}", headers=c).json()["reporters"] == 2
    a, b = pair("E0101", 25)  # exposed garbage: no rule of its own, the default 30 m
    assert a["resolution"]["owner"]["category"]["duplicate"] == {"radius_m": 30.0,
                                                                 "window_h": 72.0}
    assert b["status"] == "merged"
    a, b = pair("E0101", 40)
    assert b["status"] == "collected"


def test_re_resolution_is_explicit_and_keeps_the_old_answer(
        full_client: TestClient, tokens, full_session: Session) -> None:  # type: ignore[no-untyped-def]
    """A case told an answer that is out of date (as if the layers or the grid changed since
    intake) keeps it until the centre re-resolves; then the row takes today's answer, the
    event keeps the whole old one and says what changed, and the owner moves only while no
    dispatch stands."""
    c = tokens["centre"]
    fresh = _report(full_client, tokens["patrol"]).json()
    stale = {**fresh["resolution"], "generation": 0,
             "chain": [*fresh["resolution"]["chain"][:3],
                       {**fresh["resolution"]["chain"][3], "code": "310117999999999"}],
             "owner": {**fresh["resolution"]["owner"], "owner": {"code": "PSB"},
                       "decided_by": "area"}}
    refs = []
    for dispatched in (False, True):
        ref = _report(full_client, tokens["patrol"], lon=P[0] + 0.01 * (1 + dispatched)).json()[
            "ref"]
        if dispatched:
            _act(full_client, ref, c, "accept")
            _act(full_client, ref, c, "dispatch", data={"department": "PSB"})
        case = full_session.scalar(select(Case).where(Case.ref == ref))
        assert case is not None
        case.resolution = {**stale, "h3": case.resolution["h3"], "crs": case.resolution["crs"]}
        case.grid_code, case.owner_department = "310117999999999", "PSB"
        full_session.flush()
        refs.append(ref)
    # a department or a patrol may not; nothing changes by itself
    assert _act(full_client, refs[0], tokens["patrol"], "re_resolve").status_code == 403
    before = full_client.get(f"/cases/{refs[0]}", headers=c).json()
    assert before["grid"] == "310117999999999" and before["department"] == "PSB"

    after = _act(full_client, refs[0], c, "re_resolve", note="layers corrected").json()
    assert after["grid"] != "310117999999999" and len(after["grid"]) == 15
    assert after["department"] == "CGZF"  # not dispatched yet: the new owner takes it
    assert after["resolution"]["generation"] >= 1 and after["status"] == "collected"
    assert after["resolution"]["crs"]["key"] == "EPSG:4326"
    ev = _events(full_client, refs[0], c)[-1]
    assert ev["action"] == "re_resolve" and ev["role"] == "centre"
    assert ev["note"] == "layers corrected" and ev["data"]["owner_moved"] is True
    assert ev["data"]["before"]["grid"] == "310117999999999"
    assert set(ev["data"]["changed"]) >= {"grid", "generation", "owner", "decided_by"}
    assert ev["data"]["previous_resolution"]["owner"]["owner"]["code"] == "PSB"

    kept = _act(full_client, refs[1], c, "re_resolve").json()
    assert kept["department"] == "PSB"  # dispatched: it stays until the centre re-dispatches
    assert kept["resolution"]["owner"]["owner"]["code"] == "CGZF"
    ev = _events(full_client, refs[1], c)[-1]
    assert ev["data"]["owner_moved"] is False and ev["data"]["after"]["owner"] == "CGZF"
    # a finished case is not re-resolved
    _act(full_client, refs[0], c, "reject", note="not a case")
    r = _act(full_client, refs[0], c, "re_resolve")
    assert r.status_code == 409 and r.json()["allowed"] == []


def test_bad_action_data_is_a_precise_4xx(full_client: TestClient, tokens,
                                          full_session: Session) -> None:  # type: ignore[no-untyped-def]
    """Numbers that are not hours, departments that do not exist, a feedback without its
    result or with photos never attached: 422 naming the field; the case is unchanged."""
    c, d = tokens["centre"], tokens["cgzf"]
    ref = _report(full_client, tokens["patrol"]).json()["ref"]
    _act(full_client, ref, c, "accept")
    version = full_client.get(f"/cases/{ref}", headers=c).json()["version"]
    for data, field in (({"deadline_hours": "abc"}, "deadline_hours"),
                        ({"deadline_hours": -4}, "deadline_hours"),
                        ({"deadline_hours": 1e20}, "deadline_hours"),
                        ({"deadline_hours": True}, "deadline_hours"),
                        ({"deadline_hours": [1]}, "deadline_hours"),
                        ({"department": "X" * 60}, "department"),
                        ({"department": "NOSUCH"}, "department"),
                        ({"department": 7}, "department")):
        r = _act(full_client, ref, c, "dispatch", data=data)
        assert r.status_code == 422, (data, r.text)
        assert field in r.json()["detail"]
    got = full_client.get(f"/cases/{ref}", headers=c).json()
    assert got["status"] == "accepted" and got["version"] == version
    assert _act(full_client, ref, c, "dispatch").json()["status"] == "dispatched"
    for hours in ("NaN", "Infinity", "-1", "0", "1e20"):
        r = full_client.post(f"/cases/{ref}/actions", headers=c | {
            "content-type": "application/json"}, content=(
            f'{{"action": "extend", "version": {version + 1}, "data": {{"hours": {hours}}}}}'
            ).encode())
        assert r.status_code == 422 and "hours" in r.json()["detail"], (hours, r.text)
    assert _act(full_client, ref, d, "take").json()["status"] == "in_progress"
    r = _act(full_client, ref, d, "feedback")
    assert r.status_code == 422 and "result" in r.json()["detail"]
    r = _act(full_client, ref, d, "feedback", note="moved on", data={"photos": ["x.png"]})
    assert r.status_code == 422 and "x.png" in r.json()["detail"]
    assert full_client.get(f"/cases/{ref}", headers=c).json()["status"] == "in_progress"
    # nothing of the refused actions is in the log
    assert [e["action"] for e in _events(full_client, ref, c)] == [
        "report", "accept", "dispatch", "take"]


def test_feedback_points_to_its_photos_and_a_finished_case_takes_none(
        full_client: TestClient, tokens, tmp_path) -> None:  # type: ignore[no-untyped-def]
    full_client.app.state.services.settings.photos_dir = tmp_path  # type: ignore[attr-defined]
    try:
        c, d = tokens["centre"], tokens["cgzf"]
        ref = _report(full_client, tokens["patrol"]).json()["ref"]
        for a in ("accept", "dispatch"):
            _act(full_client, ref, c, a)
        _act(full_client, ref, d, "take")
        png = b"\x89PNG\r\n\x1a\n" + b"\x01" * 64
        name = full_client.post(f"/cases/{ref}/photos", content=png, headers=d | {
            "content-type": "image/png"}).json()["photo"]["file"]
        fb = _act(full_client, ref, d, "feedback", note="stall removed",
                  data={"photos": [name]})
        assert fb.status_code == 200, fb.text
        ev = _events(full_client, ref, c)[-1]
        assert ev["action"] == "feedback" and ev["data"]["photos"] == [name]
        _act(full_client, ref, tokens["patrol"], "verify", note="checked")
        _act(full_client, ref, c, "evaluate", data={"satisfaction": 4})
        # evaluated: finished, so a photo is refused before anything is written
        late = full_client.post(f"/cases/{ref}/photos", content=png + b"\x02",
                                headers=c | {"content-type": "image/png"})
        assert late.status_code == 409 and "evaluated" in late.json()["detail"]
        assert [p.name for p in (tmp_path / ref).iterdir()] == [name]
    finally:
        full_client.app.state.services.settings.photos_dir = None  # type: ignore[attr-defined]


def _isolated(session: Session, kind: str, metres: float) -> list[Any]:
    """Current assets of a kind with no other within `metres` (a 25 % wider planar
    margin, in code order): an STRtree, not an all-pairs geography join."""
    import shapely
    from sqlalchemy import text

    rows = session.execute(text(
        "SELECT code, ST_X(geom) AS x, ST_Y(geom) AS y FROM asset "
        "WHERE kind = :k AND valid_to IS NULL ORDER BY code"), {"k": kind}).all()
    xs = [r.x * 0.857 * 111_320 for r in rows]  # metres at 31°N, near enough with the margin
    ys = [r.y * 110_950 for r in rows]
    pts = shapely.points(xs, ys)
    pairs = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=metres * 1.25)
    matches = np.bincount(pairs[0], minlength=len(rows))  # each point matches itself
    return [r for r, m in zip(rows, matches, strict=True) if m == 1]


def test_reports_on_the_same_asset_are_one_case(full_client: TestClient, tokens,
                                                full_session: Session) -> None:  # type: ignore[no-untyped-def]
    """A category linked by asset only (duplicate radius 0): two reports 16 m apart that
    snap to the same manhole cover are one case; a report on another cover is not."""
    from sqlalchemy import text

    c = tokens["centre"]
    full_session.execute(text("UPDATE category SET duplicate_radius_m = 0 "
                              "WHERE code = 'C0101' AND valid_to IS NULL"))
    full_client.app.state.services.owners.refresh()  # type: ignore[attr-defined]
    covers = _isolated(full_session, "manhole_water", 40.0)[:2]
    assert len(covers) == 2
    east = 8 / (111_320 * 0.857)  # 8 m of longitude at 31°N

    def report(cover: Any, dx: float) -> dict:  # type: ignore[type-arg]
        return _report(full_client, c, channel="hotline_12345", category="C0101",
                       lon=cover.x + dx, lat=cover.y).json()

    a = report(covers[0], -east)
    assert a["resolution"]["owner"]["asset"]["code"] == covers[0].code
    assert a["resolution"]["owner"]["category"]["duplicate"]["radius_m"] == 0
    b = report(covers[0], +east)
    assert b["status"] == "merged" and b["duplicate_of"] == a["ref"]
    assert full_client.get(f"/cases/{a['ref']}", headers=c).json()["reporters"] == 2
    other = report(covers[1], east)
    assert other["status"] == "collected"
    assert other["resolution"]["owner"]["asset"]["code"] == covers[1].code


def test_reject_cancel_suspend_resume(full_client: TestClient, tokens) -> None:  # type: ignore[no-untyped-def]
    """The other ways out of the loop, and a suspension that comes back where it was."""
    c, d = tokens["centre"], tokens["cgzf"]
    spots = iter(range(1, 10))

    def new() -> str:
        return str(_report(full_client, tokens["patrol"],
                           lon=P[0] - 0.002 * next(spots)).json()["ref"])

    rejected = new()
    assert _act(full_client, rejected, c, "reject", note="not a case").json()[
        "status"] == "rejected"
    r = _act(full_client, rejected, c, "accept")
    assert r.status_code == 409 and r.json()["allowed"] == []
    cancelled = new()
    _act(full_client, cancelled, c, "accept")
    assert _act(full_client, cancelled, c, "cancel", note="withdrawn").json()[
        "status"] == "cancelled"
    held = new()
    for a in ("accept", "dispatch"):
        _act(full_client, held, c, a)
    _act(full_client, held, d, "take")
    assert _act(full_client, held, d, "suspend").status_code == 403  # the centre's call
    assert _act(full_client, held, c, "suspend", note="road works").json()[
        "status"] == "suspended"
    r = _act(full_client, held, d, "feedback", note="done")
    assert r.status_code == 409 and set(r.json()["allowed"]) >= {"resume", "cancel"}
    assert _act(full_client, held, c, "resume").json()["status"] == "in_progress"
    events = [(e["action"], e["from"], e["to"]) for e in _events(full_client, held, c)]
    assert events[-2:] == [("suspend", "in_progress", "suspended"),
                           ("resume", "suspended", "in_progress")]


def test_a_retried_duplicate_names_its_original_by_reference(full_client: TestClient,
                                                             tokens) -> None:  # type: ignore[no-untyped-def]
    """A retry of a report that joined an open case answers that case's reference as its
    duplicate_of, as the first answer did (the replay is read back from the database)."""
    c = tokens["centre"]
    a = _report(full_client, tokens["patrol"], lon=P[0] - 0.02).json()
    key = {"idempotency-key": "hotline-7-retry"}
    d = _report(full_client, c | key, channel="hotline_12345", lon=P[0] - 0.02 + 1e-4)
    assert d.status_code == 201 and d.json()["duplicate_of"] == a["ref"]
    again = _report(full_client, c | key, channel="hotline_12345", lon=P[0] - 0.02 + 1e-4)
    assert again.status_code == 200 and again.json()["ref"] == d.json()["ref"]
    assert again.json()["duplicate_of"] == a["ref"]


def test_events_mask_contacts_for_everyone_but_the_centre(
        full_client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    text = "摊贩占道, 联系 139 1234 5678 或 (021) 5778 1234, 身份证 31010119900101123X"
    r = _report(full_client, tokens["centre"], description=text, category="E0501")
    assert r.status_code == 201, r.text
    ref = r.json()["ref"]
    own = full_client.get(f"/cases/{ref}/events", headers=tokens["centre"]).json()["events"]
    assert own[0]["note"] == text
    ev = full_client.get(f"/cases/{ref}/events", headers=tokens["patrol"])
    assert ev.status_code == 200, ev.text
    note = ev.json()["events"][0]["note"]
    for secret in ("139 1234 5678", "5778 1234", "31010119900101123X"):
        assert secret not in note
    assert "摊贩占道" in note
