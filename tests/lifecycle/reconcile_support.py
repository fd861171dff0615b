"""A whole lifecycle on 127.0.0.1: the sandbox (STI-PA + STI-CA), a store with an ACME
account, STI-PA credentials and entries, and the STI-CR serving the store over HTTP.

Everything shares one :class:`Clock` (real time plus an offset the test moves), so a
test can let a certificate age by minutes without waiting for them. The STI-CR's
snapshot and the reconciler are wired as ``opensti serve`` wires them: a new chain is
reloaded into the STI-CR before its certificate becomes active.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select

from opensti.app import App
from opensti.config import load_settings
from opensti.core.certs import TrustContext, load_certificate_chain, validate_shaken_certificate
from opensti.core.errors import OpenSTIError
from opensti.lifecycle.notify import (
    NotifyPolicy,
    SMTPSecurity,
    SMTPSettings,
    save_smtp_settings,
    set_contacts,
    set_policy,
)
from opensti.lifecycle.reconcile import ReconcileHooks, ReconcilePolicy, Reconciler
from opensti.repository import RepositoryApp, create_repository_app
from opensti.sandbox import store as sandbox_store
from opensti.sandbox.config import DEMO_PASSWORD, APIUserConfig, ProviderConfig, SandboxConfig
from opensti.sandbox.server import SandboxHandle, run_sandbox_in_thread
from opensti.store import (
    Certificate,
    CertificateState,
    Secret,
    active_certificate,
    create_entry,
    get_entry,
    list_certificates,
)
from tests.sandbox.conftest import Clock

__all__ = [
    "CONTACT",
    "SPCS",
    "World",
    "fast_policy",
    "free_socket",
    "start_world",
]

CONTACT = "noc@carrier.example"
#: SPCs the sandbox's STI-PA account 123H may request tokens for.
SPCS = ("123H", "456J", "789K")


def fast_policy(**changes: Any) -> ReconcilePolicy:
    """Short delays for tests; backoff stays exponential with jitter."""
    values: dict[str, Any] = {
        "backoff_initial": 30.0,
        "backoff_max": 600.0,
        "lease_ttl": 30.0,
        "attempt_timeout": 60.0,
        "acme_poll_timeout": 20.0,
        "tick": 0.2,
        "quick_retry_delay": 0.01,
        "observe_interval": 3600.0,
    }
    values.update(changes)
    return ReconcilePolicy(**values)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@dataclass
class World:
    sandbox: SandboxHandle
    app: App
    clock: Clock
    repository: RepositoryApp
    base_url: str
    stipa_pem: Path
    _stoppers: list[Any] = field(default_factory=list)

    # -- wiring -------------------------------------------------------------------------

    def reconciler(self, *, holder: str = "test-worker", **policy: Any) -> Reconciler:
        async def published() -> None:
            await asyncio.to_thread(self.repository.chains.reload)

        return Reconciler(
            self.app.database,
            self.app.box,
            self.app.settings,
            self.app.accounts,
            policy=fast_policy(**policy),
            notifier=self.notifier(),
            hooks=ReconcileHooks(published=published),
            holder=holder,
            clock=self.clock,
        )

    def notifier(self) -> Any:
        from opensti.lifecycle.notify import Notifier

        return Notifier(self.app.database, self.app.box)

    def add_entries(self, *spcs: str) -> None:
        with self.app.database.session() as session:
            for spc in spcs:
                create_entry(
                    session,
                    name=f"e{spc}",
                    spc=spc,
                    acme_account="acct",
                    stipa_account_id="123H",
                    crl_url=self.sandbox.state.urls.crl,
                )

    def mail_to(self, port: int, *, at_risk_hours: float = 1 / 60) -> None:
        """Send notices to an SMTP server on 127.0.0.1:port (plain, no auth)."""
        with self.app.database.session() as session:
            save_smtp_settings(
                session,
                self.app.box,
                SMTPSettings(
                    host="127.0.0.1",
                    port=port,
                    security=SMTPSecurity.NONE,
                    from_address="opensti@carrier.example",
                    timeout=10,
                ),
            )
            set_contacts(session, [CONTACT])
            set_policy(session, NotifyPolicy(at_risk_hours=at_risk_hours))

    # -- looking -------------------------------------------------------------------------

    def certificates(self, name: str) -> list[Certificate]:
        with self.app.database.read_session() as session:
            return list(list_certificates(session, get_entry(session, name).id))

    def active(self, name: str) -> Certificate | None:
        with self.app.database.read_session() as session:
            return active_certificate(session, get_entry(session, name).id)

    def entry(self, name: str) -> Any:
        with self.app.database.read_session() as session:
            return get_entry(session, name)

    def fetch(self, url: str) -> httpx.Response:
        return httpx.get(url, timeout=10, trust_env=False)

    def valid_published(self, name: str, now: dt.datetime | None = None) -> bool:
        """Whether the entry's current x5u serves a chain valid now for its SPC."""
        active = self.active(name)
        if active is None or active.x5u_url is None:
            return False
        response = self.fetch(active.x5u_url)
        if response.status_code != 200:
            return False
        return self.chain_valid(response.content, self.entry(name).spc, now or self.clock())

    def chain_valid(self, pem: bytes, spc: str, now: dt.datetime) -> bool:
        try:
            validated = validate_shaken_certificate(
                load_certificate_chain(pem),
                TrustContext(anchors=self.sandbox.trust_anchors),
                now,
            )
        except OpenSTIError:
            return False
        return validated.spc == spc

    def issued_serials(self) -> list[str]:
        """Serials of every certificate the sandbox CA issued."""
        with self.sandbox.state.store.session() as session:
            return [c.serial for c in session.scalars(select(sandbox_store.Certificate))]

    def stored_serials(self) -> list[str]:
        with self.app.database.read_session() as session:
            return [
                cert.serial
                for cert in session.scalars(select(Certificate))
                if cert.serial is not None
            ]

    def env(self) -> dict[str, str]:
        """The OPENSTI_* settings for a subprocess working on the same store."""
        settings = self.app.settings
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(
            OPENSTI_DATA_DIR=str(settings.data_dir),
            OPENSTI_DATABASE_URL=settings.database_url,
            OPENSTI_TLS_CA_FILE=str(settings.tls_ca_file),
            OPENSTI_STIPA_TRUST_ANCHORS=str(settings.stipa_trust_anchors),
            OPENSTI_PUBLIC_BASE_URL=self.base_url,
            OPENSTI_LOG_LEVEL="WARNING",
            # The nodes' STIR API is closed by default: the tests sign from loopback.
            OPENSTI_STIR_ALLOW_NETWORKS="127.0.0.1",
        )
        return env

    def stop(self) -> None:
        for stop in reversed(self._stoppers):
            stop()


