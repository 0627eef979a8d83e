"""Performance figures (考核) from the case log: per department, per centre (the whole city or
a street) and per grid, with a composite score, six grades (A+ ... E) and ranks.

One SQL round trip per table: the period's cases (by created_at) grouped by their state and
a few facts into small groups first, then FILTER sums. Most facts follow from a case's state
through the state machine (layers/workflow.py): a dispatch is answered by one take or one
bounce, a case is dispatched again only after a bounce, and owner_department names the last
dispatch. Events are read only where the state cannot tell: take times (the response
window), the departments of bounced cases' dispatches, bounces, centre callbacks, and the
few suspended, cancelled or reopened cases.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from spatial.errors import InvalidInput

UNITS = ("department", "centre", "street", "grid")

# What keeps a year of a million cases fast (for a migration): events of one kind in case
# order without the heap (index-only), the departments of dispatches, the period's cases.
SUGGESTED_INDEXES = (
    "CREATE INDEX case_event_action_case ON case_event (action, case_id, at) INCLUDE (role)",
    "CREATE INDEX case_event_dispatch ON case_event (case_id, at) INCLUDE (data) "
    "WHERE action = 'dispatch'",
    'CREATE INDEX case_kpi ON "case" (created_at) INCLUDE (id, status, owner_department, '
    "deadline_at, closed_at, satisfaction, grid_code, street_code, category_code)",
)

DEFINITIONS: dict[str, dict[str, str]] = {
    "department": {
        "received": "dispatches to the department (a re-dispatch to it counts again)",
        "realtime_rate": "实时处置率: dispatches taken within the response window / received",
        "completion_rate": "办结率: its cases closed or evaluated / received",
        "on_time_rate": "its closed cases closed (verified) by the deadline / closed",
        "satisfaction_rate": "满意率: evaluations with satisfaction >= 4 / evaluations",
        "bounces": "dispatches it bounced back (退单)",
        "overdue_open": "its cases still dispatched or in progress past the deadline, now",
    },
    "centre": {
        "correct_dispatch_rate": "正确交办率: dispatches not bounced back / dispatches",
        "feedback_rate": "部门反馈率: dispatched cases with a department feedback / dispatched",
    },
    "grid": {
        "reported": "问题发现数: cases reported in the grid",
        "adoption_rate": "信息录用率: cases accepted / reported, merged duplicates excluded",
        "callback_rate": "回访率: closed cases verified by the centre (callback) or "
                         "evaluated / closed",
    },
}
DEFINITIONS["street"] = DEFINITIONS["centre"]


class GradeScale(BaseModel):
    """Grades from a composite score: the first threshold reached, else the lowest grade."""

    thresholds: list[tuple[str, float]] = Field(default_factory=lambda: [
        ("A+", 0.95), ("A", 0.90), ("B", 0.80), ("C", 0.70), ("D", 0.60)])
    lowest: str = "E"

    @field_validator("thresholds")
    @classmethod
    def _descending(cls, v: list[tuple[str, float]]) -> list[tuple[str, float]]:
        if [t for _, t in v] != sorted((t for _, t in v), reverse=True):
            raise ValueError("grade thresholds must be in descending order")
        return v

    def grade(self, score: float | None) -> str | None:
        """The grade of a score (None without a score)."""
        if score is None:
            return None
        return next((g for g, t in self.thresholds if score >= t - 1e-12), self.lowest)


class KpiConfig(BaseModel):
    """What the centre may tune: response window, score weights per unit, grade thresholds."""

    response_window_h: float = Field(default=2.0, gt=0,
                                     description="实时处置: taken within this after dispatch")
    weights: dict[str, dict[str, float]] = Field(default_factory=lambda: {
        "department": {"realtime_rate": 0.2, "completion_rate": 0.3, "on_time_rate": 0.2,
                       "satisfaction_rate": 0.3},
        "centre": {"correct_dispatch_rate": 0.6, "feedback_rate": 0.4},
        "street": {"correct_dispatch_rate": 0.6, "feedback_rate": 0.4},
        "grid": {"adoption_rate": 0.6, "callback_rate": 0.4},
    })
    grades: GradeScale = Field(default_factory=GradeScale)

    def score(self, unit: str, row: dict[str, Any]) -> float | None:
        """Weighted mean of the unit's rates that have a denominator (weights renormalised)."""
        pairs = [(w, row[k]) for k, w in self.weights.get(unit, {}).items()
                 if w > 0 and row.get(k) is not None]
        total = sum(w for w, _ in pairs)
        return sum(w * r for w, r in pairs) / total if total else None


