"""Fixtures: an STI-PA certificate, a token factory and the trust that accepts it; the
sandbox fixtures (a real STI-PA on 127.0.0.1) shared with tests/sandbox."""

from __future__ import annotations

import pytest

from opensti.sandbox.pki import IssuedCertificate, issue_stipa_certificate, to_pem
from opensti.stipa import TokenTrust
from tests.sandbox.conftest import clock, sandbox, sandbox_factory
from tests.stipa._tokens import NOW, X5U, TokenFactory, serving

__all__ = ["clock", "sandbox", "sandbox_factory"]


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
