"""`gridops users add|list|revoke`: API tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from etl.commands.common import fail, load_settings, out

app = typer.Typer(help="API tokens and their roles.", no_args_is_help=True)


@app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="who holds the token")],
    role: Annotated[str, typer.Option(help="centre, department, patrol, planner, admin")],
    department: Annotated[str | None, typer.Option(help="for department handlers")] = None,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    from layers.auth import create_token
    from layers.db import database_url, make_engine, make_sessionmaker, session_scope
    from spatial.errors import GridopsError

    engine = make_engine(database_url(load_settings(), start=True))
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            tok, secret = create_token(session, name, role, department)
            tid = tok.id
    except GridopsError as e:
        raise fail(e.detail) from None
    out.print(f"token {tid} for {name} ({role}{' ' + department if department else ''}):",
              highlight=False)
    typer.echo(secret)


@app.command("list")
def users_list() -> None:
    """Tokens (never their secrets)."""
    from sqlalchemy import select

    from layers.db import database_url, make_engine, make_sessionmaker
    from layers.models import ApiToken

    engine = make_engine(database_url(load_settings(), start=True))
    with make_sessionmaker(engine)() as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "live"
            out.print(f"{t.id:4d}  {t.name:20s} {t.role:10s} {t.department_code or '':12s} "
                      f"{state}", highlight=False)


@app.command("revoke")
def users_revoke(token_id: Annotated[int, typer.Argument()]) -> None:
    """Revoke a token."""
    from layers.auth import revoke
    from layers.db import database_url, make_engine, make_sessionmaker, session_scope
    from spatial.errors import GridopsError

    engine = make_engine(database_url(load_settings(), start=True))
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            revoke(session, token_id)
    except GridopsError as e:
        raise fail(e.detail) from None
    out.print(f"token {token_id} revoked")
