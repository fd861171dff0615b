"""opensti's ACME and STI-PA clients pointed at a running sandbox, for the e2e tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.acme import AcmeAccount, AcmeClient, CAProfile, EABCredentials, sandbox_profile
from opensti.core.certs import TrustContext
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.sandbox.server import SandboxHandle
from opensti.stipa import StiPaClient, StiPaCredentials
from tests.sandbox.conftest import Clock


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class SandboxCA:
    """One sandbox, seen through opensti's clients with a given CA profile."""

    handle: SandboxHandle
    clock: Clock
    profile: CAProfile

    @classmethod
    def start(cls, handle: SandboxHandle, clock: Clock, **profile: Any) -> SandboxCA:
        return cls(handle, clock, sandbox_profile(handle.ca_directory_url, **profile))

    @property
    def stipa_certificate(self) -> x509.Certificate:
        return self.handle.state.pki.stipa.certificate

    def acme(self, key: ec.EllipticCurvePrivateKey | None = None, **options: Any) -> AcmeClient:
        assert self.handle.tls_root_path is not None
        options.setdefault("clock", self.clock)
        return AcmeClient(
            self.profile, key or new_key(), verify=str(self.handle.tls_root_path), **options
        )

    def eab(self) -> EABCredentials:
        kid, hmac_key = self.handle.state.add_eab()
        return EABCredentials(kid, hmac_key)

    def registered(
        self, key: ec.EllipticCurvePrivateKey | None = None
    ) -> tuple[AcmeClient, AcmeAccount]:
        client = self.acme(key)
        # A kid-in-jwk CA (Peeringhub) takes the key id of an add-eab record alone.
        binds = self.profile.needs_eab or self.profile.account_binding == "jwk_kid"
        eab = self.eab() if binds else None
        return client, client.register(email="ops@example.net", agree_tos=True, eab=eab)

    def stipa(
        self,
        user_id: str = "demo",
        password: str = DEMO_PASSWORD,
        account_id: str = "123H",
        **options: Any,
    ) -> StiPaClient:
        options.setdefault("trust_anchors", (self.stipa_certificate,))
        options.setdefault("expected_crl_url", self.handle.state.urls.crl)
        return StiPaClient(
            StiPaCredentials(account_id, user_id, password),
            base_url=self.handle.stipa_base_url,
            verify=self.handle.verify,
            clock=self.clock,
            **options,
        )

    def trust(self, stipa: StiPaClient) -> TrustContext:
        """The sandbox's STI-CA roots and its current CRL, as a verifier holds them."""
        return TrustContext(
            anchors=self.handle.trust_anchors,
            crls=(stipa.crl(),),
            crl_signers=(self.stipa_certificate,),
        )

    def now(self) -> dt.datetime:
        return self.clock()
