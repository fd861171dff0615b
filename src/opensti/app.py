"""The object graph, built in one place from the settings.

Every front door (CLI, REST API, web UI, worker) and the tests get their database,
secret box and services from :meth:`App.from_settings`, and call :meth:`App.close`
when done (or use the app as a context manager)::

    with App.from_settings(load_settings()) as app:
        app.accounts.add_account("martini", email=..., agree_tos=True, ...)
        app.certificates.request_certificate("main")
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import TracebackType

from opensti.config import Settings
from opensti.lifecycle.accounts import AccountService, Clock, utc_now
from opensti.lifecycle.acquire import CertificateService
from opensti.signing import Keyring, SigningService
from opensti.store import (
    Database,
    Role,
    Secret,
    SecretBox,
    create_api_token,
    load_secret_box,
    open_database,
    upgrade_if_behind,
)
from opensti.verification import fetch_policy
from opensti.verification.resources import fetch_once

__all__ = ["App"]


@dataclass
class App:
    settings: Settings
    database: Database
    box: SecretBox
    accounts: AccountService
    certificates: CertificateService

    @classmethod
    def from_settings(
        cls, settings: Settings, *, migrate: bool | None = None, clock: Clock = utc_now
    ) -> App:
        """Open the store and build the services.

        ``migrate`` (default: only for SQLite, the embedded single-node case) brings the
        schema to head; a shared PostgreSQL is migrated with ``opensti db upgrade``.
        """
        database = open_database(settings.database_url)
        try:
            if migrate if migrate is not None else database.is_sqlite:
                upgrade_if_behind(database)
            secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
            box = load_secret_box(settings.data_dir, secret_key)
        except BaseException:
            database.dispose()
            raise
        accounts = AccountService(database, box, settings, clock=clock)
        # An entry's rcd logo is fetched under the x5u rules of the settings.
        icon_fetch = partial(fetch_once, policy=fetch_policy(settings))
        certificates = CertificateService(
            database, box, settings, accounts, clock=clock, icon_fetch=icon_fetch
        )
        return cls(settings, database, box, accounts, certificates)

    def keyring(self) -> Keyring:
        """A keyring of every enabled entry's active certificate (for the STI-AS)."""
        return Keyring(self.certificates.signing_entries())

    def signing_service(self) -> SigningService:
        return SigningService(self.keyring())

    def create_api_token(self, *, name: str, role: Role) -> Secret:
        """A new bearer token for the REST API; the value is shown once, only its hash kept."""
        with self.database.session() as session:
            _, value = create_api_token(session, name=name, role=role)
        return value

    def close(self) -> None:
        self.database.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
