"""Databases for tests: a SQLite file, or a fresh database on a real PostgreSQL server.

The suite runs against SQLite unless ``--db-url`` (or ``OPENSTI_TEST_DATABASE_URL``)
names a PostgreSQL server; every test that needs a database then gets its own one,
created before the test and dropped after it. PostgreSQL-only tests (LISTEN/NOTIFY,
row-lock races) also run in a SQLite run: they start a throwaway cluster with
``scripts/postgres-cluster.sh`` when no server is given.
"""

from __future__ import annotations

import glob
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from opensti.store._database import normalize_url

__all__ = ["CLUSTER_SCRIPT", "PostgresServer", "is_postgresql", "throwaway_cluster"]

CLUSTER_SCRIPT = Path(__file__).parents[1] / "scripts" / "postgres-cluster.sh"


def is_postgresql(url: str) -> bool:
    return normalize_url(url).get_backend_name() == "postgresql"


def render(url: str) -> str:
    """The URL as text a subprocess or another engine can connect with (password kept)."""
    return normalize_url(url).render_as_string(hide_password=False)


class PostgresServer:
    """Makes and drops uniquely named databases on the server of ``url``."""

    def __init__(self, url: str) -> None:
        self.url = render(url)
        self._admin: Engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            version = int(connection.exec_driver_sql("SHOW server_version_num").scalar_one())
        # From 15 on, copying the template's files is faster than WAL-logging them.
        self._create_options = " STRATEGY FILE_COPY" if version >= 150000 else ""

    def create_database(self) -> str:
        name = f"opensti_test_{secrets.token_hex(6)}"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}{self._create_options}")
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        assert name is not None
        assert name.startswith("opensti_test_")
        with self._admin.connect() as connection:
            # FORCE: a test that leaked a connection must not keep its database alive.
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextmanager
    def database(self) -> Iterator[str]:
        url = self.create_database()
        try:
            yield url
        finally:
            self.drop_database(url)

    def close(self) -> None:
        self._admin.dispose()


def postgres_installed() -> bool:
    return (
        bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) and shutil.which("python3") is not None
    )


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a PostgreSQL cluster in a temporary directory; its URL; destroyed after."""
    workdir = Path(tempfile.mkdtemp(prefix="opensti-pg-"))  # the script chowns it when root
    script = ["bash", str(CLUSTER_SCRIPT)]
    started = subprocess.run(
        [*script, "start", str(workdir)], check=True, capture_output=True, text=True
    )
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([*script, "destroy", str(workdir)], check=False, capture_output=True)
