"""The gridops command line: serve, demo, data jobs, the database, grids and users.

The commands live in etl.commands, one module per group; this module assembles them.
"""

from __future__ import annotations

import logging

import typer

from etl.commands import data, db, generations, grids, layers, serve, users

app = typer.Typer(help="gridops: spatial operations for city grid management.",
                  no_args_is_help=True, add_completion=False)
app.command()(serve.serve)
app.command()(serve.demo)
app.command("resolve")(data.resolve_cmd)
app.command("alignment")(data.alignment_cmd)
app.command("osm-assets")(data.osm_assets_cmd)
app.command("escalate")(data.escalate_cmd)
app.add_typer(db.app, name="db")
app.add_typer(grids.app, name="grids")
app.add_typer(generations.app, name="generations")
app.add_typer(layers.app, name="layers")
app.add_typer(users.app, name="users")


def main() -> None:
    """Entry point with logging set up."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
