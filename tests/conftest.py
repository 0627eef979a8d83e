"""One real PostGIS cluster for the whole session, the schema built by alembic, a
transaction per test that is rolled back at the end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from layers.cluster import Cluster
from layers.db import make_engine, upgrade
from layers.settings import Settings
from tests.support.clusters import clone_full, throwaway_cluster
from tests.support.transactions import nested_transaction


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throw-away cluster from the machine's PostgreSQL binaries, on a free port."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def settings(pg_cluster: Cluster) -> Settings:
    """Settings pointing at the test cluster."""
    # no background tile building in the in-process apps: it would commit tiles under
    # the tests' rolled-back sessions (tests/api/test_tiles.py tests it by itself)
    return Settings(database_url=pg_cluster.url(), home=pg_cluster.datadir.parent,
                    tiles_prewarm=False)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """Engine on a schema built by `alembic upgrade head`."""
    assert settings.database_url
    upgrade(settings.database_url)
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def demo_loaded(engine: Engine, settings: Settings) -> int:
    """The Songjiang demo city, loaded once (committed) for the read tests; its generation."""
    from etl.demo import load_demo

    with Session(engine) as session, session.begin():
        gen = load_demo(session, settings)
        assert gen is not None
        return gen.id


@pytest.fixture()
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose outer transaction is rolled back after the test."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        finally:
            trans.rollback()


@pytest.fixture()
def session(connection: Connection) -> Iterator[Session]:
    """A session inside the test's transaction; its commits become savepoints."""
    with Session(bind=connection, join_transaction_mode="create_savepoint") as s:
        yield s


@pytest.fixture()
def client(settings: Settings, engine: Engine, session: Session) -> Iterator[TestClient]:
    """The API on the test's session."""
    from api.app import create_app
    from api.deps import get_session, get_write_session

    def write() -> Iterator[Session]:
        with nested_transaction(session) as s:  # one request, one (nested) transaction
            yield s

    from layers.auth import TokenCache, create_token
    from layers.intake_writer import IntakeWriter

    _, secret = create_token(session, "test-admin", "admin")
    app = create_app(settings, engine=engine)
    app.dependency_overrides[get_session] = lambda: session
    app.dependency_overrides[get_write_session] = write
    services = app.state.services
    services.intake = IntakeWriter(lambda: nested_transaction(session), settings)
    services.tokens = TokenCache(lambda: nullcontext(session), settings.token_cache_s)
    with TestClient(app, headers={"authorization": f"Bearer {secret}"}) as c:
        yield c


@pytest.fixture()
def scratch_db(pg_cluster: Cluster) -> Iterator[str]:
    """An empty database of its own (for migration round trips); its URL."""
    admin = make_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT")
    name = "gridops_scratch"
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        c.execute(text(f"CREATE DATABASE {name}"))
    url = pg_cluster.url().rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="session")
def full_engine(pg_cluster: Cluster, settings: Settings) -> Iterator[Engine]:
    """A database of its own with the whole demo city: grid and responsibility layers."""
    from etl.demo import load_demo_all

    admin = make_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("DROP DATABASE IF EXISTS gridops_full"))
        c.execute(text("CREATE DATABASE gridops_full"))
    admin.dispose()
    url = pg_cluster.url().rsplit("/", 1)[0] + "/gridops_full"
    upgrade(url)
    eng = make_engine(url)
    with Session(eng) as s, s.begin():
        load_demo_all(s, settings.model_copy(update={"database_url": url}))
    yield eng
    eng.dispose()


def _rolled_back(engine: Engine) -> Iterator[Session]:
    """A session whose outer transaction is rolled back at the end (commits: savepoints)."""
    with engine.connect() as conn:
        trans = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
            yield s
        trans.rollback()


def _client_on(settings: Settings, engine: Engine, session: Session) -> Iterator[TestClient]:
    """The API whose reads, writes, intake, tokens and owner snapshot go through one test
    session (without the listener)."""
    from api.app import create_app
    from api.deps import get_session, get_write_session
    from layers.auth import TokenCache
    from layers.intake_writer import IntakeWriter
    from layers.ownership_store import OwnershipRegistry

    def write() -> Iterator[Session]:
        with nested_transaction(session) as s:
            yield s

    app = create_app(settings, engine=engine, listen=False)
    app.dependency_overrides[get_session] = lambda: session
    app.dependency_overrides[get_write_session] = write
    services = app.state.services
    services.intake = IntakeWriter(lambda: nested_transaction(session), settings)
    services.tokens = TokenCache(lambda: nullcontext(session), settings.token_cache_s)
    with TestClient(app) as c:
        services.owners = OwnershipRegistry(lambda: nullcontext(session), settings)
        yield c


@pytest.fixture()
def full_session(full_engine: Engine) -> Iterator[Session]:
    """A session on the full demo database, rolled back after the test."""
    yield from _rolled_back(full_engine)


@pytest.fixture()
def full_client(settings: Settings, full_engine: Engine, full_session: Session
                ) -> Iterator[TestClient]:
    """The API on the full demo database (reads and the owner snapshot via the test's
    transaction)."""
    yield from _client_on(settings, full_engine, full_session)


HISTORY_CASES = 20_000  # a year of cases: ~110 open at any hour, some grids with several (3,000
# left some hours with no grid holding two, and the split tests had nothing to split)


@pytest.fixture(scope="session")
def history_engine(pg_cluster: Cluster, full_engine: Engine, settings: Settings
                   ) -> Iterator[Engine]:
    """The full demo city with a year of cases (committed once, for the planning tests:
    a draft, its impact, its activation)."""
    from etl.demo_history import generate_history

    eng = make_engine(clone_full(pg_cluster, full_engine, "gridops_history"))
    with Session(eng) as s, s.begin():
        generate_history(s, cases=HISTORY_CASES, seed=15, settings=settings)
    yield eng
    eng.dispose()


@pytest.fixture()
def history_session(history_engine: Engine) -> Iterator[Session]:
    """A session on the demo city with history, rolled back after the test."""
    yield from _rolled_back(history_engine)


@pytest.fixture()
def history_client(settings: Settings, history_engine: Engine, history_session: Session
                   ) -> Iterator[TestClient]:
    """The API on the demo city with history, through the test's session."""
    yield from _client_on(settings, history_engine, history_session)


@pytest.fixture()
def owslib_headers() -> Iterator[None]:
    """OWSLib's Features aliases one module-level headers dict: restored after each test."""
    import owslib.ogcapi as ogcapi

    saved = dict(ogcapi.REQUEST_HEADERS)
    yield
    ogcapi.REQUEST_HEADERS.clear()
    ogcapi.REQUEST_HEADERS.update(saved)
