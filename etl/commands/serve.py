"""`gridops serve` and `gridops demo`: the database made ready, then the API served."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

import typer

from etl.commands.common import fail, load_settings, out, prepare_database, stop_embedded
from layers.cluster import ClusterError
from layers.settings import Settings, export_database_url

Host = Annotated[str | None, typer.Option(help="address to bind")]
Port = Annotated[int | None, typer.Option(help="TCP port")]
Workers = Annotated[int | None, typer.Option(help="worker processes")]


@dataclass(frozen=True)
class Served:
    """A migrated database and where to serve it, as serve and demo share them."""

    settings: Settings
    url: str
    host: str
    port: int
    workers: int

    def serve(self) -> None:
        """Run uvicorn on the API until Ctrl-C; its workers use this database."""
        import uvicorn

        export_database_url(self.url)  # the app factory builds its Settings from the env
        out.print(f"serving http://{self.host}:{self.port}: wall map "
                  f"http://{self.host}:{self.port}/map/wall, OpenAPI "
                  f"http://{self.host}:{self.port}/docs; Ctrl-C stops", highlight=False)
        uvicorn.run("api.app:app_from_env", factory=True, host=self.host, port=self.port,
                    workers=self.workers, log_level="info",
                    access_log=self.settings.access_log)


@contextmanager
def prepared(host: str | None, port: int | None, workers: int | None) -> Iterator[Served]:
    """The serve/demo preamble: settings, the embedded cluster started when needed,
    migrations, host/port/workers defaulted from the settings; on leaving, the
    embedded cluster is stopped if this started it."""
    s = load_settings()
    try:
        url, started = prepare_database(s)
    except ClusterError as e:
        raise fail(str(e)) from None
    try:
        yield Served(s, url, host or s.host, port or s.port, workers or s.workers)
    finally:
        if started:
            stop_embedded(s)


def serve(host: Host = None, port: Port = None, workers: Workers = None) -> None:
    """Serve the API (starts the embedded database if needed; does not load data)."""
    with prepared(host, port, workers) as ready:
        ready.serve()


def demo(
    host: Host = None,
    port: Port = None,
    workers: Workers = None,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve",
                                            help="serve after loading")] = True,
) -> None:
    """Start the database, load the Songjiang demo city once, and serve the API."""
    from etl.demo import load_demo_all
    from layers.db import make_engine, make_sessionmaker, session_scope

    with prepared(host, port, workers) as ready:
        engine = make_engine(ready.url)
        t0 = time.perf_counter()
        with session_scope(make_sessionmaker(engine)) as session:
            gen, reports = load_demo_all(session, ready.settings, history=True)
        engine.dispose()
        if gen is None and reports is None:
            out.print("demo city already loaded")
        else:
            what = [f"grid generation {gen.id}"] if gen else []
            what += [f"{v['created']:,} {k}" for k, v in (reports or {}).items()]
            out.print(f"demo city loaded ({', '.join(what)}) in "
                      f"{time.perf_counter() - t0:.1f} s", highlight=False)
        if serve_api:
            ready.serve()
