"""An :class:`~opensti.app.App` wired to a real sandbox on 127.0.0.1, for the account and
acquisition tests (service level and CLI).

``World`` holds the sandbox handle, the settings as environment variables (for the
``opensti`` subprocess) and the app; ``snapshot`` reads every table so a test can show
that a refused operation changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from opensti.app import App
from opensti.config import load_settings
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.sandbox.server import SandboxHandle
from opensti.store import Base, Database, Secret
from tests.sandbox.conftest import SandboxFactory

__all__ = ["World", "snapshot", "world"]


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: equal snapshots mean the store did not change."""
    with db.read_session() as session:
        return {
            table.name: sorted((tuple(row) for row in session.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


@dataclass
class World:
    sandbox: SandboxHandle
    data_dir: Path
    env: dict[str, str]
    app: App = field(init=False)

    def __post_init__(self) -> None:
        settings = load_settings(
            **{k.removeprefix("OPENSTI_").lower(): v for k, v in self.env.items()}
        )
        self.app = App.from_settings(settings)

    def add_sandbox_ca(self, name: str = "sandbox", url: str | None = None) -> None:
        self.app.accounts.add_ca(
            name, url or self.sandbox.ca_directory_url, needs_eab=True, honours_validity=True
        )

    def eab(self) -> tuple[str, Secret]:
        kid, key = self.sandbox.state.add_eab()
        return kid, Secret.from_text(key)

    def account(self, name: str = "main") -> str:
        kid, key = self.eab()
        return self.app.accounts.add_account(
            "sandbox",
            email="ops@example.net",
            agree_tos=True,
            eab_kid=kid,
            eab_hmac_key=key,
            name=name,
        ).name

    def stipa(self, user: str = "demo", password: str = DEMO_PASSWORD) -> None:
        self.app.accounts.set_stipa(
            account_id="123H",
            user_id=user,
            password=Secret.from_text(password),
            base_url=self.sandbox.stipa_base_url,
        )

    def ready(self) -> str:
        """CA, account and STI-PA credentials in place; the account's name."""
        self.add_sandbox_ca()
        self.stipa()
        return self.account()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return snapshot(self.app.database)


def make_world(sandbox: SandboxHandle, tmp_path: Path) -> World:
    assert sandbox.tls_root_path is not None
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    trust = tmp_path / "stipa-trust.pem"
    trust.write_bytes(sandbox.state.pki.stipa.pem)
    env = {
        "OPENSTI_DATA_DIR": str(data_dir),
        "OPENSTI_TLS_CA_FILE": str(sandbox.tls_root_path),
        "OPENSTI_STIPA_TRUST_ANCHORS": str(trust),
        "OPENSTI_PUBLIC_BASE_URL": "https://sti-cr.example.net",
    }
    return World(sandbox, data_dir, env)


@pytest.fixture
def world(sandbox_factory: SandboxFactory, tmp_path: Path) -> Iterator[World]:
    made = make_world(sandbox_factory(), tmp_path)
    yield made
    made.app.close()