@dataclass(frozen=True)
class Period:
    """Cases reported in [since, until), months counted in a time zone."""

    since: datetime
    until: datetime
    timezone: str

    @classmethod
    def of(cls, *, since: datetime | None, until: datetime | None, month: str | None,
           timezone: str, now: datetime) -> Period:
        """From ?month=YYYY-MM, or since/until (default: the current month so far)."""
        tz = ZoneInfo(timezone)
        if month is not None:
            if since is not None or until is not None:
                raise InvalidInput("month: give a month or since/until, not both")
            try:
                first = datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
            except ValueError:
                raise InvalidInput(f"month: {month!r} is not YYYY-MM") from None
            nxt = (first + timedelta(days=32)).replace(day=1)
            return cls(first, nxt, timezone)
        if since is None:
            local = now.astimezone(tz)
            since = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        until = until or now
        since, until = (d if d.tzinfo else d.replace(tzinfo=tz) for d in (since, until))
        if until <= since:
            raise InvalidInput(f"until: {until.isoformat()} is not after since "
                               f"{since.isoformat()}")
        return cls(since, until, timezone)

    def as_dict(self) -> dict[str, Any]:
        """The period as answers show it."""
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "by": "case created_at (cases reported in [since, until))",
                "timezone": self.timezone}


@dataclass
class KpiTable:
    """One table of figures with scores, grades and ranks."""

    unit: str
    period: Period
    monthly: bool
    as_of: datetime
    response_window_h: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The table as the JSON answer."""
        return {"unit": self.unit, "period": self.period.as_dict(), "monthly": self.monthly,
                "as_of": self.as_of.isoformat(), "response_window_h": self.response_window_h,
                "definitions": DEFINITIONS[self.unit], "rows": self.rows}

    def csv(self) -> str:
        """The table as CSV (one row per unit and month, the period in every row)."""
        buf = io.StringIO()
        cols = ["since", "until", *(["month"] if self.monthly else []), "unit", "code", "name",
                *[k for k in (self.rows[0] if self.rows else {})
                  if k not in ("month", "code", "name")]]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for r in self.rows:
            w.writerow({"since": self.period.since.isoformat(),
                        "until": self.period.until.isoformat(), "unit": self.unit, **r})
        return buf.getvalue()


# ---------------------------------------------------------------------------------- SQL

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


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _rates(unit: str, r: dict[str, Any]) -> dict[str, Any]:
    """Counts -> the unit's rates (None where the denominator is zero)."""
    if unit == "department":
        return {"realtime_rate": _ratio(r["realtime"], r["received"]),
                "completion_rate": _ratio(r["completed"], r["received"]),
                "on_time_rate": _ratio(r["on_time"], r["completed"]),
                "satisfaction_rate": _ratio(r["satisfied"], r["evaluations"])}
    if unit in ("centre", "street"):
        return {"correct_dispatch_rate": _ratio(r["dispatches"] - r["bounces"],
                                                r["dispatches"]),
                "feedback_rate": _ratio(r["fed_back"], r["dispatched_cases"])}
    return {"adoption_rate": _ratio(r["accepted"], r["reported"] - r["duplicates"]),
            "callback_rate": _ratio(r["called_back"], r["closed"])}


def _sql(unit: str, monthly: bool, filters: str) -> str:
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


def _rank(rows: list[dict[str, Any]]) -> None:
    """Rank within each month (or the whole period): competition ranking by score."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("month"), []).append(r)
    for group in groups.values():
        scored = sorted((r for r in group if r["score"] is not None),
                        key=lambda r: -r["score"])
        for r in group:
            r["rank"], r["ranked"] = None, len(scored)
        for i, r in enumerate(scored):
            same = i > 0 and abs(r["score"] - scored[i - 1]["score"]) < 1e-12
            r["rank"] = scored[i - 1]["rank"] if same else i + 1


def compute(session: Session, unit: str, period: Period, *, config: KpiConfig | None = None,
            monthly: bool = False, department: str | None = None, street: str | None = None,
            category: str | None = None) -> KpiTable:
    """One table of figures for a unit over a period (one SQL round trip)."""
    if unit not in UNITS:
        raise InvalidInput(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    config = config or KpiConfig()
    params: dict[str, Any] = {"since": period.since, "until": period.until,
                              "tz": period.timezone,
                              "window": timedelta(hours=config.response_window_h)}
    filters = ""
    if street:
        filters += " AND c.street_code = :street"
        params["street"] = street
    if category:
        filters += " AND c.category_code LIKE :category"
        params["category"] = category.replace("%", "").replace("_", r"\_") + "%"
    if department and unit != "department":
        filters += " AND c.owner_department = :department"
        params["department"] = department
    now = session.execute(text("SELECT clock_timestamp()")).scalar_one()
    params["now"] = now
    session.execute(text("SET LOCAL jit = off"))  # compiling costs more than it saves here
    rows = [dict(r) for r in session.execute(text(_sql(unit, monthly, filters)), params)
            .mappings()]
    out: list[dict[str, Any]] = []
    for r in rows:
        month = r.pop("month")
        figures = {k: v if k in ("code", "name") or v is None else int(v)
                   for k, v in r.items()}
        rates = _rates(unit, figures)
        raw = config.score(unit, rates)
        score = None if raw is None else round(raw, 4)
        row = {**({"month": f"{month:%Y-%m}"} if monthly else {}), **figures,
               **{k: None if v is None else round(v, 4) for k, v in rates.items()},
               "score": score, "grade": config.grades.grade(score)}
        out.append(row)
    _rank(out)
    if department and unit == "department":
        out = [r for r in out if r["code"] == department]
    return KpiTable(unit, period, monthly, now, config.response_window_h, out)
