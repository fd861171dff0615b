"""A migrated database per test (SQLite or PostgreSQL, see tests/conftest.py), a secret
box, and small builders for rows."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opensti.sandbox.pki import DemoPKI, new_key, private_key_pem
from opensti.store import (
    AcmeAccount,
    Base,
    CertificateEntry,
    Database,
    Secret,
    SecretBox,
    acquire_lease,
    create_acme_account,
    create_ca,
    create_entry,
    current_revision,
    head_revision,
    load_secret_box,
    open_database,
    upgrade,
)
from opensti.store._migrate import alembic_config

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database, for PostgreSQL-only behaviour (see tests/conftest.py)."""
    database = open_database(postgres_url)
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return load_secret_box(tmp_path / "data")


@pytest.fixture(scope="session")
def pki() -> DemoPKI:
    return DemoPKI(NOW)


def key_pem() -> Secret:
    return Secret(private_key_pem(new_key()))


def add_ca(session: Session, name: str = "sandbox", **options: object) -> None:
    defaults: dict[str, object] = {
        "directory_url": "https://ca.example.test/directory",
        "staging_directory_url": "https://ca-stg.example.test/directory",
    }
    create_ca(session, name=name, **{**defaults, **options})  # type: ignore[arg-type]


def add_account(
    session: Session, box: SecretBox, name: str = "acct", ca: str = "sandbox"
) -> AcmeAccount:
    return create_acme_account(session, box, name=name, ca=ca, key_pem=key_pem())


def add_entry(
    db: Database, box: SecretBox, name: str = "main", spc: str = "123H"
) -> CertificateEntry:
    """An entry with its CA and account, committed; returns the detached row."""
    with db.session() as session:
        if session.scalar(select(func.count()).select_from(AcmeAccount)) == 0:
            add_ca(session)
            add_account(session, box)
        return create_entry(session, name=name, spc=spc, acme_account="acct")


def row_counts(db: Database) -> dict[str, int]:
    """Rows per table: compared before and after a refused input."""
    with db.read_session() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def db_bytes(db: Database) -> bytes:
    """What someone copying the database gets: on SQLite the file and its WAL, byte for
    byte; on PostgreSQL every value of every table."""
    if db.is_sqlite:
        path = Path(db.url.database or "")
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    with db.read_session() as session:
        rows = [
            value if isinstance(value, bytes) else str(value).encode()
            for table in Base.metadata.sorted_tables
            for row in session.execute(select(table))
            for value in row
        ]
    return b"\n".join(rows)


def revisions() -> list[str]:
    """Every shipped revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def assert_schema_matches_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert current_revision(database) == head_revision()


def race_for_lease(url: str, entry_id: int, workers: int) -> list[str]:
    """Workers, each with its own engine on ``url``, ask for one entry at once: the winners."""
    databases = [open_database(url) for _ in range(workers)]
    barrier = threading.Barrier(workers)
    winners: list[str] = []
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            with databases[index].session() as session:
                lease = acquire_lease(
                    session, entry_id, f"worker-{index}", now=NOW, ttl=dt.timedelta(minutes=1)
                )
            if lease is not None:
                winners.append(lease.holder)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in databases:
        database.dispose()
    assert errors == []
    return winners


def lock_out_readers(path: str | Path) -> sqlite3.Connection:
    """A connection that keeps every other one, readers too, out of the SQLite file
    until it is closed (another process holding the lock: a worker stopped inside it,
    a tool in exclusive mode). Every other connection must be closed first."""
    holder = sqlite3.connect(path, isolation_level=None)
    # Exclusive locking mode keeps the lock after COMMIT.
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("COMMIT")
    return holder
