"""A small synthetic year on the demo city: every case has its events, states agree with the
events, reports cluster on hotspots, bounce and overdue shares are plausible, the same seed
gives the same history, and every history is a walk of the case state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from etl import demo_history
from etl.demo_history import ESCALATE, MERGE, REPORT, REPORTER_ADDED, generate_history
from layers import escalation, grids, workflow
from layers.ownership_store import load_snapshot
from layers.resolution import answer_for, normalise_point
from layers.resolver import build_index
from layers.settings import Settings
from spatial import h3index

END = datetime(2026, 1, 1, tzinfo=UTC)
N = 3000


def _snapshot(s: Session, base: int) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in s.execute(text("""
        SELECT c.ref, c.status, c.category_code, c.channel, c.created_at, c.grid_code,
               c.owner_department, c.satisfaction, c.escalation, c.reporters,
               (SELECT string_agg(e.action || '@' || e.at::text, ',' ORDER BY e.at, e.id)
                  FROM case_event e WHERE e.case_id = c.id)
          FROM "case" c WHERE c.id > :b ORDER BY c.ref"""), {"b": base})]


def test_a_year_of_history(full_session: Session, settings: Settings) -> None:
    s = full_session
    base = s.execute(text('SELECT coalesce(max(id), 0) FROM "case"')).scalar_one()
    sp = s.begin_nested()
    first = generate_history(s, cases=N, year_end=END, seed=11, settings=settings)
    snap1 = _snapshot(s, base)
    sp.rollback()
    out = generate_history(s, cases=N, year_end=END, seed=11, settings=settings)
    assert out == first and _snapshot(s, base) == snap1  # deterministic for the seed
    p = {"b": base, "end": END, "start": END - timedelta(days=365)}

    def one(sql: str) -> Any:
        return s.execute(text(sql), p).scalar_one()

    assert out["cases"] == N == one('SELECT count(*) FROM "case" WHERE id > :b')
    assert out["events"] == one("SELECT count(*) FROM case_event WHERE case_id > :b")
    assert one('SELECT count(*) FROM "case" WHERE id > :b AND (created_at < :start '
               "OR created_at >= :end OR NOT inside OR grid_code IS NULL "
               "OR ref !~ '^SJ20(25|26)-[0-9A-F]{9}$')") == 0
    # every case has events; the first is its report; times never go back; none after the end
    assert one('SELECT count(*) FROM "case" c WHERE id > :b AND NOT EXISTS '
               "(SELECT 1 FROM case_event e WHERE e.case_id = c.id AND e.action = 'report' "
               "AND e.at = c.created_at)") == 0
    assert one("""SELECT count(*) FROM (
        SELECT at < lag(at) OVER w AS back, from_status IS DISTINCT FROM
               lag(to_status) OVER w AND lag(to_status) OVER w IS NOT NULL AS jump
          FROM case_event WHERE case_id > :b WINDOW w AS (PARTITION BY case_id ORDER BY at, id)
        ) x WHERE back OR jump""") == 0
    assert one("SELECT count(*) FROM case_event WHERE case_id > :b AND at >= :end") == 0
    # the case's state is its last event's; closed => verified then; evaluated => a score
    assert one("""SELECT count(*) FROM "case" c JOIN LATERAL (
        SELECT e.to_status FROM case_event e WHERE e.case_id = c.id
         ORDER BY e.at DESC, e.id DESC LIMIT 1) l ON true
        WHERE c.id > :b AND l.to_status <> c.status""") == 0
    assert one("""SELECT count(*) FROM "case" c WHERE c.id > :b
        AND c.status IN ('closed', 'evaluated') AND c.closed_at IS DISTINCT FROM (
            SELECT max(at) FROM case_event e WHERE e.case_id = c.id AND e.action = 'verify')
        """) == 0
    assert one("""SELECT count(*) FROM "case" c WHERE c.id > :b
        AND (c.status = 'evaluated') <> (c.satisfaction IS NOT NULL)""") == 0
    assert one("""SELECT count(*) FROM "case" c WHERE c.id > :b AND c.escalation <> coalesce((
        SELECT max((e.data ->> 'level')::int) FROM case_event e
         WHERE e.case_id = c.id AND e.action = 'escalate'), 0)""") == 0
    # duplicates are merged into an earlier open case, which counts its reporters
    assert one("""SELECT count(*) FROM "case" d JOIN "case" o ON o.id = d.duplicate_of
        WHERE d.id > :b AND (d.status <> 'merged' OR o.created_at > d.created_at
                             OR o.category_code <> d.category_code)""") == 0
    assert one("""SELECT count(*) FROM "case" o WHERE o.id > :b AND o.reporters <> 1 + (
        SELECT count(*) FROM "case" d WHERE d.duplicate_of = o.id)""") == 0
    merged = one("SELECT count(*) FROM \"case\" WHERE id > :b AND status = 'merged'")
    assert merged == out["duplicates"] > 0
    # the dispatched department owns the case; deadlines come with dispatches
    assert one("""SELECT count(*) FROM "case" c WHERE c.id > :b AND c.deadline_at IS NOT NULL
        AND c.owner_department IS DISTINCT FROM (SELECT e.data ->> 'department'
            FROM case_event e WHERE e.case_id = c.id AND e.action = 'dispatch'
            ORDER BY e.at DESC LIMIT 1)""") == 0

    # shares: bounced, overdue, rejected, evaluated and satisfied
    shares = s.execute(text("""
        SELECT avg((EXISTS (SELECT 1 FROM case_event e WHERE e.case_id = c.id
                            AND e.action = 'bounce'))::int) AS bounced,
               avg((c.closed_at > c.deadline_at OR (c.closed_at IS NULL
                    AND c.deadline_at < :end))::int) AS overdue,
               avg((c.escalation > 0)::int) AS escalated,
               avg((c.status = 'evaluated')::int) AS evaluated,
               avg((c.satisfaction >= 4)::int) FILTER (WHERE c.satisfaction IS NOT NULL)
                   AS satisfied
          FROM "case" c WHERE c.id > :b AND c.deadline_at IS NOT NULL"""), p).one()
    assert 0.04 <= shares.bounced <= 0.10
    assert 0.05 <= shares.overdue <= 0.30 and 0.02 <= shares.escalated <= shares.overdue
    assert 0.6 <= shares.evaluated <= 0.85 and shares.satisfied >= 0.75
    by_status: dict[str, int] = dict(s.execute(text(
        'SELECT status, count(*) FROM "case" WHERE id > :b GROUP BY 1'), p).all())
    assert 0.02 <= by_status["rejected"] / N <= 0.1
    assert by_status["closed"] + by_status["evaluated"] > 0.8 * N
    channels: dict[str, int] = dict(s.execute(text(
        'SELECT channel, count(*) FROM "case" WHERE id > :b GROUP BY 1'), p).all())
    assert max(channels, key=lambda k: channels[k]) == "patrol_app" and len(channels) >= 6

    # each stored resolution is the API's answer for the case's point (the owner compacted)
    gen = grids.active_generation(s)
    assert gen is not None
    idx, snap = build_index(s, gen, settings), load_snapshot(s, settings)
    sample = s.execute(text("""
        SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, category_code, resolution, input_crs,
               grid_code, h3_cell, generation_id FROM "case" WHERE id > :b AND id % 37 = 0"""),
        p).all()
    assert len(sample) > 50
    for r in sample:
        want = answer_for(idx, snap, r.lon, r.lat, r.category_code, settings)
        want["owner"] = demo_history._compact(want["owner"])
        want["crs"] = normalise_point(r.lon, r.lat, "EPSG:4326").crs
        assert r.resolution == want
        assert (r.input_crs, r.grid_code, r.h3_cell, r.generation_id) == (
            want["crs"]["key"], want["chain"][-1]["code"], want["h3"], want["generation"])

    # clustered: the busiest 5 % of resolution-9 H3 cells (≈ 0.1 km²) hold far more than 5 %
    xy: np.ndarray = np.array(s.execute(text(
        'SELECT ST_X(geom), ST_Y(geom) FROM "case" WHERE id > :b'), p).all())
    _, counts = np.unique(h3index.cells_for_points(xy[:, 0], xy[:, 1], 9), return_counts=True)
    top = np.sort(counts)[::-1][: max(1, len(counts) // 20)]
    assert top.sum() / N > 0.25


def _walk_problems(s: Session, base: int) -> tuple[list[str], dict[str, int]]:
    """Every case after `base` replayed through layers.workflow from its events (in their
    order): what does not agree, and how often each action occurs."""
    rows = s.execute(text("""
        SELECT c.ref, c.status, c.version, e.action, e.role, e.from_status, e.to_status
          FROM "case" c JOIN case_event e ON e.case_id = c.id
         WHERE c.id > :b ORDER BY c.id, e.at, e.id"""), {"b": base}).all()
    problems: list[str] = []
    actions: dict[str, int] = {}
    by_case: dict[str, list[Any]] = {}
    for r in rows:
        by_case.setdefault(r.ref, []).append(r)
        actions[r.action] = actions.get(r.action, 0) + 1
    for ref, evs in by_case.items():
        first = evs[0]
        if (first.action, first.from_status, first.to_status) != (REPORT, None,
                                                                  workflow.INITIAL):
            problems.append(f"{ref}: starts with {first.action} to {first.to_status}")
            continue
        state, before, version = workflow.INITIAL, None, 1
        for k, e in enumerate(evs[1:], start=1):
            if e.from_status != state:
                problems.append(f"{ref} #{k} {e.action}: from {e.from_status}, was {state}")
                break
            try:
                if e.action in (REPORTER_ADDED, ESCALATE):  # bookkeeping: the state stays
                    to = state
                    if e.role != workflow.SYSTEM or (e.action == ESCALATE
                                                     and state not in escalation.ESCALATING):
                        raise workflow.IllegalTransition(f"{e.role} {e.action} in {state}")
                elif e.action == MERGE and e.role == workflow.SYSTEM and k == 1:
                    to = workflow.next_state(state, e.action)  # intake's merge: no version
                else:  # an action of layers.case_actions.act, by a role that may take it
                    to = workflow.step(state, e.action, e.role, before)
                    version += 1
            except (workflow.IllegalTransition, workflow.Forbidden) as err:
                problems.append(f"{ref} #{k}: {err}")
                break
            if to != e.to_status:
                problems.append(f"{ref} #{k} {e.action}: to {e.to_status}, workflow: {to}")
                break
            state, before = to, (state if to != state else before)
        else:
            if state != first.status:
                problems.append(f"{ref}: ends {state}, the case is {first.status}")
            if version != first.version:
                problems.append(f"{ref}: version {first.version}, its actions make {version}")
    return problems, actions


def test_every_history_is_a_walk_of_the_workflow(full_session: Session,
                                                 settings: Settings) -> None:
    s = full_session
    base = s.execute(text('SELECT coalesce(max(id), 0) FROM "case"')).scalar_one()
    out = generate_history(s, cases=2000, year_end=END, seed=7, settings=settings)
    problems, actions = _walk_problems(s, base)
    assert problems == []
    assert sum(actions.values()) == out["events"]
    # the sample has every kind of history: bounce-backs, extensions, reopenings, overdue
    # (escalated) cases, ratings, duplicates, rejections and cancellations
    assert {"accept", "dispatch", "bounce", "take", "extend", "feedback", "reopen", "verify",
            "evaluate", "reject", "cancel", MERGE, REPORTER_ADDED, ESCALATE} <= set(actions)
    assert set(actions) - {REPORT, REPORTER_ADDED, ESCALATE} <= {
        m.action for ms in workflow.MOVES.values() for m in ms} | set(workflow.SIDE_ACTIONS)

    # the replay is no rubber stamp: a history that skips a step, or a state the events do
    # not lead to, is found
    take = s.execute(text("SELECT min(id) FROM case_event WHERE case_id > :b "
                          "AND action = 'take'"), {"b": base}).scalar_one()
    s.execute(text("UPDATE case_event SET from_status = 'accepted' WHERE id = :e"), {"e": take})
    s.execute(text("""UPDATE "case" SET status = 'closed' WHERE id = (
        SELECT max(id) FROM "case" WHERE id > :b AND status = 'evaluated')"""), {"b": base})
    problems, _ = _walk_problems(s, base)
    assert len(problems) == 2
    assert any("take: from accepted, was dispatched" in p for p in problems)
    assert any("ends evaluated, the case is closed" in p for p in problems)


def test_the_generator_refuses_what_the_workflow_refuses() -> None:
    ev = demo_history._Ev  # one planned event, as _lifecycle draws them
    assert demo_history._after("in_progress", ev(0.0, "x", workflow.CENTRE, "extend")) == (
        "in_progress", True)
    assert demo_history._after("feedback", ev(0.0, "x", workflow.SYSTEM, ESCALATE)) == (
        "feedback", False)
    with pytest.raises(workflow.IllegalTransition, match="cannot extend a case that is closed"):
        demo_history._after("closed", ev(0.0, "x", workflow.CENTRE, "extend"))
    with pytest.raises(workflow.Forbidden):
        demo_history._after("feedback", ev(0.0, "x", workflow.DEPARTMENT, "verify"))
    with pytest.raises(workflow.IllegalTransition, match="does not escalate"):
        demo_history._after("accepted", ev(0.0, "x", workflow.SYSTEM, ESCALATE))
