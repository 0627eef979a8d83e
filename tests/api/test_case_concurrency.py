"""Two people acting on one case at the same moment, against the real server (each request
its own connection and transaction): of concurrent actions at one version exactly one
wins, the others get 409 stale_version, and the log holds the winner only."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from layers.auth import create_token
from tests.support.servers import serving

RACERS = 8


def test_concurrent_actions_cannot_both_win(full_engine: Engine) -> None:
    with Session(full_engine) as s, s.begin():
        _, secret = create_token(s, "race-centre", "centre")
    h = {"authorization": f"Bearer {secret}"}
    ref = None
    try:
        with serving(full_engine.url.render_as_string(hide_password=False),
                     GRIDOPS_SCHEDULER_INTERVAL_S="0") as url:
            with httpx.Client(base_url=url, headers=h, timeout=30) as c:
                r = c.post("/cases", json={"channel": "hotline_12345", "category": "E0501",
                                           "lon": 121.2301, "lat": 31.0407,
                                           "description": "race: vendors at the bridge"})
                assert r.status_code == 201, r.text
                ref, version = r.json()["ref"], r.json()["version"]

            def act(action: str, v: int) -> httpx.Response:
                body = {"action": action, "version": v, "note": "race"}
                with httpx.Client(base_url=url, headers=h, timeout=30) as c:
                    return c.post(f"/cases/{ref}/actions", json=body)

            for action in ("accept", "dispatch"):
                with ThreadPoolExecutor(RACERS) as pool:  # all at the version they saw
                    got = list(pool.map(act, [action] * RACERS, [version] * RACERS))
                codes = sorted(g.status_code for g in got)
                assert codes == [200] + [409] * (RACERS - 1), [g.text for g in got]
                assert all(g.json()["code"] == "stale_version" for g in got
                           if g.status_code == 409)
                version = next(g.json()["version"] for g in got if g.status_code == 200)
            events = httpx.get(f"{url}/cases/{ref}/events", headers=h).json()["events"]
            assert [e["action"] for e in events] == ["report", "accept", "dispatch"]
    finally:
        with full_engine.begin() as conn:
            if ref is not None:
                conn.execute(text("DELETE FROM case_event WHERE case_id IN "
                                  '(SELECT id FROM "case" WHERE ref = :r)'), {"r": ref})
                conn.execute(text('DELETE FROM "case" WHERE ref = :r'), {"r": ref})
            conn.execute(text("DELETE FROM api_token WHERE name = 'race-centre'"))
