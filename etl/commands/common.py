"""What the command modules share: the consoles, settings, failing, the embedded cluster."""

from __future__ import annotations

import typer
from rich.console import Console

from layers.cluster import Cluster, ClusterError
from layers.settings import Settings

out = Console()
err = Console(stderr=True)


def fail(msg: str) -> typer.Exit:
    """Print msg as an error; returns the exit to raise (code 1)."""
    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    return typer.Exit(code=1)


def load_settings() -> Settings:
    """The deployment settings (GRIDOPS_* environment), built once per command."""
    return Settings()


def prepare_database(settings: Settings) -> tuple[str, bool]:
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


def stop_embedded(settings: Settings) -> None:
    """Stop the embedded cluster, saying so if it ran."""
    from layers.db import embedded_cluster

    if embedded_cluster(settings).stop():
        out.print("PostGIS cluster stopped")


def embedded_or_exit(settings: Settings) -> Cluster:
    """The embedded cluster; exits when an external database is configured."""
    from layers.db import embedded_cluster

    if settings.database_url:
        raise fail("GRIDOPS_DATABASE_URL is set: gridops does not manage that database")
    try:
        return embedded_cluster(settings)
    except ClusterError as e:
        raise fail(str(e)) from None
