"""Engine and sessions: SQLite (WAL) by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from opensti.core.errors import InvalidInput, StoreUnavailable
from opensti.store._changes import send_changes_on_flush

__all__ = ["BUSY_TIMEOUT_MS", "Database", "open_database", "store_errors"]

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
        #: Why the last write failed (read-only, disk full...); None once one succeeds.
        self.write_error: str | None = None

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
        try:
            with store_errors(), self._sessions.begin() as session:
                yield session
        except StoreUnavailable as exc:
            self.write_error = exc.message
            raise
        self.write_error = None

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A transaction that only reads: never blocks writers or other readers."""
        with store_errors(), self._read_sessions() as session:
            yield session

    def health(self) -> str | None:
        """None when the store answers and took its last write, else why not."""
        try:
            with self.read_session() as session:
                session.execute(text("SELECT 1"))
        except StoreUnavailable as exc:
            return exc.message
        return self.write_error

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"


#: What SQLite and PostgreSQL say, and what we tell the user instead.
_STORE_PROBLEMS = (
    ("readonly", "the database is read-only"),
    ("read-only", "the database is read-only"),
    ("disk is full", "the database's disk is full"),
    ("no space left", "the database's disk is full"),
    ("not a database", "the database file is corrupt or not a database"),
    ("malformed", "the database file is corrupt"),
    ("unable to open", "the database file cannot be opened"),
)


def store_problem(exc: BaseException) -> str:
    """A one-line account of a database failure, without the SQL or its parameters."""
    text = str(getattr(exc, "orig", exc)).lower()
    for needle, message in _STORE_PROBLEMS:
        if needle in text:
            return message
    return "the database is unavailable: " + str(getattr(exc, "orig", exc)).splitlines()[0][:200]


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn a database that refuses work into :class:`StoreUnavailable` (HTTP 503, one
    CLI line). Constraint and data errors keep their own meaning and pass through."""
    try:
        yield
    except OperationalError as exc:
        raise StoreUnavailable(store_problem(exc)) from exc
    except DatabaseError as exc:
        if type(exc) is not DatabaseError:
            raise
        raise StoreUnavailable(store_problem(exc)) from exc


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
    """The directory (0700) and an empty database file readable by its owner only:
    SQLite gives its -wal and -shm files the database file's mode."""
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise InvalidInput(
                f"cannot create the database {str(path)!r}: {exc.strerror or exc}"
            ) from None


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, issue BEGIN (see _on_begin): this is
        # what makes BEGIN IMMEDIATE and SAVEPOINT work with pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # First: the PRAGMAs below wait for a lock another connection may hold.
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")
