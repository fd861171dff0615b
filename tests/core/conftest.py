"""Fixtures for the core tests: one sandbox PKI at a fixed instant."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.certs import TrustContext
from opensti.sandbox.pki import DemoPKI
from tests.core.core_support import NOW


@pytest.fixture(scope="session")
def pki() -> DemoPKI:
    return DemoPKI(now=NOW)


@pytest.fixture(scope="session")
def signer(pki: DemoPKI) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A valid SHAKEN end-entity key and certificate for SPC 1234."""
    return pki.issue("1234")


@pytest.fixture(scope="session")
def trust(pki: DemoPKI) -> TrustContext:
    return TrustContext(anchors=(pki.root.certificate,))
