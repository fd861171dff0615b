"""A migrated SQLite file per test, a secret box, and small builders for rows."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
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
    load_secret_box,
    open_database,
    upgrade,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "opensti.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{db_path}")
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


def db_bytes(db_path: Path) -> bytes:
    """The database file and its WAL, as someone copying the data dir gets them."""
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


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
