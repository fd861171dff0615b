"""Engine setup: SQLite pragmas, transactions, URLs, aware datetimes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import text

from opensti.core.errors import InvalidInput
from opensti.store import get_ca, list_cas, open_database
from opensti.store._database import BUSY_TIMEOUT_MS, normalize_url

from .conftest import add_ca

pytestmark = pytest.mark.db_dialect


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'wal.db'}")  # SQLite whatever --db-url says
    with db.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
    db.dispose()


def test_the_data_directory_is_created_private(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    with database.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    database.dispose()
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_readers_are_not_blocked_by_a_writer(db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session)
    with db.session() as writer:
        add_ca(writer, "second")  # holds the write lock (BEGIN IMMEDIATE) until the block ends
        with db.read_session() as reader:
            assert [ca.name for ca in list_cas(reader)] == ["sandbox"]
    with db.read_session() as reader:
        assert get_ca(reader, "second").name == "second"


def test_a_failed_unit_of_work_is_rolled_back(db) -> None:  # type: ignore[no-untyped-def]
    def interrupted_unit_of_work() -> None:
        with db.session() as session:
            add_ca(session)
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted_unit_of_work()
    with db.read_session() as session:
        assert list_cas(session) == []


def test_postgresql_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u:p@db/opensti").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@db/opensti").drivername == "postgresql+psycopg"
    explicit = normalize_url("postgresql+psycopg://u@db/opensti")
    assert explicit.drivername == "postgresql+psycopg"


@pytest.mark.skipif(
    importlib.util.find_spec("psycopg") is not None, reason="psycopg is installed here"
)
def test_missing_postgresql_driver_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match=r"psycopg is not installed.*pip install"):
        open_database("postgresql://user:pw@127.0.0.1/opensti")


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="needs psycopg")
def test_postgresql_engine_is_built_without_connecting() -> None:
    database = open_database("postgresql://user:pw@127.0.0.1:1/opensti")
    assert database.engine.dialect.driver == "psycopg"
    assert "pw" not in repr(database)


def test_bad_urls_are_clear_errors() -> None:
    with pytest.raises(InvalidInput, match="not a database URL"):
        open_database("::nonsense::")
    with pytest.raises(InvalidInput, match="unusable database URL"):
        open_database("nosuchdb://x/y")
