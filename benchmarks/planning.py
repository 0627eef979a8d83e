"""`python -m benchmarks.planning`: a planner's single edit of a draft, on the demo city and
on the 100,000-grid megacity. Each edit (split by a line, merge the parts back, move a
grid to the neighbouring community, redraw a shared edge) is validated incrementally: only
the units it changes, their same-level neighbours and their parents are checked.

Targets (#15): one edit <= 0.2 s on the demo city, <= 1 s on the megacity, whole edit
(plan, parents following, incremental check, write, audit). Baseline in the same run: the
whole-generation validation of the same draft (`validate_generation`, in memory with
GEOS), what a planner would have to run after an edit without the incremental check."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shapely import LineString
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from layers import drafts, grids
from layers.db import make_engine
from layers.settings import Settings

from .env import cities, load_grid, throwaway_cluster
from .report import Report, Target

DEMO_S, MEGA_S = 0.2, 1.0


def _pairs(session: Session, same_parent: bool, n: int) -> list[tuple[str, str]]:
    """n pairs of finest grids sharing an edge over 50 m (siblings or not), from a sample
    of grids (a self-join of the whole megacity would take minutes)."""
    op = "=" if same_parent else "<>"
    rows = session.execute(text(f"""
        WITH g AS (SELECT * FROM grid_unit WHERE generation_high IS NULL
                    AND level = (SELECT max(level) FROM grid_unit)),
             s AS (SELECT * FROM g ORDER BY md5(code) LIMIT :sample)
        SELECT DISTINCT ON (a.code) a.code AS a, b.code AS b FROM s a JOIN g b
          ON b.code <> a.code AND b.parent_code {op} a.parent_code AND a.geom && b.geom
         WHERE ST_Length(ST_Transform(ST_Intersection(ST_Boundary(a.geom),
                         ST_Boundary(b.geom)), 4549)) > 50
         ORDER BY a.code, b.code"""), {"sample": 40 * n}).all()
    pairs: list[tuple[str, str]] = []
    used: set[str] = set()
    for r in rows:
        if r.a not in used and r.b not in used:
            pairs.append((r.a, r.b))
            used |= {r.a, r.b}
    return pairs[:n]


def _cut(geom: Any) -> LineString:
    p = geom.representative_point()
    _, y0, _, y1 = geom.bounds
    return LineString([(p.x, y0 - 0.001), (p.x, y1 + 0.001)])


def _edits(session: Session, gen_id: int, settings: Settings, samples: int
           ) -> dict[str, list[float]]:
    """Each kind of edit `samples` times, each in a savepoint rolled back after it."""
    times: dict[str, list[float]] = {"split": [], "merge": [], "move": [], "redraw": []}

    def timed(kind: str, fn: Callable[[], Any]) -> Any:
        sp = session.begin_nested()
        t0 = time.perf_counter()
        try:
            out = fn()
        finally:
            times[kind].append(time.perf_counter() - t0)
            sp.rollback()
        return out

    siblings = _pairs(session, True, samples + 1)
    cousins = _pairs(session, False, samples)
    a0, b0 = siblings.pop()  # warm-up (PROJ's database, GEOS, the session), not timed
    sp0 = session.begin_nested()
    drafts.merge(session, gen_id, [a0, b0], settings, actor="bench")
    sp0.rollback()
    for a, b in siblings:
        g = drafts.unit(session, gen_id, a).geom
        timed("split", lambda a=a, g=g: drafts.split(session, gen_id, a, settings,
                                                     actor="bench", line=_cut(g)))
        timed("merge", lambda a=a, b=b: drafts.merge(session, gen_id, [a, b], settings,
                                                     actor="bench"))
    for a, b in cousins:
        parent = drafts.unit(session, gen_id, a).parent_code
        assert parent is not None
        timed("move", lambda b=b, parent=parent: drafts.move(session, gen_id, b, parent,
                                                             settings, actor="bench"))
        ga = drafts.unit(session, gen_id, a).geom
        gb = drafts.unit(session, gen_id, b).geom
        bite = ga.union(gb).intersection(gb.buffer(0).envelope).intersection(
            gb.boundary.intersection(ga.boundary).buffer(0.0003))
        timed("redraw", lambda a=a, b=b, ga=ga, bite=bite: drafts.redraw(
            session, gen_id, a, b, settings, actor="bench", geometry=ga.union(bite)))
    return times


def run_city(rep: Report, engine: Engine, settings: Settings, name: str, specs: list[Any],
             limit_s: float, samples: int) -> None:
    sec = f"planning ({name})"
    loaded = load_grid(engine, specs, settings, f"bench-{name}")
    if loaded.generation is None:
        raise RuntimeError(f"the {name} grid did not load: {loaded.error}")
    with Session(engine) as s, s.begin():
        s.execute(text("ANALYZE grid_unit"))
        draft = drafts.create_draft(s, settings, actor="bench")
        times = _edits(s, draft.id, settings, samples)
        t0 = time.perf_counter()
        full = grids.validate_generation(s, draft.id, settings)
        t_full = time.perf_counter() - t0
        s.rollback()
    assert not full, full[:3]
    rep.add(sec, "baseline: whole-generation validation", t_full, "s",
            note=f"{len(specs):,} units")
    worst = 0.0
    for kind, ts in times.items():
        if not ts:
            continue
        med, top = statistics.median(ts), max(ts)
        worst = max(worst, top)
        rep.add(sec, f"one {kind}, median of {len(ts)}", med, "s", Target("<=", limit_s))
        rep.add(sec, f"one {kind}, slowest", top, "s", Target("<=", limit_s))
    if worst:
        rep.add(sec, "whole validation / slowest edit", t_full / worst, "x",
                note="how much the incremental check saves")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.planning")
    ap.add_argument("--grids", type=int, default=100_000, help="megacity size (0: skip)")
    ap.add_argument("--samples", type=int, default=5, help="edits of each kind per city")
    ap.add_argument("--json", type=Path, default=Path("/tmp/gridops-bench-planning.json"))
    args = ap.parse_args(argv)
    rep = Report()
    with throwaway_cluster() as cluster:
        settings = Settings(database_url=cluster.url(), home=cluster.datadir.parent)
        for name, specs, url in cities(cluster, args.grids, "plan"):
            engine = make_engine(url)
            try:
                run_city(rep, engine, settings.model_copy(update={"database_url": url}),
                         name, specs, DEMO_S if name == "demo" else MEGA_S, args.samples)
            finally:
                engine.dispose()
    rep.finish("planning: one edit of a draft, validated incrementally", args.json)


if __name__ == "__main__":
    main()
