"""A migrated store (SQLite, or PostgreSQL with --db-url) with entries and certificates
made by the sandbox PKI.

Shared by tests/lifecycle and tests/repository. Certificates are real (DemoPKI) and are
stored through the store's own functions, as the reconcile loop will store them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from opensti.sandbox.pki import DemoPKI, new_key, private_key_pem
from opensti.store import (
    AcmeAccount,
    Certificate,
    CertificateEntry,
    Database,
    Secret,
    SecretBox,
    add_certificate,
    create_acme_account,
    create_ca,
    create_entry,
    load_secret_box,
    open_database,
    upgrade,
)

__all__ = ["Store", "open_store", "store"]


@dataclass
class Store:
    """The database, its secret box and the PKI that issues certificates for it."""

    db: Database
    box: SecretBox
    pki: DemoPKI
    #: Where the secret key lives (and the SQLite file, unless --db-url says otherwise).
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment that points an ``opensti`` process at this store."""
        return {
            "OPENSTI_DATA_DIR": str(self.data_dir),
            "OPENSTI_DATABASE_URL": self.db.url.render_as_string(hide_password=False),
        }

    def entry(self, name: str = "main", spc: str = "123H") -> CertificateEntry:
        with self.db.session() as session:
            if session.scalar(select(func.count()).select_from(AcmeAccount)) == 0:
                create_ca(session, name="sandbox", directory_url="https://ca.example.test/dir")
                create_acme_account(
                    session,
                    self.box,
                    name="acct",
                    ca="sandbox",
                    key_pem=Secret(private_key_pem(new_key())),
                )
            return create_entry(session, name=name, spc=spc, acme_account="acct")

    def certificate(
        self,
        entry: CertificateEntry,
        *,
        days: float = 7,
        activate: bool = True,
        now: dt.datetime | None = None,
    ) -> Certificate:
        """Issue a certificate for the entry and store it (active by default)."""
        key, cert = self.pki.issue(entry.spc, days=days)
        with self.db.session() as session:
            return add_certificate(
                session,
                self.box,
                entry.id,
                chain_pem=self.pki.chain_pem(cert),
                key_pem=Secret(private_key_pem(key)),
                now=now or self.pki.now,
                activate=activate,
            )


def open_store(directory: Path, now: dt.datetime, database_url: str | None = None) -> Store:
    database = open_database(database_url or f"sqlite:///{directory / 'opensti.db'}")
    upgrade(database)
    return Store(database, load_secret_box(directory), DemoPKI(now), directory)


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> Iterator[Store]:
    """A store whose PKI issues certificates valid from a few minutes ago."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    opened = open_store(tmp_path / "data", now, database_url)
    yield opened
    opened.db.dispose()
