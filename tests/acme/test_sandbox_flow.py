"""End to end against the sandbox: account with EAB, SPC token, order, tkauth-01,
finalize, chain; then the same through each CA behaviour the sandbox can emulate."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.acme import (
    EABCredentials,
    IssuedChain,
    Step,
    import_account,
    key_fingerprint,
    obtain_certificate,
    thumbprint_b64,
)
from opensti.acme.profiles import MARTINI, PEERINGHUB
from opensti.core.certs import tnauthlist_of, validate_shaken_certificate
from opensti.core.errors import (
    AcmeProblem,
    CertificateRevoked,
    InvalidInput,
    InvalidKey,
    InvalidSPCToken,
    UpstreamError,
)
from opensti.core.tnauthlist import TNAuthList
from opensti.sandbox.config import PROFILES
from opensti.sandbox.pki import private_key_pem
from opensti.sandbox.server import SandboxHandle
from opensti.stipa import (
    TokenBundle,
    TokenExpectation,
    decode_spc_token,
    parse_token_file,
    token_trust,
    validate_spc_token,
)
from tests.acme.sandbox_support import SandboxCA, new_key
from tests.sandbox.conftest import Clock, SandboxFactory

pytestmark = pytest.mark.integration

ORG = "Example Carrier"
PROBLEM = "CA refused: urn:ietf:params:acme:error:"


@pytest.fixture
def ca(sandbox: SandboxHandle, clock: Clock) -> SandboxCA:
    return SandboxCA.start(sandbox, clock)


def _assert_valid_chain(ca: SandboxCA, issued: IssuedChain, spc: str) -> None:
    with ca.stipa() as stipa:
        validated = validate_shaken_certificate(issued.chain, ca.trust(stipa), ca.now())
    assert validated.spc == spc
    assert tnauthlist_of(issued.chain.leaf) == TNAuthList.for_spc(spc)
    assert issued.chain.leaf.public_key() == issued.key.public_key()
    assert issued.chain_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert issued.chain.intermediates


def test_register_get_two_certificates_and_validate_them(ca: SandboxCA) -> None:
    key = new_key()
    client, account = ca.registered(key)
    assert account.url.startswith(ca.handle.ca_directory_url.rsplit("/", 1)[0] + "/account/")
    assert account.status == "valid"
    assert account.contact == ("mailto:ops@example.net",)
    assert account.thumbprint == thumbprint_b64(key)
    assert account.fingerprint == key_fingerprint(key)
    steps: list[Step] = []
    with ca.stipa() as stipa:
        chains = [
            obtain_certificate(client, spc, stipa, organization=ORG, progress=steps.append)
            for spc in ("123H", "456J")
        ]
    assert steps == [*Step, *Step]
    for issued, spc in zip(chains, ("123H", "456J"), strict=True):
        _assert_valid_chain(ca, issued, spc)
        assert issued.key.public_key() != key.public_key()
        assert issued.crl_url == ca.handle.state.urls.crl
    assert chains[0].serial_number != chains[1].serial_number


def test_import_an_existing_account_by_key_pem(ca: SandboxCA) -> None:
    key = new_key()
    _, account = ca.registered(key)
    client, imported = import_account(
        ca.profile, private_key_pem(key), verify=str(ca.handle.tls_root_path)
    )
    assert imported.url == account.url
    assert imported.thumbprint == account.thumbprint
    with ca.stipa() as stipa:
        issued = obtain_certificate(client, "123H", stipa, organization=ORG)
    _assert_valid_chain(ca, issued, "123H")


def test_import_of_a_key_that_is_not_p256(ca: SandboxCA) -> None:
    pem = private_key_pem(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(InvalidKey, match="P-256"):
        import_account(ca.profile, pem)
    with pytest.raises(InvalidKey, match="not a PEM private key"):
        import_account(
            ca.profile, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )


def test_import_with_the_account_url(ca: SandboxCA) -> None:
    key = new_key()
    _, account = ca.registered(key)
    client = ca.acme(key, account_url=account.url)
    assert client.account_url == account.url
    assert client.find_existing().url == account.url
    with pytest.raises(InvalidInput, match=f"belongs to account {account.url}"):
        ca.acme(key, account_url=account.url + "x").find_existing()


def test_import_of_an_unknown_key_is_refused(ca: SandboxCA) -> None:
    with pytest.raises(AcmeProblem, match=PROBLEM + "accountDoesNotExist"):
        ca.acme().find_existing()


def test_registering_a_known_key_returns_its_account(ca: SandboxCA) -> None:
    key = new_key()
    _, first = ca.registered(key)
    again = ca.acme(key).register(email="ops@example.net", agree_tos=True, eab=ca.eab())
    assert again.url == first.url


def test_bring_your_own_token_file(ca: SandboxCA, tmp_path: Any) -> None:
    """The token fetched on another host (as JSON) and used here, then token + CRL URL."""
    key = new_key()
    client, account = ca.registered(key)
    tnauthlist = TNAuthList.for_spc("456J")
    with ca.stipa() as stipa:
        fetched = stipa.request_token(tnauthlist, account.fingerprint)
    trust = token_trust((ca.stipa_certificate,), verify=ca.handle.verify)
    answer = f'{{"status":"success","token":"{fetched.jwt}","crl":"{fetched.crl_url}"}}'
    (tmp_path / "spc.json").write_text(answer)
    for bundle in (
        parse_token_file((tmp_path / "spc.json").read_bytes()),
        TokenBundle(fetched.jwt, ca.handle.state.urls.crl),
    ):
        expected = TokenExpectation(tnauthlist, client.fingerprint)
        token = validate_spc_token(bundle, expected, trust=trust, now=ca.now())
        issued = obtain_certificate(client, "456J", token, organization=ORG)
        _assert_valid_chain(ca, issued, "456J")


def test_token_for_another_spc_is_refused_before_the_ca(ca: SandboxCA) -> None:
    client, account = ca.registered()
    with ca.stipa() as stipa:
        token = stipa.request_token(TNAuthList.for_spc("456J"), account.fingerprint)
    with pytest.raises(InvalidSPCToken, match="is for SPC 456J, not SPC 123H"):
        obtain_certificate(client, "123H", token, organization=ORG)


def test_unvalidated_token_is_refused(ca: SandboxCA) -> None:
    client, account = ca.registered()
    with ca.stipa() as stipa:
        token = stipa.request_token(TNAuthList.for_spc("123H"), account.fingerprint)
    with pytest.raises(InvalidSPCToken, match="not been validated"):
        obtain_certificate(client, "123H", decode_spc_token(token.jwt), organization=ORG)


def test_token_of_another_account_key_is_refused(ca: SandboxCA) -> None:
    client, _ = ca.registered()
    other_key = new_key()
    with ca.stipa() as stipa:
        token = stipa.request_token(TNAuthList.for_spc("123H"), key_fingerprint(other_key))
    with pytest.raises(InvalidSPCToken, match="bound to key"):
        obtain_certificate(client, "123H", token, organization=ORG)


def test_wrong_eab_key_is_the_cas_refusal(ca: SandboxCA) -> None:
    kid, _ = ca.handle.state.add_eab()
    _, other_key = ca.handle.state.add_eab()
    with pytest.raises(AcmeProblem, match=PROBLEM) as caught:
        ca.acme().register(agree_tos=True, eab=EABCredentials(kid, other_key))
    assert caught.value.problem_type.endswith(("unauthorized", "malformed"))


def test_missing_eab_is_refused_before_the_ca(ca: SandboxCA) -> None:
    with pytest.raises(InvalidInput, match="requires External Account Binding"):
        ca.acme().register(agree_tos=True)


def test_terms_of_service_must_be_agreed(sandbox: SandboxHandle, clock: Clock) -> None:
    ca = SandboxCA.start(sandbox, clock, terms_url="https://ca.example.net/terms")
    with pytest.raises(InvalidInput, match="terms of service must be agreed to: https://ca"):
        ca.acme().register(eab=ca.eab())
    assert ca.acme().register(agree_tos=True, eab=ca.eab()).terms_of_service == (
        "https://ca.example.net/terms"
    )


def test_revoked_spc_token_is_the_cas_refusal(ca: SandboxCA) -> None:
    client, account = ca.registered()
    with ca.stipa() as stipa:
        token = stipa.request_token(TNAuthList.for_spc("123H"), account.fingerprint)
    ca.handle.state.revoke_spc("123H")
    with pytest.raises(AcmeProblem, match=PROBLEM + "unauthorized: SPC token refused: revoked"):
        obtain_certificate(client, "123H", token, organization=ORG)


def test_ca_outage_is_shown_with_its_problem(ca: SandboxCA) -> None:
    client, _ = ca.registered()
    ca.handle.state.faults.set("ca", "refuse")
    with pytest.raises(AcmeProblem, match=PROBLEM + "serverInternal: the service is unavailable"):
        client.new_order(TNAuthList.for_spc("123H").to_acme_value(padded=True))


def test_revocation_puts_the_certificate_on_the_crl(ca: SandboxCA) -> None:
    client, _ = ca.registered()
    with ca.stipa() as stipa:
        issued = obtain_certificate(client, "123H", stipa, organization=ORG)
        client.revoke(issued.chain.leaf, reason=4)
        with pytest.raises(CertificateRevoked):
            validate_shaken_certificate(issued.chain, ca.trust(stipa), ca.now())
        with pytest.raises(AcmeProblem, match="alreadyRevoked"):
            client.revoke(issued.chain.leaf)


def test_polling_waits_with_the_injected_sleep_until_the_deadline(ca: SandboxCA) -> None:
    """An order whose authorization is never answered does not become ready: finalize
    polls with the injected sleep (no wall-clock wait) and gives up at the deadline."""
    now = [ca.now()]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += dt.timedelta(seconds=seconds)

    key = new_key()
    ca.registered(key)
    client = ca.acme(key, clock=lambda: now[0], sleep=sleep, poll_timeout=dt.timedelta(seconds=5))
    order = client.new_order(TNAuthList.for_spc("123H").to_acme_value(padded=True))
    csr = b"unused: the order never becomes ready"
    with pytest.raises(UpstreamError, match="did not finish issuing the certificate within 5 s"):
        client.finalize(order, csr)
    assert sleeps == [1.0] * 5


# Each CA behaviour the sandbox emulates, with the opensti profile that matches it.
EMULATED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "atis": ({"profile": PROFILES["atis"]}, {}),
    "rfc9448": (
        {"profile": PROFILES["rfc9448"]},
        {"identifier_encoding": "base64url", "tkauth_field": "tkauth"},
    ),
    "peeringhub": ({"profile": PROFILES["peeringhub"]}, PEERINGHUB.knobs()),
    "martini": ({"profile": PROFILES["martini"]}, MARTINI.knobs()),
    "spki-fingerprint": (
        {"profile": PROFILES["atis"].with_options(fingerprint="spki_sha256")},
        {"fingerprint_algorithm": "spki_sha256"},
    ),
    "no-eab": (
        {"profile": PROFILES["atis"].with_options(eab_required=False)},
        {"needs_eab": False},
    ),
    "ignores-validity": (
        {"profile": PROFILES["atis"].with_options(honour_validity=False)},
        {"honours_validity_window": False},
    ),
}


@pytest.mark.parametrize("name", list(EMULATED))
def test_each_emulated_ca(sandbox_factory: SandboxFactory, clock: Clock, name: str) -> None:
    options, settings = EMULATED[name]
    ca = SandboxCA.start(sandbox_factory(**options), clock, **settings)
    client, _ = ca.registered()
    start = ca.now().replace(microsecond=0)
    window = {"not_before": start, "not_after": start + dt.timedelta(days=2)}
    with ca.stipa() as stipa:
        issued = obtain_certificate(client, "123H", stipa, organization=ORG, **window)
    _assert_valid_chain(ca, issued, "123H")
    assert (issued.key.public_key() == client.key.public_key()) is (
        ca.profile.cert_key_is_account_key
    )
    if ca.profile.honours_validity_window:
        assert issued.not_after == window["not_after"]
    else:
        assert issued.not_after - issued.not_before > dt.timedelta(days=6)


@pytest.mark.parametrize(
    ("name", "settings", "problem"),
    [
        ("rfc9448", {"tkauth_field": "atc", "identifier_encoding": "base64url"}, "malformed"),
        ("rfc9448", {"tkauth_field": "tkauth"}, "rejectedIdentifier"),
        ("atis", {"fingerprint_algorithm": "spki_sha256"}, "unauthorized"),
    ],
)
def test_profile_that_does_not_match_the_ca_gets_its_refusal(
    sandbox_factory: SandboxFactory, clock: Clock, name: str, settings: dict[str, Any], problem: str
) -> None:
    ca = SandboxCA.start(sandbox_factory(profile=PROFILES[name]), clock, **settings)
    client, _ = ca.registered()
    with ca.stipa() as stipa, pytest.raises(AcmeProblem, match=PROBLEM + problem):
        obtain_certificate(client, "123H", stipa, organization=ORG)


def test_separate_certificate_key_refused_for_an_account_key_ca(
    sandbox: SandboxHandle, clock: Clock
) -> None:
    ca = SandboxCA.start(sandbox, clock, cert_key_is_account_key=True)
    client, _ = ca.registered()
    other: ec.EllipticCurvePrivateKey = new_key()
    with ca.stipa() as stipa, pytest.raises(InvalidInput, match="account key only"):
        obtain_certificate(client, "123H", stipa, organization=ORG, cert_key=other)
