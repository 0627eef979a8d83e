"""The KPI SQL as it was before migration 0005 (commit b89ee66): every fact read from the
case_event log. Kept as the reference that layers.kpis, which reads the facts kept on the
case row, must equal; and as the baseline of the million-case benchmark."""

from __future__ import annotations

# the event indexes of migration 0004 (dropped by 0005) that this SQL was tuned with
EVENT_INDEXES = (
    "CREATE INDEX case_event_action_case ON case_event (action, case_id, at) INCLUDE (role)",
    "CREATE INDEX case_event_dispatch ON case_event (case_id, at) INCLUDE (data) "
    "WHERE action = 'dispatch'",
)
DROP_EVENT_INDEXES = ("DROP INDEX case_event_action_case", "DROP INDEX case_event_dispatch")

_CASES = """
    SELECT c.id, c.owner_department, c.status, c.deadline_at, c.closed_at, c.satisfaction,
           c.grid_code, c.street_code, {month} AS month
      FROM "case" c
     WHERE c.created_at >= :since AND c.created_at < :until{filters}"""

# The few cases whose state alone does not say whether they were taken, fed back, accepted,
# or whether their last dispatch stands: suspended, cancelled, reopened (in progress) ones.
_RARE = """
    SELECT s.id,
           bool_or(x.action = 'cancel' AND x.from_status IN ('dispatched', 'suspended'))
               AS cancel_standing,
           bool_or(x.action = 'take') AS taken,
           bool_or(x.action = 'feedback') AS fed_back,
           bool_or(x.action = 'accept') AS accepted
      FROM "case" s JOIN case_event x ON x.case_id = s.id
     WHERE s.status IN ('suspended', 'cancelled', 'in_progress')
       AND s.created_at >= :since AND s.created_at < :until
     GROUP BY s.id"""

# the last dispatch stands (was not bounced): suspended comes from dispatched or in_progress,
# a cancelled case's cancel event says where it was
_STANDING = ("(status IN ('dispatched', 'in_progress', 'suspended', 'feedback', 'closed', "
             "'evaluated') OR (status = 'cancelled' AND cancel_standing))")
_TAKEN = ("(status IN ('in_progress', 'feedback', 'closed', 'evaluated') "
          "OR (status IN ('suspended', 'cancelled') AND taken))")
_FED_BACK = ("(status IN ('feedback', 'closed', 'evaluated') "
             "OR (status IN ('in_progress', 'suspended', 'cancelled') AND fed_back))")
_ACCEPTED = ("(status NOT IN ('collected', 'rejected', 'merged', 'cancelled') "
             "OR (status = 'cancelled' AND accepted))")

_DEPARTMENT = """
WITH c AS ({cases}),
rare AS ({rare}),
late AS (  -- takes that did not come within the window after the (last) dispatch
    SELECT t.case_id
      FROM case_event t
      JOIN (SELECT d.case_id, max(d.at) AS last_dispatch FROM case_event d
             WHERE d.action = 'dispatch' AND d.at >= :since GROUP BY d.case_id) ld
        ON ld.case_id = t.case_id
     WHERE t.action = 'take' AND t.at >= :since AND t.at > ld.last_dispatch + :window),
bd AS (  -- the departments every dispatch of a bounced case went to
    SELECT d.case_id, array_agg(d.data ->> 'department' ORDER BY d.at) AS depts
      FROM case_event d
     WHERE d.action = 'dispatch' AND d.at >= :since
       AND d.case_id IN (SELECT b.case_id FROM case_event b
                          WHERE b.action = 'bounce' AND b.at >= :since)
     GROUP BY d.case_id),
g AS (  -- the period's cases by owner, state and the few facts that matter: small groups
    SELECT c.month, c.owner_department AS dept, c.status, r.cancel_standing, r.taken,
           bd.depts, late.case_id IS NOT NULL AS late,
           c.closed_at <= c.deadline_at AS on_time, c.satisfaction,
           c.deadline_at < :now AS past_deadline, count(*) AS n
      FROM c LEFT JOIN rare r ON r.id = c.id
      LEFT JOIN bd ON bd.case_id = c.id LEFT JOIN late ON late.case_id = c.id
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
own AS (
    SELECT month, dept,
           sum(n) FILTER (WHERE {standing}) AS kept,
           sum(n) FILTER (WHERE {standing} AND depts IS NOT NULL) AS kept_bounced,
           sum(n) FILTER (WHERE {taken} AND NOT late) AS realtime,
           sum(n) FILTER (WHERE status IN ('closed', 'evaluated')) AS completed,
           sum(n) FILTER (WHERE status IN ('closed', 'evaluated') AND on_time) AS on_time,
           sum(n) FILTER (WHERE satisfaction IS NOT NULL) AS evaluations,
           sum(n) FILTER (WHERE satisfaction >= 4) AS satisfied,
           sum(n) FILTER (WHERE status IN ('dispatched', 'in_progress') AND past_deadline)
               AS overdue_open
      FROM g GROUP BY 1, 2),
bounced AS (  -- dispatches of bounced cases, by the department they went to
    SELECT g.month, x.dept, sum(g.n) AS n
      FROM g CROSS JOIN LATERAL unnest(g.depts) AS x(dept)
     GROUP BY 1, 2)
SELECT coalesce(o.month, b.month) AS month, coalesce(o.dept, b.dept) AS code, d.name,
       coalesce(o.kept, 0) - coalesce(o.kept_bounced, 0) + coalesce(b.n, 0) AS received,
       coalesce(b.n, 0) - coalesce(o.kept_bounced, 0) AS bounces,
       coalesce(o.realtime, 0) AS realtime, coalesce(o.completed, 0) AS completed,
       coalesce(o.on_time, 0) AS on_time, coalesce(o.evaluations, 0) AS evaluations,
       coalesce(o.satisfied, 0) AS satisfied, coalesce(o.overdue_open, 0) AS overdue_open
  FROM own o
  FULL JOIN bounced b ON b.dept = o.dept AND b.month IS NOT DISTINCT FROM o.month
  LEFT JOIN department d ON d.code = coalesce(o.dept, b.dept) AND d.valid_to IS NULL
 WHERE coalesce(o.kept, 0) - coalesce(o.kept_bounced, 0) + coalesce(b.n, 0) > 0
 ORDER BY 1, 2"""

