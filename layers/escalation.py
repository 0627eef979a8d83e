"""Escalation of overdue cases: supervision (督办) at the deadline, then the second-tier and
the first-tier joint meetings after configurable delays. Set-based SQL, one runner at a time
(an advisory lock), safe to call from every worker's scheduler and from cron."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from layers.background import BackgroundLoop
from layers.settings import Settings

log = logging.getLogger(__name__)

LEVELS = {1: "supervision (督办)", 2: "second-tier joint meeting (二级联席会议)",
          3: "first-tier joint meeting (一级联席会议)"}
LOCK_KEY = 7_311_001  # pg advisory lock: one escalation run at a time across workers
ACTION = "escalate"  # the event an escalation step writes (not a workflow transition)
ESCALATING = ("dispatched", "bounced", "in_progress", "feedback")
_ESCALATING_SQL = ", ".join(f"'{s}'" for s in ESCALATING)  # as index case_escalating has it


def escalate_overdue(session: Session, settings: Settings) -> dict[str, Any]:
    """Raise every overdue open case to the level its lateness calls for; one event per level
    reached. Returns how many cases moved (0 if another runner holds the lock)."""
    if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                           {"k": LOCK_KEY}).scalar_one():
        return {"ran": False, "escalated": 0}
    rows = session.execute(text(f"""
        WITH due AS (
            SELECT id, escalation AS old,
                   CASE WHEN clock_timestamp() >= deadline_at + CAST(:first AS float8)
                                                               * interval '1 hour' THEN 3
                        WHEN clock_timestamp() >= deadline_at + CAST(:second AS float8)
                                                                * interval '1 hour' THEN 2
                        ELSE 1 END AS new
              FROM "case"
             WHERE status IN ({_ESCALATING_SQL}) AND deadline_at IS NOT NULL
               AND escalation < {max(LEVELS)}  -- index case_escalating (migration 0011)
               AND deadline_at <= clock_timestamp())
        -- the version stays (as when a reporter joins): escalation is the centre's
        -- pressure on the case, not a change that makes a handler's pending action stale
        UPDATE "case" c SET escalation = due.new, updated_at = clock_timestamp()
          FROM due WHERE c.id = due.id AND due.new > c.escalation
        RETURNING c.id, due.old, due.new, c.status"""),
        {"first": settings.escalate_first_tier_h,
         "second": settings.escalate_second_tier_h}).all()
    if rows:
        session.execute(text("""
            INSERT INTO case_event (case_id, actor, role, action, from_status, to_status,
                                    note, data)
            SELECT r.id, 'scheduler', 'system', :action, r.status, r.status,
                   'overdue: ' || (ARRAY[:l1, :l2, :l3])[lvl],
                   jsonb_build_object('level', lvl)
              FROM unnest(CAST(:ids AS bigint[]), CAST(:olds AS int[]), CAST(:news AS int[]),
                          CAST(:sts AS text[])) AS r(id, old, new, status),
                   generate_series(r.old + 1, r.new) AS lvl"""),
            {"ids": [r.id for r in rows], "olds": [r.old for r in rows],
             "news": [r.new for r in rows], "sts": [r.status for r in rows],
             "l1": LEVELS[1], "l2": LEVELS[2], "l3": LEVELS[3], "action": ACTION})
    return {"ran": True, "escalated": len(rows),
            "levels": {n: sum(1 for r in rows if r.new == n) for n in LEVELS}}


class Scheduler(BackgroundLoop):
    """Runs escalate_overdue every interval in a background thread (one per worker; the
    advisory lock lets only one of them work at a time)."""

    name = "gridops-scheduler"

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        super().__init__()
        self._factory = factory
        self._settings = settings

    def enabled(self) -> bool:
        """Off when GRIDOPS_SCHEDULER_INTERVAL_S is 0 (cron runs `gridops escalate`)."""
        return self._settings.scheduler_interval_s > 0

    def run(self, stop: threading.Event) -> None:
        """Escalate every interval until stopped; a failed run is logged, the next one runs."""
        while not stop.wait(self._settings.scheduler_interval_s):
            try:
                with self._factory() as session, session.begin():
                    out = escalate_overdue(session, self._settings)
                if out.get("escalated"):
                    log.info("escalated %d overdue case(s): %s", out["escalated"],
                             out["levels"])
            except Exception:
                log.exception("escalation run failed")
