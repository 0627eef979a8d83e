"""The schema is only built by alembic: upgrade, downgrade to nothing, upgrade again."""

from __future__ import annotations

from sqlalchemy import inspect, text

from layers.db import downgrade, make_engine, upgrade

TABLES = {"grid_level", "generation", "grid_unit", "grid_piece", "department", "category",
          "asset", "ownership_area", "department_zone", "patrol_team", "patrol_assignment",
          "grid_role", "layer_event", "case", "case_event", "api_token"}


def _tables(url: str) -> set[str]:
    eng = make_engine(url)
    try:
        return set(inspect(eng).get_table_names()) & TABLES
    finally:
        eng.dispose()


def test_upgrade_downgrade_upgrade(scratch_db: str) -> None:
    upgrade(scratch_db)
    assert _tables(scratch_db) == TABLES
    downgrade(scratch_db, "base")
    assert _tables(scratch_db) == set()
    upgrade(scratch_db)
    assert _tables(scratch_db) == TABLES
    eng = make_engine(scratch_db)
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM grid_level")).scalar() == 4
        idx = {r[0] for r in c.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('grid_unit', 'grid_piece')"))}
    eng.dispose()
    assert {"idx_grid_unit_geom", "idx_grid_piece_geom", "grid_unit_code_low"} <= idx
