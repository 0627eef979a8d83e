"""`gridops grids validate|import|export`: the nested grid."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from etl.commands.common import err, fail, load_settings, out

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


def _field_map(values: list[str]) -> dict[str, str]:
    """--field target=FIELD pairs."""
    out_: dict[str, str] = {}
    for v in values:
        target, sep, col = v.partition("=")
        if not sep or not target.strip() or not col.strip():
            raise fail(f"--field {v!r}: write it target=FIELD, e.g. code=GRIDCODE")
        out_[target.strip()] = col.strip()
    return out_


@app.command("import")
def grids_import(
    files: Annotated[list[Path], typer.Argument(help="GeoPackage, Shapefile (.shp or .zip), "
                                                "GeoJSON, FlatGeobuf or CSV; one per level "
                                                "or all levels in one", exists=True)],
    layer: Annotated[list[str] | None, typer.Option(help="layer(s) to read (default: every "
                                                    "polygon layer)")] = None,
    encoding: Annotated[str | None, typer.Option(help="text encoding when the file has no "
                                                 ".cpg (GBK, GB18030...)")] = None,
    crs: Annotated[str | None, typer.Option(help="the coordinates' CRS when the file does "
                                            "not say it or says it wrong (EPSG:4549, "
                                            "GCJ-02, BD-09...)")] = None,
    field: Annotated[list[str] | None, typer.Option(
        "--field", help="target=FIELD: code, name, parent, level, leader_name, leader_phone, "
                        "nameN (the name of the level-N unit above)")] = None,
    snap: Annotated[float | None, typer.Option(help="clean a nearly-valid coverage: snap "
                                               "vertices within METRES, give gaps and "
                                               "overlaps to a neighbour")] = None,
    snap_max_area: Annotated[float, typer.Option(help="m²: a gap or overlap larger than "
                                                 "this is not cleaned")] = 100.0,
    activate: Annotated[bool, typer.Option(help="activate the new generation if it is "
                                           "valid (default: a draft)")] = False,
    keep_invalid: Annotated[bool, typer.Option(help="load an invalid grid as a draft anyway, "
                                               "to see and fix its problems")] = False,
    label: Annotated[str | None, typer.Option()] = None,
    problems: Annotated[Path | None, typer.Option(help="write the problems found as a "
                                                  "GeoJSON FeatureCollection here")] = None,
) -> None:
    """Load a city's grid from its GIS files into a new generation (a draft unless
    --activate); refused whole, loading nothing, when the grid breaks an invariant."""
    import orjson
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.grid_import import ImportOptions, import_grid
    from spatial.errors import GridInvariantError, GridopsError

    s = load_settings()
    opts = ImportOptions(layers=tuple(layer or ()), encoding=encoding, crs=crs,
                         fields=_field_map(field or []), snap_m=snap,
                         snap_max_area_m2=snap_max_area, label=label, activate=activate,
                         keep_invalid=keep_invalid)
    engine = make_engine(database_url(s, start=True))
    tasks: dict[str, Any] = {}
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err) as bar:
        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        try:
            with make_sessionmaker(engine)() as session, session.begin():
                result = import_grid(session, files, opts, s, progress=progress)
        except GridInvariantError as e:
            bar.stop()
            if problems is not None:
                problems.write_bytes(orjson.dumps(e.extra.get("problems", {})))
                err.print(f"problems written to {problems}", highlight=False)
            for v in e.extra.get("violations", [])[:20]:
                err.print(f"  {v['kind']} [{', '.join(v['codes'])}] {v['detail']}"
                          + (f" at {v['location'][0]:.6f} {v['location'][1]:.6f}"
                             if v.get("location") else ""), highlight=False)
            raise fail(e.detail) from None
        except GridopsError as e:
            raise fail(e.detail) from None
    for note in result.notes:
        out.print(f"note: {note}", highlight=False)
    for c in result.changes[:50]:
        out.print("changed: " + ", ".join(f"{k}={v}" for k, v in c.items()), highlight=False)
    if len(result.changes) > 50:
        out.print(f"... and {len(result.changes) - 50} more changes", highlight=False)
    if problems is not None:
        problems.write_bytes(orjson.dumps({"type": "FeatureCollection",
                                           "features": [v.as_feature()
                                                        for v in result.problems]}))
    state = "active" if result.activated else "draft"
    out.print(f"generation {result.generation} ({state}): "
              + ", ".join(f"{n:,} {k}" for k, n in result.counts.items())
              + f"; {result.new_rows:,} new row(s), {result.carried_over:,} unchanged carried "
              f"over, {result.ended:,} ended"
              + (f"; built {', '.join(result.built_levels)} from their children"
                 if result.built_levels else "")
              + (f"; {len(result.problems)} problem(s) kept in the draft"
                 if result.problems else ""), highlight=False)


@app.command("export")
def grids_export(
    output: Annotated[Path, typer.Argument(help="the file to write (.gpkg, .shp, .geojson, "
                                           ".fgb, .csv; a .zip for a zipped Shapefile)")],
    format: Annotated[str | None, typer.Option("--format", "-f",
                                               help="gpkg|shp|geojson|fgb|csv (default: "
                                                    "from the suffix)")] = None,
    generation: Annotated[int | None, typer.Option()] = None,
    at: Annotated[datetime | None, typer.Option(help="the generation active at this time")]
    = None,
    level: Annotated[str | None, typer.Option(help="one level (rank or key); default all")]
    = None,
    crs: Annotated[str | None, typer.Option(help="write coordinates in this CRS (default "
                                            "EPSG:4326)")] = None,
) -> None:
    """Write a generation's grid (default: the active one) with the fields an import reads."""
    from layers import gisfile, grids
    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.grid_export import export_grid
    from spatial.errors import GridopsError

    s = load_settings()
    try:
        fmt = format or gisfile.guess_format(output.name)
        if fmt not in gisfile.FORMATS:
            raise fail(f"--format {fmt!r}: one of {', '.join(gisfile.FORMATS)}")
        engine = make_engine(database_url(s, start=True))
        with make_sessionmaker(engine)() as session:
            gen = grids.generation_at(session, generation=generation,
                                      at=at.astimezone(UTC) if at and at.tzinfo else
                                      (at.replace(tzinfo=UTC) if at else None))
            rank = grids.level_rank(session, level) if level else None
            if fmt == "shp" and output.suffix.lower() == ".zip":
                data, n = export_grid(session, gen.id, fmt, level=rank, crs=crs,
                                      layer=output.stem)
                assert isinstance(data, bytes)
                output.write_bytes(data)
                written = [output]
            else:
                files, n = export_grid(session, gen.id, fmt, path=output, level=rank, crs=crs)
                assert isinstance(files, list)
                written = files
    except GridopsError as e:
        raise fail(e.detail) from None
    out.print(f"generation {gen.id}: {n:,} unit(s) written to "
              + ", ".join(str(f) for f in written), highlight=False)


@app.command("discard")
def grids_discard(generation: Annotated[int, typer.Argument(help="the draft's id")]) -> None:
    """Remove a draft generation (never activated): its rows go, the active grid is as it
    was before the draft."""
    from layers import grids
    from layers.db import database_url, make_engine, make_sessionmaker
    from spatial.errors import GridopsError

    s = load_settings()
    engine = make_engine(database_url(s, start=True))
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            done = grids.discard_generation(session, generation)
    except GridopsError as e:
        raise fail(e.detail) from None
    out.print(f"generation {generation} discarded: {done['removed_rows']:,} row(s) of its "
              f"own removed, {done['restored_rows']:,} active row(s) current again",
              highlight=False)
