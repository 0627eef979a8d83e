"""`gridops db start|stop|status|url|upgrade|psql`: the database."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

from etl.commands.common import embedded_or_exit, fail, load_settings, out
from layers.cluster import ClusterError

app = typer.Typer(help="The database (the embedded PostGIS cluster unless "
                       "GRIDOPS_DATABASE_URL is set).", no_args_is_help=True)


@app.command("start")
def db_start() -> None:
    """Start the embedded cluster (created on first use)."""
    cluster = embedded_or_exit(load_settings())
    try:
        started = cluster.start()
    except ClusterError as e:
        raise fail(str(e)) from None
    out.print(f"{'started' if started else 'already running'} on 127.0.0.1:{cluster.port}",
              highlight=False)


@app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    cluster = embedded_or_exit(load_settings())
    out.print("stopped" if cluster.stop() else "not running")


@app.command("status")
def db_status() -> None:
    """Where the database is and whether it runs."""
    s = load_settings()
    if s.database_url:
        out.print("external database (GRIDOPS_DATABASE_URL)")
        return
    cluster = embedded_or_exit(s)
    if not cluster.initialised:
        out.print(f"not created yet (data directory {cluster.datadir})", highlight=False)
        raise typer.Exit(code=3)
    state = "running" if cluster.running() else "stopped"
    out.print(f"{state} on 127.0.0.1:{cluster.port}, data in {cluster.datadir}",
              highlight=False)
    if state != "running":
        raise typer.Exit(code=3)


@app.command("url")
def db_url() -> None:
    """Print the database URL (psql accepts it)."""
    from layers.db import database_url

    s = load_settings()
    try:
        typer.echo(database_url(s))
    except ClusterError as e:
        raise fail(str(e)) from None


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations (starts the embedded cluster if needed)."""
    from layers.db import database_url, upgrade

    s = load_settings()
    try:
        url = database_url(s, start=True)
    except ClusterError as e:
        raise fail(str(e)) from None
    upgrade(url, revision)
    out.print(f"schema at {revision}")


@app.command("psql", context_settings={"allow_extra_args": True,
                                       "ignore_unknown_options": True})
def db_psql(ctx: typer.Context) -> None:
    """Open psql on the database (extra arguments go to psql)."""
    from layers.db import database_url

    s = load_settings()
    psql = shutil.which("psql")
    if psql is None:
        raise fail("psql not found: apt-get install -y postgresql-client-15")
    try:
        url = database_url(s, start=True)
    except ClusterError as e:
        raise fail(str(e)) from None
    os.execv(psql, [psql, url, *ctx.args])
