"""Fixtures for the SIP tests: a sandbox PKI valid now (the server reads the clock),
a signer and a verifier that satisfy the redirect server's Protocols."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sip_support import X5U, DemoSigner, DemoVerifier

from opensti.core.certs import TrustContext, load_certificate_chain, validate_shaken_certificate
from opensti.core.passport import PassportSigner
from opensti.sandbox.pki import DemoPKI


@pytest.fixture(scope="session")
def pki() -> DemoPKI:
    return DemoPKI(now=dt.datetime.now(dt.UTC))


@pytest.fixture(scope="session")
def credential(pki: DemoPKI) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return pki.issue("1234")


@pytest.fixture(scope="session")
def passport_signer(
    credential: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> PassportSigner:
    return PassportSigner(credential[0], X5U)


@pytest.fixture(scope="session")
def call_signer(passport_signer: PassportSigner) -> DemoSigner:
    return DemoSigner(passport_signer)


@pytest.fixture(scope="session")
def call_verifier(
    pki: DemoPKI, credential: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> DemoVerifier:
    chain = load_certificate_chain(pki.chain_pem(credential[1]))
    trust = TrustContext(anchors=(pki.root.certificate,))
    validated = validate_shaken_certificate(chain, trust, dt.datetime.now(dt.UTC))
    return DemoVerifier({X5U: validated})
