"""Engine and sessions: SQLite (WAL) by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from opensti.core.errors import InvalidInput
from opensti.store._changes import send_changes_on_flush

__all__ = ["BUSY_TIMEOUT_MS", "Database", "open_database"]

#: How long a SQLite writer waits for another one before "database is locked".
BUSY_TIMEOUT_MS = 10_000
_BEGIN_OPTION = "opensti_sqlite_begin"


class Database:
    """An engine and its session factory; one per process, built at the edge."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        # Other nodes hear of every change to what they sign with or publish.
        send_changes_on_flush(self._sessions)
        self._read_sessions = sessionmaker(
            bind=engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"}), expire_on_commit=False
        )

    @property
    def url(self) -> URL:
        return self.engine.url

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE``, taking the write lock
        up front: a read-then-write transaction then waits for other writers (busy
        timeout) instead of failing when another process wrote in between.
        """
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A transaction that only reads: never blocks writers or other readers."""
        with self._read_sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"


def normalize_url(url: str | URL) -> URL:
    """Parse, and give driver-less PostgreSQL URLs the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(f"not a database URL: {url!r}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def open_database(url: str | URL, *, echo: bool = False) -> Database:
    """Connect lazily to ``url``; for a SQLite file, create its directory (0700)."""
    parsed = normalize_url(url)
    options: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        _make_sqlite_dir(parsed)
        options["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    else:
        options["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **options)
    except ImportError as exc:
        raise InvalidInput(
            f"no driver for {parsed.drivername!r} ({exc.name} is not installed); "
            "for PostgreSQL install psycopg (pip install 'psycopg[binary]')"
        ) from None
    except ArgumentError as exc:
        raise InvalidInput(f"unusable database URL: {exc}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return Database(engine)


def _make_sqlite_dir(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, issue BEGIN (see _on_begin): this is
        # what makes BEGIN IMMEDIATE and SAVEPOINT work with pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")
