"""Engine and sessions, and where the database is: GRIDOPS_DATABASE_URL or the embedded cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from layers.cluster import Cluster, find_bindir
from layers.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def embedded_cluster(settings: Settings) -> Cluster:
    """The cluster gridops manages in its home directory."""
    return Cluster(
        datadir=settings.cluster_dir,
        bindir=find_bindir(settings.pg_bindir),
        preferred_port=settings.db_port,
    )


def sqlalchemy_url(url: str) -> str:
    """Normalise a libpq-style URL to the psycopg2 driver SQLAlchemy should use."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def database_url(settings: Settings, *, start: bool = False) -> str:
    """The database URL in use; with start=True the embedded cluster is started if needed."""
    if settings.database_url:
        return settings.database_url
    cluster = embedded_cluster(settings)
    if start:
        cluster.start()
    elif not cluster.initialised:
        cluster.init()
    return cluster.url()


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine with sane pool settings and UTF-8 / UTC sessions."""
    return create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        # durable commits whatever the server's default: an answer that says "stored" is sent
        # only after the commit is on disk
        connect_args={"options": "-c timezone=UTC -c synchronous_commit=on",
                      "client_encoding": "utf8"},
        **kwargs,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Session factory; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str) -> Config:
    """An alembic Config pointing at the repo's migrations and the given database (alembic
    imported here: most commands never migrate, and it costs ~0.1 s to import)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to a revision (the only way the schema is ever built)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema back to a revision."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def reachable(session: Session) -> bool:
    """Whether the database answers a trivial query (for health checks)."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True
