"""The STI-PA client against the sandbox STI-PA (iconectiv paths) on 127.0.0.1."""

from __future__ import annotations

import datetime as dt

import pytest

from opensti.acme import key_fingerprint
from opensti.core.errors import ServiceUnreachable, StiPaRefused, UpstreamError
from opensti.core.tnauthlist import TNAuthList
from opensti.sandbox.config import ProviderConfig
from opensti.sandbox.pki import new_key
from opensti.sandbox.server import SandboxHandle
from tests.acme.sandbox_support import SandboxCA
from tests.sandbox.conftest import Clock, SandboxFactory

pytestmark = pytest.mark.integration

SPC_123H = TNAuthList.for_spc("123H")


@pytest.fixture
def ca(sandbox: SandboxHandle, clock: Clock) -> SandboxCA:
    return SandboxCA.start(sandbox, clock)


@pytest.fixture
def fingerprint() -> str:
    return key_fingerprint(new_key())


@pytest.mark.parametrize("padded", [True, False])
def test_token_request_returns_a_validated_token(
    ca: SandboxCA, fingerprint: str, padded: bool
) -> None:
    with ca.stipa() as stipa:
        token = stipa.request_token(SPC_123H, fingerprint, padded=padded)
    assert token.spc == "123H"
    assert token.tkvalue == SPC_123H.to_acme_value(padded=padded)
    assert token.fingerprint == fingerprint
    assert token.ca is False
    assert token.signer == ca.stipa_certificate
    assert token.crl_url == ca.handle.state.urls.crl
    assert token.expires > ca.now() + dt.timedelta(hours=1)


def test_tokens_are_cached_until_shortly_before_exp(
    ca: SandboxCA, clock: Clock, fingerprint: str
) -> None:
    with ca.stipa(refresh_margin=dt.timedelta(minutes=10)) as stipa:
        first = stipa.request_token(SPC_123H, fingerprint)
        assert stipa.request_token(SPC_123H, fingerprint).jti == first.jti
        assert stipa.request_token(TNAuthList.for_spc("456J"), fingerprint).jti != first.jti
        clock.advance(first.life_left(ca.now()) - dt.timedelta(minutes=5))
        renewed = stipa.request_token(SPC_123H, fingerprint)
    assert renewed.jti != first.jti
    assert renewed.expires > first.expires


def test_expired_access_token_means_one_new_login(
    ca: SandboxCA, clock: Clock, fingerprint: str
) -> None:
    with ca.stipa() as stipa:
        stipa.login()
        clock.advance(dt.timedelta(hours=2))
        assert stipa.request_token(SPC_123H, fingerprint).spc == "123H"


def test_wrong_password_is_the_stipas_refusal(ca: SandboxCA) -> None:
    with ca.stipa(password="not-the-password") as stipa, pytest.raises(StiPaRefused) as caught:
        stipa.login()
    assert str(caught.value) == (
        "STI-PA refused the login of user 'demo': HTTP 401: invalid user id or password"
    )
    assert caught.value.status == 401


def test_spc_of_another_account_is_refused(
    sandbox_factory: SandboxFactory, clock: Clock, fingerprint: str
) -> None:
    other = ProviderConfig(account_id="999Z", spcs=("999Z", "789K"))
    ca = SandboxCA.start(sandbox_factory(providers=(other,)), clock)
    with ca.stipa() as stipa, pytest.raises(StiPaRefused, match="HTTP 403: SPC 789K does not"):
        stipa.request_token(TNAuthList.for_spc("789K"), fingerprint)


def test_token_for_another_account_id_is_refused(ca: SandboxCA, fingerprint: str) -> None:
    with ca.stipa(account_id="456J") as stipa, pytest.raises(StiPaRefused, match="HTTP 403"):
        stipa.request_token(TNAuthList.for_spc("456J"), fingerprint)


def test_token_signed_by_an_untrusted_stipa_is_not_used(ca: SandboxCA, fingerprint: str) -> None:
    with (
        ca.stipa(trust_anchors=ca.handle.trust_anchors) as stipa,
        pytest.raises(UpstreamError, match=r"unusable SPC token: .* not a trusted STI-PA"),
    ):
        stipa.request_token(SPC_123H, fingerprint)


def test_unexpected_crl_url_is_not_used(ca: SandboxCA, fingerprint: str) -> None:
    with (
        ca.stipa(expected_crl_url="https://sti-pa.example.net/crl") as stipa,
        pytest.raises(UpstreamError, match=r"CRL URL is .* expected https://sti-pa\.example\.net"),
    ):
        stipa.request_token(SPC_123H, fingerprint)


def test_stipa_outage(ca: SandboxCA, fingerprint: str) -> None:
    ca.handle.state.faults.set("stipa", "refuse")
    with ca.stipa() as stipa, pytest.raises(StiPaRefused, match="HTTP 503: the service is"):
        stipa.login()


def test_unreachable_stipa(ca: SandboxCA) -> None:
    url = ca.handle.stipa_base_url
    ca.handle.stop()
    with ca.stipa() as stipa, pytest.raises(ServiceUnreachable, match=f"cannot reach .* {url}"):
        stipa.login()


def test_ca_list_and_crl(ca: SandboxCA) -> None:
    with ca.stipa() as stipa:
        assert tuple(stipa.ca_list()) == ca.handle.trust_anchors
        crl = stipa.crl()
    assert crl.issuer == ca.stipa_certificate.subject


def test_crl_not_signed_by_a_trusted_stipa(ca: SandboxCA) -> None:
    with (
        ca.stipa(trust_anchors=ca.handle.trust_anchors) as stipa,
        pytest.raises(UpstreamError, match="CRL is not signed by a trusted STI-PA"),
    ):
        stipa.crl()
