"""Shared set-up for the STIR API tests: a demo PKI, an HTTPS x5u repository, the app."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from opensti.api.stir import KnownToken, STIRAccess, STIRApp, TokenCache
from opensti.sandbox.pki import DemoPKI
from opensti.signing import Keyring, SigningEntry, SigningService
from opensti.verification import (
    FailurePolicy,
    FetchPolicy,
    TrustStore,
    VerificationService,
    X5UFetcher,
)
from tests._servers import LocalHTTPServer, Route, TLSFiles, serve

#: The SBC's credential in these tests: a bearer token of the signer role.
SIGNER_TOKEN = "osti_test-signer-token"
STIR_HEADERS = {"Authorization": f"Bearer {SIGNER_TOKEN}"}


def static_tokens(**roles: str) -> TokenCache:
    """A token cache over fixed tokens (value -> role), as the store would load them."""
    known = {
        hashlib.sha256(value.encode()).hexdigest(): KnownToken(i, f"t{i}", role)
        for i, (value, role) in enumerate(roles.items(), 1)
    }
    return TokenCache(load=lambda: known)


def signer_access() -> STIRAccess:
    return STIRAccess(tokens=static_tokens(**{SIGNER_TOKEN: "signer"}))


@dataclass
class Deployment:
    """A repository serving the entry's chain and the key that signs for it."""

    repository: LocalHTTPServer
    pki: DemoPKI
    key: ec.EllipticCurvePrivateKey
    chain_pem: bytes

    @property
    def x5u(self) -> str:
        return self.repository.url("/sti-cr/1234.pem")


@contextmanager
def deployment(tls: TLSFiles) -> Iterator[Deployment]:
    pki = DemoPKI(dt.datetime.fromtimestamp(time.time(), dt.UTC))
    key, cert = pki.issue("1234")
    chain = pki.chain_pem(cert)
    with serve(tls) as repository:
        repository.routes["/sti-cr/1234.pem"] = Route.body(chain)
        yield Deployment(repository, pki, key, chain)


@asynccontextmanager
async def stir_app(
    site: Deployment, tls: TLSFiles, policy: FailurePolicy = FailurePolicy.CONTINUE_WITH_REASON
) -> AsyncIterator[STIRApp]:
    keyring = Keyring(
        [SigningEntry(name="main", spc="1234", key=site.key, x5u=site.x5u, is_default=True)]
    )
    async with X5UFetcher(FetchPolicy(allow_private=True), verify=str(tls.root_pem)) as fetcher:
        verifier = VerificationService(fetcher, TrustStore([site.pki.root.certificate]))
        yield STIRApp(SigningService(keyring), verifier, policy=policy, access=signer_access())
