"""The versioning vocabulary, written once: which grid rows belong to a generation, which
layer rows are valid at a time, and what "current" means (the active generation, never a
pending draft). SQL fragments for text queries and ORM conditions for select()s.

Grid units carry MapIt's `generation_low`/`generation_high` (inclusive; null high = not
ended yet). A null high does not mean "current": while a draft generation is pending, its
new rows have a null high too. "Current" is always "valid in the active generation".
Layer rows carry `valid_from`/`valid_to` (half-open: valid_from <= t < valid_to).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select

from layers.models import Generation

# the id of the active generation, as a scalar subquery (null when none is active)
ACTIVE_GENERATION_SQL = "(SELECT id FROM generation WHERE active)"


def in_generation(alias: str = "u", gen: str = ":g") -> str:
    """SQL: the grid row `alias` is valid in generation `gen` (a bind like :g, or SQL)."""
    return (f"{alias}.generation_low <= {gen} AND ({alias}.generation_high IS NULL "
            f"OR {alias}.generation_high >= {gen})")


def current(alias: str = "u") -> str:
    """SQL: the grid row `alias` is valid in the active generation (never a draft's row)."""
    return in_generation(alias, ACTIVE_GENERATION_SQL)


def finest_level(gen: str = ":g", alias: str = "v") -> str:
    """SQL: the finest level present in generation `gen`, as a scalar subquery."""
    return f"(SELECT max({alias}.level) FROM grid_unit {alias} WHERE {in_generation(alias, gen)})"


def valid_at(alias: str, at: str = ":at") -> str:
    """SQL: the layer row `alias` is valid at time `at` (valid_from <= at < valid_to)."""
    return (f"{alias}.valid_from <= {at} AND ({alias}.valid_to IS NULL "
            f"OR {alias}.valid_to > {at})")


def live(alias: str) -> str:
    """SQL: the layer row `alias` is the current version (not ended, not retired)."""
    return f"{alias}.valid_to IS NULL"


# ---------------------------------------------------------------- ORM forms


def unit_in_generation(model: Any, gen_id: int | ColumnElement[Any]) -> ColumnElement[bool]:
    """ORM: rows of a generation-versioned model valid in generation gen_id."""
    return and_(model.generation_low <= gen_id,
                or_(model.generation_high.is_(None), model.generation_high >= gen_id))


def unit_current(model: Any) -> ColumnElement[bool]:
    """ORM: rows valid in the active generation."""
    active = select(Generation.id).where(Generation.active).scalar_subquery()
    return unit_in_generation(model, active)


def row_valid_at(model: Any, at: datetime | None) -> ColumnElement[bool]:
    """ORM: rows of a time-versioned model valid at `at`; the current version when None."""
    if at is None:
        return model.valid_to.is_(None)
    return and_(model.valid_from <= at, or_(model.valid_to.is_(None), model.valid_to > at))
