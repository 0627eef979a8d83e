"""`gridops grids validate`: the nested grid."""

from __future__ import annotations

from typing import Annotated

import typer

from etl.commands.common import load_settings, out

app = typer.Typer(help="The nested grid: generations and invariants.", no_args_is_help=True)


@app.command("validate")
def grids_validate(generation: Annotated[int | None, typer.Option()] = None) -> None:
    """Check the nested-grid invariants of a generation in PostGIS."""
    from layers import grids
    from layers.db import database_url, make_engine, make_sessionmaker

    s = load_settings()
    engine = make_engine(database_url(s, start=True))
    with make_sessionmaker(engine)() as session:
        gen = grids.generation_at(session, generation=generation)
        found = grids.validate_generation(session, gen.id, s)
    for v in found:
        out.print(str(v), highlight=False)
    out.print(f"generation {gen.id}: {len(found)} violation(s) "
              f"(tolerance {s.topology_tolerance_m2} m²)")
    if found:
        raise typer.Exit(code=1)