def _serve_repository(repository: RepositoryApp, sock: socket.socket) -> Any:
    config = uvicorn.Config(repository, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the STI-CR server thread ended"
        assert time.monotonic() < deadline, "the STI-CR did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop


@contextmanager
def start_world(
    tmp_path: Path,
    *,
    cert_validity: dt.timedelta = dt.timedelta(minutes=10),
    clock: Clock | None = None,
    repository: bool = True,
    database_url: str = "",
    spcs: tuple[str, ...] = SPCS,
    **sandbox_options: Any,
) -> Iterator[World]:
    """The sandbox, a store set up against it, and (unless told) the STI-CR; the
    STI-PA account 123H may request tokens for ``spcs``."""
    clock = clock or Clock()
    provider = ProviderConfig("123H", spcs, (APIUserConfig("demo", DEMO_PASSWORD),), "Carrier")
    sandbox = run_sandbox_in_thread(
        SandboxConfig(
            data_dir=tmp_path / "sandbox",
            port=0,
            cert_validity=cert_validity,
            providers=(provider,),
            demo_provider=False,
            **sandbox_options,
        ),
        clock=clock,
    )
    stoppers: list[Any] = [sandbox.stop]
    try:
        stipa_pem = tmp_path / "stipa.pem"
        stipa_pem.write_bytes(sandbox.state.pki.stipa.pem)
        sock = free_socket()
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = load_settings(
            data_dir=tmp_path / "data",
            tls_ca_file=sandbox.tls_root_path,
            stipa_trust_anchors=stipa_pem,
            public_base_url=base_url,
            database_url=database_url,
        )
        app = App.from_settings(settings, clock=clock, migrate=True)
        stoppers.append(app.close)
        app.accounts.add_ca("local", sandbox.ca_directory_url, needs_eab=True)
        kid, hmac_key = sandbox.state.add_eab()
        app.accounts.add_account(
            "local",
            email="ops@carrier.example",
            agree_tos=True,
            eab_kid=kid,
            eab_hmac_key=Secret.from_text(hmac_key),
            name="acct",
        )
        app.accounts.set_stipa(
            account_id="123H",
            user_id="demo",
            password=Secret.from_text(DEMO_PASSWORD),
            base_url=sandbox.stipa_base_url,
        )
        repo = create_repository_app(app.database, refresh_interval=1.0, clock=clock)
        if repository:
            stoppers.append(_serve_repository(repo, sock))
        else:
            sock.close()
        world = World(sandbox, app, clock, repo, base_url, stipa_pem, stoppers)
        yield world
    finally:
        for stop in reversed(stoppers):
            stop()


def states(certs: list[Certificate]) -> list[CertificateState]:
    return [cert.state for cert in certs]
