"""Performance figures (考核) from the case log: per department, per centre (the whole city or
a street) and per grid, with a composite score, six grades (A+ ... E) and ranks.

One SQL round trip and one pass over the period's cases (by created_at) per table (the
department table adds one over the period's few bounced cases, on their own index). The facts
the figures need beyond a case's state live on the case row, kept by layers.case_actions.act at
every transition (and by the demo history loader; migration 0005 backfilled them from
case_event): when it was accepted, the standing dispatch, when that was taken, the first
feedback, the departments that bounced it, and the role that verified it. Nothing reads
the event log here.
"""

from __future__ import annotations

import csv
import io
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import lineage as lineage_mod
from layers import versioning
from spatial.errors import InvalidInput

UNITS = ("department", "centre", "street", "grid")

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


def load_config(path: Path | None) -> KpiConfig:
    """The KPI settings of a deployment (GRIDOPS_KPI_CONFIG, TOML): what the file gives
    replaces the default, unit by unit for the weights. A file that cannot be read or does
    not validate stops the start-up with the file's name and the reason."""
    config = KpiConfig()
    if path is None:
        return config
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"KPI config {path}: {e}") from None
    weights = {**config.weights, **raw.get("weights", {})}
    try:
        return KpiConfig.model_validate({**raw, "weights": weights})
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                          for err in e.errors())
        raise ValueError(f"KPI config {path}: {where}") from None


def check_year(name: str, d: datetime, shown: str | None = None) -> datetime:
    """A date a query may take: years 1900 to 9000 (422 naming the field otherwise; a
    window of days or a month around it stays within what datetime can hold)."""
    if not 1900 <= d.year <= 9000:
        raise InvalidInput(f"{name}: {shown or d.isoformat()} is out of range (years 1900 "
                           "to 9000)")
    return d


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
            check_year("month", first, repr(month))
            nxt = (first + timedelta(days=32)).replace(day=1)
            return cls(first, nxt, timezone)
        if since is None:
            local = now.astimezone(tz)
            since = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        until = until or now
        since, until = (d if d.tzinfo else d.replace(tzinfo=tz) for d in (since, until))
        check_year("since", since)
        check_year("until", until)
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
    lineage: dict[str, Any] | None = None  # {"code", "codes"}: the lineage counted

    def as_dict(self) -> dict[str, Any]:
        """The table as the JSON answer."""
        out = {"unit": self.unit, "period": self.period.as_dict(), "monthly": self.monthly,
               "as_of": self.as_of.isoformat(), "response_window_h": self.response_window_h,
               "definitions": DEFINITIONS[self.unit], "rows": self.rows}
        if self.lineage is not None:
            out["lineage"] = self.lineage
        return out

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

# The period's cases; one pass each table (the department table adds a pass over the few
# bounced cases, on their own index). The facts come from the row, where
# layers.case_actions.act keeps them at every transition (migration 0005): dispatched_at is the
# standing dispatch (None until dispatched and after a bounce), bounced_by the departments
# whose dispatches were bounced, in order.
_PERIOD = """
      FROM "case" c
     WHERE c.created_at >= :since AND c.created_at < :until{filters}"""

_DEPARTMENT = """
WITH own AS (  -- what the departments did with the dispatches that stand
    SELECT {month} AS month, c.owner_department AS dept,
           count(c.dispatched_at) AS kept,
           count(*) FILTER (WHERE c.taken_at <= c.dispatched_at + :window) AS realtime,
           count(c.closed_at) AS completed,  -- closed_at: closed or evaluated
           count(*) FILTER (WHERE c.closed_at <= c.deadline_at) AS on_time,
           count(c.satisfaction) AS evaluations,
           count(*) FILTER (WHERE c.satisfaction >= 4) AS satisfied,
           count(*) FILTER (WHERE c.deadline_at < :now
                              AND c.status IN ('dispatched', 'in_progress')) AS overdue_open
{period}
     GROUP BY 1, 2),
bounced AS (  -- bounced dispatches by the department they went to (index case_bounced)
    SELECT {month} AS month, x.dept, count(*) AS n
      FROM "case" c CROSS JOIN LATERAL unnest(c.bounced_by) AS x(dept)
     WHERE c.created_at >= :since AND c.created_at < :until
       AND c.bounced_by IS NOT NULL{filters}
     GROUP BY 1, 2)
SELECT coalesce(o.month, b.month) AS month, coalesce(o.dept, b.dept) AS code, d.name,
       coalesce(o.kept, 0) + coalesce(b.n, 0) AS received,
       coalesce(b.n, 0) AS bounces,
       coalesce(o.realtime, 0) AS realtime, coalesce(o.completed, 0) AS completed,
       coalesce(o.on_time, 0) AS on_time, coalesce(o.evaluations, 0) AS evaluations,
       coalesce(o.satisfied, 0) AS satisfied, coalesce(o.overdue_open, 0) AS overdue_open
  FROM own o
  FULL JOIN bounced b ON b.dept = o.dept AND b.month IS NOT DISTINCT FROM o.month
  LEFT JOIN department d ON d.code = coalesce(o.dept, b.dept) AND d.valid_to IS NULL
 WHERE coalesce(o.kept, 0) + coalesce(b.n, 0) > 0
 ORDER BY 1, 2"""

