"""Performance figures (考核) as answered by /kpis in JSON (the CSV answer has one line a
row, the same columns)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


class KpiPeriod(BaseModel):
    """The period the figures cover."""

    since: datetime
    until: datetime
    by: str
    timezone: str


class KpiRow(BaseModel):
    """One unit (and month) with its counts and rates (which ones depend on the unit:
    see `definitions`), its composite score, grade and rank."""

    model_config = ConfigDict(extra="allow")

    month: str | SkipJsonSchema[None] = Field(default=None,
                                              description="YYYY-MM (only with monthly)")
    code: str | None = Field(description="the unit's code (null: cases in no street)")
    name: str | None
    score: float | None = Field(description="weighted mean of the rates that have a "
                                            "denominator")
    grade: str | None
    rank: int | None = Field(description="within the month (or the whole period)")
    ranked: int = Field(description="how many units were ranked with it")


class GradeScaleOut(BaseModel):
    """Grades from a composite score: the first threshold reached, else the lowest."""

    thresholds: list[tuple[str, float]]
    lowest: str


class KpiScoring(BaseModel):
    """What the grades mean here: the unit's weights and the grade thresholds."""

    weights: dict[str, float]
    grades: GradeScaleOut


class KpiOut(BaseModel):
    """One table of figures with scores, grades and ranks."""

    unit: str = Field(description="department, centre, street or grid")
    period: KpiPeriod
    monthly: bool
    as_of: datetime
    response_window_h: float
    definitions: dict[str, str] = Field(description="what each figure counts")
    rows: list[KpiRow]
    scoring: KpiScoring