_CENTRE = """
WITH c AS ({cases}),
rare AS ({rare}),
nb AS (SELECT b.case_id, count(*) AS n FROM case_event b
        WHERE b.action = 'bounce' AND b.at >= :since GROUP BY b.case_id),
g AS (
    SELECT c.month, {key} AS code, c.status, r.cancel_standing, r.fed_back,
           coalesce(nb.n, 0) AS bounces, count(*) AS n
      FROM c LEFT JOIN rare r ON r.id = c.id LEFT JOIN nb ON nb.case_id = c.id
     GROUP BY 1, 2, 3, 4, 5, 6),
f AS (
    SELECT month, code, sum(n) AS reported,
           coalesce(sum(n) FILTER (WHERE {standing}), 0) + sum(n * bounces) AS dispatches,
           sum(n * bounces) AS bounces,
           coalesce(sum(n) FILTER (WHERE {standing} OR bounces > 0), 0) AS dispatched_cases,
           coalesce(sum(n) FILTER (WHERE ({standing} OR bounces > 0) AND {fed_back}), 0)
               AS fed_back
      FROM g GROUP BY 1, 2)
SELECT f.month, f.code, {name} AS name, f.reported, f.dispatches, f.bounces,
       f.dispatched_cases, f.fed_back
  FROM f ORDER BY 1, 2"""

_GRID = """
WITH c AS ({cases}),
rare AS ({rare}),
cv AS (SELECT v.case_id FROM case_event v
        WHERE v.action = 'verify' AND v.role = 'centre' AND v.at >= :since),
g AS (
    SELECT c.month, c.grid_code AS code, c.status, r.accepted,
           cv.case_id IS NOT NULL AS centre_verified, count(*) AS n
      FROM c LEFT JOIN rare r ON r.id = c.id AND c.status = 'cancelled'
      LEFT JOIN cv ON cv.case_id = c.id AND c.status = 'closed'
     WHERE c.grid_code IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5),
f AS (
    SELECT month, code, sum(n) AS reported,
           coalesce(sum(n) FILTER (WHERE status = 'merged'), 0) AS duplicates,
           coalesce(sum(n) FILTER (WHERE {accepted}), 0) AS accepted,
           coalesce(sum(n) FILTER (WHERE status IN ('closed', 'evaluated')), 0) AS closed,
           coalesce(sum(n) FILTER (WHERE status = 'evaluated' OR centre_verified), 0)
               AS called_back
      FROM g GROUP BY 1, 2)
SELECT f.month, f.code, {name} AS name, f.reported, f.duplicates, f.accepted, f.closed,
       f.called_back
  FROM f ORDER BY 1, 2"""


def reference_sql(unit: str, monthly: bool, filters: str, *, folded: bool = False) -> str:
    """The old event-reading SQL of one table (same parameters as layers.kpis).
    It has no lineage folding: the comparison runs on unfolded tables only."""
    assert not folded, "the reference SQL does not fold lineages"
    month = "date_trunc('month', c.created_at AT TIME ZONE :tz)" if monthly else \
        "CAST(NULL AS timestamp)"
    parts = {"cases": _CASES.format(month=month, filters=filters), "rare": _RARE,
             "standing": _STANDING, "taken": _TAKEN, "fed_back": _FED_BACK,
             "accepted": _ACCEPTED}
    if unit == "department":
        return _DEPARTMENT.format(**parts)
    unit_name = ("(SELECT max(u.name) FROM grid_unit u WHERE u.code = f.code "
                 "AND u.generation_high IS NULL)")
    if unit == "grid":
        return _GRID.format(**parts, name=unit_name)
    if unit == "street":
        return _CENTRE.format(**parts, key="c.street_code", name=unit_name)
    return _CENTRE.format(**parts, key="CAST('city' AS text)",
                          name="CAST('whole city' AS text)")


def backfill_sql() -> str:
    """Migration 0005's UPDATE that derives the facts kept on case rows from case_event."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "alembic" / "versions" / "0005_case_facts.py"
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return str(mod.BACKFILL)
