"""A migrated store with a CA, an ACME account, one entry and its active certificate
(SQLite, or PostgreSQL with --db-url).

What the call log and the management API tests start from: the certificate is a real
SHAKEN certificate from a :class:`DemoPKI`, stored as the lifecycle stores it, and
the keyring signs with it exactly as a server would after loading the store.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from opensti.sandbox.pki import DemoPKI, new_key, private_key_pem
from opensti.signing import Keyring, SigningEntry
from opensti.store import (
    Certificate,
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

__all__ = ["SPC", "Site", "make_site"]

SPC = "123H"


@dataclass
class Site:
    database: Database
    box: SecretBox
    pki: DemoPKI
    key: ec.EllipticCurvePrivateKey
    certificate: Certificate
    data_dir: Path

    @property
    def database_url(self) -> str:
        """For another engine or an ``opensti`` process on the same store."""
        return self.database.url.render_as_string(hide_password=False)

    @property
    def x5u(self) -> str:
        assert self.certificate.x5u_url is not None
        return self.certificate.x5u_url

    def keyring(self) -> Keyring:
        return Keyring(
            [
                SigningEntry(
                    name="main",
                    spc=SPC,
                    key=self.key,
                    x5u=self.x5u,
                    is_default=True,
                    certificate_id=str(self.certificate.id),
                )
            ]
        )


@contextmanager
def make_site(
    data_dir: Path, x5u_base: str = "https://127.0.0.1:8443", database_url: str | None = None
) -> Iterator[Site]:
    now = dt.datetime.fromtimestamp(time.time(), dt.UTC)
    pki = DemoPKI(now)
    key, leaf = pki.issue(SPC)
    database = open_database(database_url or f"sqlite:///{data_dir / 'opensti.db'}")
    upgrade(database)
    box = load_secret_box(data_dir)
    try:
        with database.session() as session:
            create_ca(session, name="sandbox", directory_url="https://127.0.0.1:1/directory")
            create_acme_account(
                session, box, name="acct", ca="sandbox", key_pem=Secret(private_key_pem(new_key()))
            )
            entry = create_entry(
                session, name="main", spc=SPC, acme_account="acct", is_default_signer=True
            )
            certificate = add_certificate(
                session,
                box,
                entry.id,
                chain_pem=pki.chain_pem(leaf),
                key_pem=Secret(private_key_pem(key)),
                now=now,
                activate=True,
            )
            certificate.x5u_url = f"{x5u_base}/sti-cr/{certificate.id}.pem"
        yield Site(database, box, pki, key, certificate, data_dir)
    finally:
        database.dispose()
