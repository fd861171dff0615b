"""Suite-wide options and fixtures: which database every database test runs on.

``--db-url URL`` (or ``OPENSTI_TEST_DATABASE_URL``): a PostgreSQL server whose user may
create databases; each test gets a fresh database there, dropped afterwards. Without it,
or with a ``sqlite:`` URL, each test gets a SQLite file in its own tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest

from tests._databases import PostgresServer, is_postgresql, postgres_installed, throwaway_cluster

DB_URL_ENV = "OPENSTI_TEST_DATABASE_URL"
POSTGRES_URL_ENV = "OPENSTI_TEST_POSTGRES_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-url",
        default=os.environ.get(DB_URL_ENV, ""),
        help=f"run the database tests on this PostgreSQL server (env {DB_URL_ENV}); "
        "default: a SQLite file per test",
    )
    parser.addoption(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV, ""),
        help="the PostgreSQL server for the PostgreSQL-only tests of a SQLite run "
        f"(env {POSTGRES_URL_ENV}); default: a throwaway cluster per worker",
    )


def pytest_report_header(config: pytest.Config) -> str:
    url = config.getoption("--db-url")
    shown = "SQLite" if not url or not is_postgresql(url) else _hide_password(url)
    return f"opensti test database: {shown}"


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@pytest.fixture(scope="session")
def db_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer | None]:
    """The PostgreSQL server chosen with --db-url, or None for SQLite."""
    url = request.config.getoption("--db-url")
    if not url or not is_postgresql(url):
        yield None
        return
    server = PostgresServer(url)
    yield server
    server.close()


@pytest.fixture
def database_url(db_server: PostgresServer | None, tmp_path: Path) -> Iterator[str]:
    """An empty database for this test alone (not migrated): SQLite or PostgreSQL."""
    if db_server is None:
        yield f"sqlite:///{tmp_path / 'data' / 'opensti.db'}"
        return
    with db_server.database() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server(
    db_server: PostgresServer | None, request: pytest.FixtureRequest
) -> Iterator[PostgresServer]:
    """A PostgreSQL server whatever --db-url says: for tests of PostgreSQL-only behaviour.

    The --db-url server, else the --postgres-url one, else a throwaway cluster;
    skipped when psycopg or the PostgreSQL binaries are missing.
    """
    if db_server is not None:
        yield db_server
        return
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed")
    if not postgres_installed():
        pytest.skip("PostgreSQL is not installed")
    given = request.config.getoption("--postgres-url")
    with nullcontext(given) if given else throwaway_cluster() as url:
        server = PostgresServer(url)
        yield server
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty PostgreSQL database for this test alone."""
    with postgres_server.database() as url:
        yield url
