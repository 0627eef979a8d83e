"""Alembic environment: runs migrations online against the configured database."""

from __future__ import annotations

from sqlalchemy import engine_from_config, pool

from alembic import context
from layers.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    """Leave PostGIS's own tables (spatial_ref_sys, topology, tiger) alone."""
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_online() -> None:
    """Run with a connection; an existing one (tests) is reused if provided."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        context.configure(
            connection=conn, target_metadata=target_metadata, include_object=include_object
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