_CENTRE = """
WITH f AS (
    SELECT {month} AS month, {key} AS code, count(*) AS reported,
           count(c.dispatched_at) + coalesce(sum(cardinality(c.bounced_by)), 0)
               AS dispatches,
           coalesce(sum(cardinality(c.bounced_by)), 0) AS bounces,
           count(*) FILTER (WHERE c.dispatched_at IS NOT NULL OR c.bounced_by IS NOT NULL)
               AS dispatched_cases,
           count(*) FILTER (WHERE (c.dispatched_at IS NOT NULL OR c.bounced_by IS NOT NULL)
                              AND c.feedback_at IS NOT NULL) AS fed_back
{period}
     GROUP BY 1, 2)
SELECT f.month, f.code, {name} AS name, f.reported, f.dispatches, f.bounces,
       f.dispatched_cases, f.fed_back
  FROM f ORDER BY 1, 2"""

_GRID = """
WITH f AS (
    SELECT {month} AS month, c.grid_code AS code, count(*) AS reported,
           count(*) FILTER (WHERE c.status = 'merged') AS duplicates,
           count(c.accepted_at) AS accepted,
           count(*) FILTER (WHERE c.status IN ('closed', 'evaluated')) AS closed,
           count(*) FILTER (WHERE c.status = 'evaluated'
                              OR (c.status = 'closed' AND c.verified_role = 'centre'))
               AS called_back
{period}
       AND c.grid_code IS NOT NULL
     GROUP BY 1, 2)
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


def _sql(unit: str, monthly: bool, filters: str, *, folded: bool = False) -> str:
    """The unit's SQL; folded: the grid (or street) rows of a lineage counted as one row,
    under the code asked for (:lineage_code)."""
    month = "date_trunc('month', c.created_at AT TIME ZONE :tz)" if monthly else \
        "CAST(NULL AS timestamp)"
    parts = {"month": month, "period": _PERIOD.format(filters=filters), "filters": filters}
    if unit == "department":
        return _DEPARTMENT.format(**parts)
    unit_name = (f"(SELECT max(u.name) FROM grid_unit u WHERE u.code = f.code "
                 f"AND {versioning.current('u')})")
    if folded:  # an ended code has no current name: its last one
        unit_name = (f"coalesce({unit_name}, (SELECT u.name FROM grid_unit u "
                     "WHERE u.code = f.code ORDER BY u.generation_low DESC LIMIT 1))")
    if unit == "grid":
        grid = _GRID if not folded else _GRID.replace("c.grid_code AS code",
                                                      "CAST(:lineage_code AS text) AS code")
        return grid.format(**parts, name=unit_name)
    if unit == "street":
        key = "CAST(:lineage_code AS text)" if folded else "c.street_code"
        return _CENTRE.format(**parts, key=key, name=unit_name)
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
            category: str | None = None, grid: str | None = None,
            lineage: bool = False) -> KpiTable:
    """One table of figures for a unit over a period (one SQL round trip). grid / street:
    only the cases of that grid or street; lineage: of every code related to it through
    boundary changes (layers.lineage.lineage_codes, both ways), so a period spanning a
    change counts the grid and its predecessors and successors, and the grid (or street)
    table has one row for them, under the code asked for."""
    if unit not in UNITS:
        raise InvalidInput(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    if lineage and not (grid or street):
        raise InvalidInput("lineage: name the grid (or street) whose lineage is counted")
    if lineage and grid and street:
        raise InvalidInput("lineage: name a grid or a street, not both")
    config = config or KpiConfig()
    params: dict[str, Any] = {"since": period.since, "until": period.until,
                              "tz": period.timezone,
                              "window": timedelta(hours=config.response_window_h)}
    filters = ""
    related: dict[str, Any] | None = None
    grids = [grid] if grid else []
    streets = [street] if street else []
    if lineage:
        asked = grid or street or ""
        related = {"code": asked, "codes": lineage_mod.lineage_codes(session, asked)}
        params["lineage_code"] = asked
        if grid:
            grids = related["codes"]
        else:
            streets = related["codes"]
    if grids:
        filters += " AND c.grid_code = ANY(:grids)"
        params["grids"] = grids
    if streets:
        filters += " AND c.street_code = ANY(:streets)"
        params["streets"] = streets
    if category:
        filters += " AND c.category_code LIKE :category"
        params["category"] = category.replace("%", "").replace("_", r"\_") + "%"
    if department and unit != "department":
        filters += " AND c.owner_department = :department"
        params["department"] = department
    now = session.execute(text("SELECT clock_timestamp()")).scalar_one()
    params["now"] = now
    session.execute(text("SET LOCAL jit = off"))  # compiling costs more than it saves here
    folded = related is not None and unit == ("grid" if grid else "street")
    rows = [dict(r) for r in session.execute(text(_sql(unit, monthly, filters,
                                                        folded=folded)), params).mappings()]
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
    return KpiTable(unit, period, monthly, now, config.response_window_h, out, related)
