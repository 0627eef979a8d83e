"""Partial indexes that name states in their predicate (the planner uses them only if the
queries name the same states) agree with the code's lists."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import escalation, workflow

VERSIONS = Path(__file__).parents[2] / "alembic" / "versions"


def _migration(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, VERSIONS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _predicate(session: Session, index: str) -> str:
    pred = session.scalar(text(
        "SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :n"), {"n": index})
    assert pred is not None, index
    return str(pred)


@pytest.mark.parametrize(("migration", "index", "states", "code"), [
    ("0010_duplicate_rules", "case_open_geom", "OPEN", workflow.OPEN),
    ("0011_case_escalating_index", "case_escalating", "ESCALATING", escalation.ESCALATING),
])
def test_index_states_match_the_code(session: Session, migration: str, index: str,
                                     states: str, code: tuple[str, ...]) -> None:
    assert tuple(getattr(_migration(migration), states)) == code
    pred = _predicate(session, index)
    for state in workflow.STATES:
        assert (f"'{state}'" in pred) == (state in code), (index, state)


def test_the_escalating_index_stops_at_the_top_level(session: Session) -> None:
    assert max(escalation.LEVELS) == _migration("0011_case_escalating_index").TOP
    assert f"escalation < {max(escalation.LEVELS)}" in _predicate(session, "case_escalating")
