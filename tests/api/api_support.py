"""The management API over a real store: an App, a token per role, an HTTPS x5u repository.

``mgmt`` gives an httpx client on the ASGI app (no socket for the API itself), a
SQLite store in tmp_path with one entry and its active certificate, the chain served
over HTTPS on 127.0.0.1 so ``/verify`` fetches it for real, and a running call log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from opensti.api import create_api
from opensti.app import App
from opensti.calls import CallLog, keyring_certificates
from opensti.config import load_settings
from opensti.signing import SigningService
from opensti.store import Role, create_api_token
from opensti.verification import FetchPolicy, TrustStore, VerificationService, X5UFetcher
from tests._servers import Route, TLSFiles, serve
from tests._site import Site, make_site

__all__ = ["Mgmt", "app_for", "mgmt", "site_dir"]

ROLES = (Role.ADMIN, Role.OPERATOR, Role.READ_ONLY)


@dataclass
class Mgmt:
    site: Site
    app: App
    api: FastAPI
    client: httpx.AsyncClient
    call_log: CallLog
    tokens: dict[Role, str]
    #: Every JSON body the helpers received, for the secret scans.
    seen: list[str] = field(default_factory=list)

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(
        self, method: str, path: str, role: Role = Role.ADMIN, **options: Any
    ) -> httpx.Response:
        response = await self.client.request(
            method, f"/api/v1{path}", headers=self.auth(role), **options
        )
        self.seen.append(response.text)
        return response


def app_for(data_dir: Path, **settings: Any) -> App:
    return App.from_settings(load_settings(data_dir=data_dir, **settings))


def add_tokens(app: App) -> dict[Role, str]:
    tokens = {}
    with app.database.session() as session:
        for role in ROLES:
            _, value = create_api_token(session, name=f"test-{role.value}", role=role)
            tokens[role] = value.reveal_text()
    return tokens


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def repository_site(tls: TLSFiles, site_dir: Path, database_url: str) -> Iterator[Site]:
    """The store's certificate chain served at its x5u over HTTPS on 127.0.0.1."""
    with (
        serve(tls) as repository,
        make_site(site_dir, repository.url(""), database_url) as site,
    ):
        path = site.x5u.removeprefix(repository.url(""))
        repository.routes[path] = Route.body(site.certificate.chain_pem.encode())  # type: ignore[union-attr]
        yield site


@pytest.fixture
async def mgmt(repository_site: Site, tls: TLSFiles) -> AsyncIterator[Mgmt]:
    site = repository_site
    app = app_for(site.data_dir, database_url=site.database_url)
    keyring = app.keyring()
    call_log = CallLog(app.database, certificate_for_x5u=keyring_certificates(keyring))
    async with X5UFetcher(FetchPolicy(allow_private=True), verify=str(tls.root_pem)) as fetcher:
        verifier = VerificationService(fetcher, TrustStore([site.pki.root.certificate]))
        api = create_api(app, signer=SigningService(keyring), verifier=verifier, call_log=call_log)
        transport = httpx.ASGITransport(app=api)
        with call_log, app:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield Mgmt(site, app, api, client, call_log, add_tokens(app))
