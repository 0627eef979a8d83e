"""`gridops layers export|import`: a responsibility layer as a GIS file and back."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from etl.commands.common import err, fail, load_settings, out

app = typer.Typer(help="Responsibility layers as GIS files (GeoPackage, Shapefile, GeoJSON, "
                  "FlatGeobuf, CSV).", no_args_is_help=True)


@app.command("export")
def layers_export(
    layer: Annotated[str, typer.Argument(help="departments, categories, assets, areas, "
                                         "zones, teams, assignments or roles")],
    output: Annotated[Path, typer.Argument(help="the file to write (.gpkg, .zip for a "
                                           "Shapefile, .geojson, .fgb, .csv)")],
    format: Annotated[str | None, typer.Option(
        "--format", help="gpkg, shp, geojson, fgb or csv (default: from OUT's suffix)")] = None,
    at: Annotated[datetime | None, typer.Option(help="the rows valid at this time")] = None,
    crs: Annotated[str | None, typer.Option(help="the file's CRS (default EPSG:4326)")] = None,
) -> None:
    """Write every row of a layer valid now (or --at) to a file QGIS opens; `gridops layers
    import` reads it back unchanged."""
    from layers import gisfile
    from layers import responsibility as resp
    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.layer_files import export_layer
    from spatial.errors import GridopsError

    s = load_settings()
    try:
        d = resp.layer(layer)
        fmt = format or gisfile.guess_format(output.name)
        engine = make_engine(database_url(s, start=True))
        with make_sessionmaker(engine)() as session:
            data = export_layer(session, d, fmt, at=at, crs=crs)
        engine.dispose()
    except GridopsError as e:
        raise fail(e.detail) from None
    if fmt == "shp" and output.suffix.lower() == ".shp":  # the parts beside each other
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for m in zf.infolist():
                output.with_suffix(Path(m.filename).suffix).write_bytes(zf.read(m))
    else:
        tmp = output.with_name(output.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(output)  # written whole or not at all
    out.print(f"{layer}: {len(data):,} bytes of {fmt} -> {output}", highlight=False)


@app.command("import")
def layers_import(
    layer: Annotated[str, typer.Argument(help="the layer to import into")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="GeoPackage, "
                                         "Shapefile (.shp or .zip), GeoJSON, FlatGeobuf, CSV")],
    file_layer: Annotated[str | None, typer.Option(
        "--layer", help="the file's layer to read (a GeoPackage of several)")] = None,
    encoding: Annotated[str | None, typer.Option(
        help="text encoding of a Shapefile without .cpg or of a CSV (GBK, GB18030...)")] = None,
    crs: Annotated[str | None, typer.Option(
        help="the coordinates' CRS, over what the file declares (EPSG:4549, GCJ-02...)")]
    = None,
    actor: Annotated[str, typer.Option(help="who the audit log names")] = "cli",
) -> None:
    """Validate and store a file's features: new keys are created, changed rows get a new
    version, identical ones are left alone; refused features are listed with their reason
    (nothing is stored when the file itself is unusable)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from layers import responsibility as resp
    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.layer_files import import_layer_file, read_file
    from spatial.errors import GridopsError

    s = load_settings()
    try:
        d = resp.layer(layer)
        with err.status(f"reading {file.name}"):
            table = read_file(d, file, layer=file_layer, encoding=encoding, crs=crs)
        engine = make_engine(database_url(s, start=True))
        with make_sessionmaker(engine)() as session, Progress(
                "[progress.description]{task.description}", BarColumn(),
                MofNCompleteColumn(), TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task(f"importing {file.name}", total=len(table))
            report = import_layer_file(session, d, table, actor=actor,
                                       progress=lambda n: bar.advance(task, n))
            session.commit()
        engine.dispose()
    except GridopsError as e:
        raise fail(e.detail) from None
    for note in report.notes:
        out.print(f"note: {note}", highlight=False)
    for r in report.refused[:20]:
        out.print(f"refused: {r['reason']}", highlight=False)
    if len(report.refused) > 20:
        out.print(f"... and {len(report.refused) - 20:,} more refused", highlight=False)
    out.print(f"{layer}: {report.read:,} read, {report.created:,} created, "
              f"{report.updated:,} updated, {report.unchanged:,} unchanged, "
              f"{len(report.refused):,} refused", highlight=False)
    if report.refused:
        raise typer.Exit(code=2)
