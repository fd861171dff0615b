"""opensti's client with the Peeringhub profile against the sandbox's double of it: the
kid-in-jwk account, the protected-only signature (sent only in that profile), the SPKI
fingerprint, the account key certified; and refusals reported in one line."""

from __future__ import annotations

import pytest

from opensti.acme import key_fingerprint, obtain_certificate
from opensti.acme.profiles import MARTINI, PEERINGHUB
from opensti.core.errors import AcmeProblem, InvalidInput
from opensti.sandbox.config import PROFILES
from tests.acme.sandbox_support import SandboxCA, new_key
from tests.sandbox.conftest import Clock, SandboxFactory

pytestmark = pytest.mark.integration

ORG = "Example Telecom"


def _ca(sandbox_factory: SandboxFactory, clock: Clock, **sandbox: object) -> SandboxCA:
    handle = sandbox_factory(profile=PROFILES["peeringhub"].with_options(**sandbox))
    return SandboxCA.start(handle, clock, **PEERINGHUB.knobs())


def _one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_peeringhub_profile_gets_a_certificate_for_the_account_key(
    sandbox_factory: SandboxFactory, clock: Clock
) -> None:
    ca = _ca(sandbox_factory, clock)
    client = ca.acme()
    kid, _ = ca.handle.state.add_eab()
    account = client.register(key_id=kid)
    assert account.fingerprint == key_fingerprint(client.key, "spki_sha256")
    # The key is known now: Peeringhub's empty 200 still yields the same account.
    assert client.register(key_id=kid).url == account.url
    assert client.find_existing().url == account.url
    with ca.stipa() as stipa:
        issued = obtain_certificate(client, "123H", stipa, organization=ORG)
    assert issued.key is client.key
    assert issued.chain.leaf.subject.rfc4514_string() == f"CN=SHAKEN 123H,O={ORG},C=US"


def test_the_client_really_signs_empty_payloads_over_the_header_alone(
    sandbox_factory: SandboxFactory, clock: Clock
) -> None:
    """A CA that takes RFC 7515 signatures only refuses the profile's newAccount."""
    ca = _ca(sandbox_factory, clock, empty_payload_signature="rfc7515")
    kid, _ = ca.handle.state.add_eab()
    with pytest.raises(AcmeProblem) as refused:
        ca.acme().register(key_id=kid)
    assert "malformed" in _one_line(refused)
    assert "signature does not verify" in str(refused.value)


def test_an_unknown_kid_is_refused_in_one_line(
    sandbox_factory: SandboxFactory, clock: Clock
) -> None:
    ca = _ca(sandbox_factory, clock)
    with pytest.raises(AcmeProblem) as refused:
        ca.acme().register(key_id="no-such-customer")
    assert "unauthorized" in _one_line(refused)
    assert "no-such-customer" in str(refused.value)


def test_a_kid_is_required(sandbox_factory: SandboxFactory, clock: Clock) -> None:
    ca = _ca(sandbox_factory, clock)
    with pytest.raises(InvalidInput, match="key id"):
        ca.acme().register()


def test_other_profiles_sign_rfc7515_only(sandbox_factory: SandboxFactory, clock: Clock) -> None:
    """The Martini settings (RFC 7515 signatures) work against its double, which refuses
    the protected-only quirk."""
    handle = sandbox_factory(profile=PROFILES["martini"])
    ca = SandboxCA.start(handle, clock, **MARTINI.knobs())
    client, account = ca.registered(new_key())
    assert client.find_existing().url == account.url
    with ca.stipa() as stipa:
        obtain_certificate(client, "123H", stipa, organization=ORG)
