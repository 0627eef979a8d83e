"""Hot spots from the case table: counts per hexagon equal h3's own parents of the stored
cells, chronic spots equal month-by-month Gi*, the filters and bad input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import h3
import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from etl.demo_history import generate_history
from layers import grids, hotspots
from layers.settings import Settings
from spatial import hotspots as gi
from spatial.errors import InvalidInput

END = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history(full_engine: Engine, settings: Settings) -> Iterator[Session]:
    """Six thousand cases of the year before END, rolled back after the module."""
    with full_engine.connect() as conn:
        trans = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
            generate_history(s, cases=6000, year_end=END, seed=11, settings=settings)
            yield s
        trans.rollback()


def _gen(s: Session) -> int:
    gen = grids.active_generation(s)
    assert gen is not None
    return gen.id


@pytest.mark.parametrize("res", [7, 8, 9])
def test_counts_are_h3_parents_of_the_stored_cells(history: Session, res: int) -> None:
    f = hotspots.CaseFilter(END - timedelta(days=120), END)
    cells, counts, _ = hotspots.cell_counts(history, f, res)
    rows = history.execute(text(
        """SELECT h3_cell FROM "case" WHERE created_at >= :a AND created_at < :b AND inside
             AND h3_cell IS NOT NULL AND status NOT IN ('merged', 'rejected')"""),
        {"a": f.since, "b": f.until}).scalars().all()
    want = Counter(h3.str_to_int(h3.cell_to_parent(c, res)) for c in rows)
    assert dict(zip((int(c) for c in cells), (int(n) for n in counts), strict=True)) == want
    assert sum(want.values()) > 500


def test_hotspots_cover_the_city_and_find_the_clusters(history: Session) -> None:
    areas = hotspots.StudyAreas()
    f = hotspots.CaseFilter(END - timedelta(days=365), END)
    r = hotspots.hotspots(history, areas, _gen(history), f, 8)
    nb, g = r["nb"], r["gi"]
    assert nb.n > 500  # Songjiang is ~605 km², a res-8 cell ~0.74 km²
    assert int(r["counts"].sum()) == int(hotspots.cell_counts(history, f, 8)[1].sum())
    assert (g.bin == 3).sum() > 0  # the demo history clusters at markets and stations
    hot = r["counts"][g.bin == 3].mean()
    assert hot > 3 * r["counts"].mean()
    feats = hotspots.hotspot_features(r)
    assert all(ft["properties"]["count"] > 0 or ft["properties"]["bin"] != 0 for ft in feats)
    ring = feats[0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 7
    # the neighbourhood is cached per generation and resolution
    assert areas.get(history, _gen(history), 8) is areas.get(history, _gen(history), 8)


def test_filters_narrow_the_counts(history: Session) -> None:
    f = hotspots.CaseFilter(END - timedelta(days=365), END)
    total = hotspots.cell_counts(history, f, 8)[1].sum()
    cat = history.execute(text('SELECT category_code FROM "case" GROUP BY 1 '
                               "ORDER BY count(*) DESC LIMIT 1")).scalar_one()
    dept = history.execute(text('SELECT owner_department FROM "case" WHERE owner_department '
                                "IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
                           ).scalar_one()
    by_cat = hotspots.cell_counts(history, hotspots.CaseFilter(f.since, f.until, cat), 8)[1]
    by_major = hotspots.cell_counts(history, hotspots.CaseFilter(f.since, f.until, cat[:3]),
                                    8)[1]
    by_dept = hotspots.cell_counts(history, hotspots.CaseFilter(f.since, f.until, None, dept),
                                   8)[1]
    assert 0 < by_cat.sum() <= by_major.sum() < total
    assert 0 < by_dept.sum() < total


def test_chronic_spots_are_hot_month_after_month(history: Session, settings: Settings
                                                 ) -> None:
    areas = hotspots.StudyAreas()
    out = hotspots.chronic(history, areas, _gen(history), None, END + timedelta(days=3),
                           settings.timezone, months=6, min_run=3, res=8)
    assert out["months"] == ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
    assert out["spots"], "the demo's markets stay hot"
    # recompute each month on its own over the same study area: the same cells are hot
    z = ZoneInfo(settings.timezone)
    a0 = datetime(2026, 1, 1, tzinfo=z)
    all_cells = hotspots.cell_counts(history, hotspots.CaseFilter(a0, END), 8)[0]
    nb = hotspots.study_area(history, areas, _gen(history), 8, all_cells)
    hot_by_month = {}
    for label in out["months"]:
        a = datetime.strptime(label, "%Y-%m").replace(tzinfo=z)
        b = (a + timedelta(days=32)).replace(day=1)
        cells, counts, _ = hotspots.cell_counts(history, hotspots.CaseFilter(a, b), 8)
        g = gi.gi_star(hotspots.align(nb, cells, counts), nb)
        hot_by_month[label] = {h3.int_to_str(int(c)) for c in nb.cells[g.bin >= 2]}
    for s in out["spots"]:
        months = [m for m in out["months"] if s["h3"] in hot_by_month[m]]
        assert months == s["months_hot"]
        assert s["longest_run"] >= 3
        flags = np.array([[m in months for m in out["months"]]])
        assert gi.longest_run(flags)[0] == s["longest_run"]
    assert out["grids"] == [] or out["grids"][0]["longest_run"] >= 3


def test_bad_input_is_a_clear_422() -> None:
    now = datetime(2026, 5, 5, tzinfo=UTC)
    with pytest.raises(InvalidInput, match=r"res: 12 is outside 6\.\.10"):
        hotspots.check_res(12)
    with pytest.raises(InvalidInput, match="period: 'last week'"):
        hotspots.period_bounds("last week", None, None, "Asia/Shanghai", now)
    with pytest.raises(InvalidInput, match="not both"):
        hotspots.period_bounds("30d", now, None, "Asia/Shanghai", now)
    with pytest.raises(InvalidInput, match="is not after since"):
        hotspots.period_bounds(None, now, now - timedelta(days=1), "Asia/Shanghai", now)
    a, b = hotspots.period_bounds("2026-02", None, None, "Asia/Shanghai", now)
    assert (b - a).days == 28 and a.utcoffset() == timedelta(hours=8)
    a, b = hotspots.period_bounds(None, None, None, "Asia/Shanghai", now)
    assert b == now and b - a == timedelta(days=30)
