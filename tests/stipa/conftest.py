"""Fixtures: an STI-PA certificate, a token factory and the trust that accepts it."""

from __future__ import annotations

import pytest

from opensti.sandbox.pki import IssuedCertificate, issue_stipa_certificate, to_pem
from opensti.stipa import TokenTrust
from tests.stipa._tokens import NOW, X5U, TokenFactory, serving


@pytest.fixture(scope="session")
def stipa() -> IssuedCertificate:
    return issue_stipa_certificate(now=NOW)


@pytest.fixture
def tokens(stipa: IssuedCertificate) -> TokenFactory:
    return TokenFactory(stipa)


@pytest.fixture
def trust(stipa: IssuedCertificate) -> TokenTrust:
    return TokenTrust(
        anchors=(stipa.certificate,), fetch=serving({X5U: to_pem([stipa.certificate])})
    )
