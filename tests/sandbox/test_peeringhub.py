"""The ``peeringhub`` profile as a double of Peeringhub's STI-CA: what its ACME reference
(doc.peeringhub.io) and its public client (PyPI stir-shaken-toolkit 1.0.2) do must pass,
and what neither RFC 8555/7515 nor that quirk allows must get a real CA's problem."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList
from opensti.sandbox.config import PROFILES
from opensti.sandbox.server import SandboxHandle
from tests.sandbox.acme_support import (
    ACMETestClient,
    STIPATestClient,
    b64,
    spki_fingerprint,
)
from tests.sandbox.conftest import SandboxFactory
from tests.sandbox.test_acme import problem

pytestmark = pytest.mark.integration


@pytest.fixture
def peeringhub(sandbox_factory: SandboxFactory) -> SandboxHandle:
    return sandbox_factory(profile=PROFILES["peeringhub"])


@pytest.fixture
def client(peeringhub: SandboxHandle) -> Iterator[ACMETestClient]:
    acme = ACMETestClient(peeringhub)
    yield acme
    acme.close()


def _known_key_id(handle: SandboxHandle) -> str:
    kid, _ = handle.state.add_eab()
    return kid


def test_directory_does_not_ask_for_eab(client: ACMETestClient) -> None:
    assert client.directory["meta"]["externalAccountRequired"] is False


def test_new_account_binds_by_the_kid_inside_jwk_with_an_empty_payload(
    peeringhub: SandboxHandle, client: ACMETestClient
) -> None:
    created = client.register_with_key_id(_known_key_id(peeringhub))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "valid"
    # The same key again: Peeringhub answers an empty 200 with the Location.
    again = client.register_with_key_id(_known_key_id(peeringhub))
    assert again.status_code == 200
    assert again.content == b""
    assert again.headers["Location"] == created.headers["Location"]


def test_post_as_get_signed_over_the_protected_header_alone(
    peeringhub: SandboxHandle, client: ACMETestClient
) -> None:
    assert client.register_with_key_id(_known_key_id(peeringhub)).status_code == 201
    assert client.kid is not None
    quirk = client.post(client.kid, None, signing_input="{protected}")
    assert quirk.status_code == 200, quirk.text
    standard = client.post(client.kid, None)
    assert standard.status_code == 200, standard.text


@pytest.mark.parametrize("signing_input", ["{protected}.e30", ".{protected}", "{payload}"])
def test_a_signature_neither_rfc7515_nor_the_quirk_is_malformed(
    peeringhub: SandboxHandle, client: ACMETestClient, signing_input: str
) -> None:
    assert client.register_with_key_id(_known_key_id(peeringhub)).status_code == 201
    assert client.kid is not None
    body = problem(client.post(client.kid, None, signing_input=signing_input), "malformed")
    assert "signature" in body["detail"]


def test_the_quirk_is_only_for_empty_payloads(
    peeringhub: SandboxHandle, client: ACMETestClient
) -> None:
    assert client.register_with_key_id(_known_key_id(peeringhub)).status_code == 201
    new_order = client.directory["newOrder"]
    problem(client.post(new_order, {"identifiers": []}, signing_input="{protected}"), "malformed")


def test_the_quirk_is_refused_by_the_rfc_profiles(sandbox_factory: SandboxFactory) -> None:
    handle = sandbox_factory(profile=PROFILES["atis"])
    acme = ACMETestClient(handle)
    try:
        assert acme.register(handle.state.add_eab()).status_code == 201
        assert acme.kid is not None
        problem(acme.post(acme.kid, None, signing_input="{protected}"), "malformed")
    finally:
        acme.close()


def test_unknown_or_missing_kid_is_refused(client: ACMETestClient) -> None:
    body = problem(client.register_with_key_id("nobody-gave-me-this"), "unauthorized")
    assert "nobody-gave-me-this" in body["detail"]
    problem(client.register_with_key_id(None), "externalAccountRequired")


def test_without_binding_any_kid_is_taken(sandbox_factory: SandboxFactory) -> None:
    handle = sandbox_factory(profile=PROFILES["peeringhub"].with_options(eab_required=False))
    acme = ACMETestClient(handle)
    try:
        # Peeringhub's docs: the kid is "any human-readable string" (e.g. the company).
        assert acme.register_with_key_id("Example Telecom").status_code == 201
    finally:
        acme.close()


def _csr(key: object, subject: x509.Name) -> str:
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(TNAUTHLIST_OID), TNAuthList.for_spc("123H").to_der()
            ),
            False,
        )
    )
    csr = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return b64(csr.public_bytes(serialization.Encoding.DER))


def _subject(organization: str = "Example Telecom") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "VA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "VoIP"),
            x509.NameAttribute(NameOID.COMMON_NAME, "SHAKEN 123H gen-7"),
        ]
    )


@pytest.fixture
def ready(peeringhub: SandboxHandle, client: ACMETestClient) -> dict[str, object]:
    """A registered account with a ready order for 123H (token bound to the SPKI)."""
    assert client.register_with_key_id(_known_key_id(peeringhub)).status_code == 201
    stipa = STIPATestClient(peeringhub)
    try:
        token = stipa.spc_token("123H", spki_fingerprint(client.key))
    finally:
        stipa.close()
    order = client.new_order("123H").json()
    answer = client.post(client.challenge_url(order), {"atc": token}).json()
    assert answer["status"] == "valid", answer
    return order


def test_certificate_copies_the_csr_subject_and_lives_a_year(
    client: ACMETestClient, ready: dict[str, object]
) -> None:
    final = client.post(str(ready["finalize"]), {"csr": _csr(client.key, _subject())}).json()
    chain = client.post(final["certificate"]).content
    leaf = x509.load_pem_x509_certificates(chain)[0]
    assert leaf.subject == _subject()
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime >= dt.timedelta(days=14)


@pytest.mark.parametrize("organization", ["Example\x00Telecom", "Example\nTelecom", "\u200b"])
def test_a_subject_with_forbidden_characters_is_bad_csr(
    client: ACMETestClient, ready: dict[str, object], organization: str
) -> None:
    csr = _csr(client.key, _subject(organization))
    body = problem(client.post(str(ready["finalize"]), {"csr": csr}), "badCSR")
    assert "O" in body["detail"]


def test_a_subject_without_an_organization_is_bad_csr(
    client: ACMETestClient, ready: dict[str, object]
) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SHAKEN 123H")])
    body = problem(
        client.post(str(ready["finalize"]), {"csr": _csr(client.key, subject)}), "badCSR"
    )
    assert "C, O and CN" in body["detail"]
