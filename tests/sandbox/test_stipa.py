"""The sandbox STI-PA over real HTTPS: login, SPC tokens, trust list, CRL, revocation."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256

from opensti.sandbox.config import APIUserConfig, ProviderConfig
from opensti.sandbox.server import SandboxHandle
from tests.sandbox.acme_support import (
    STIPATestClient,
    b64,
    jwk_fingerprint,
    new_key,
    tnauthlist_value,
)
from tests.sandbox.conftest import Clock

pytestmark = pytest.mark.integration

FINGERPRINT = "SHA256 " + ":".join(["AB"] * 32)


def atc(spc: str = "123H", **changes: object) -> dict[str, object]:
    return {
        "tktype": "TNAuthList",
        "tkvalue": tnauthlist_value(spc),
        "ca": False,
        "fingerprint": FINGERPRINT,
        **changes,
    }


def b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_login_returns_an_access_token(stipa: STIPATestClient) -> None:
    body = stipa.login().json()
    assert body["status"] == "success"
    assert len(body["accessToken"]) > 20


@pytest.mark.parametrize(("user", "password"), [("demo", "wrong"), ("nobody", "demo-password")])
def test_login_with_wrong_credentials_is_401_json(
    stipa: STIPATestClient, user: str, password: str
) -> None:
    response = stipa.login(user, password)
    assert response.status_code == 401
    assert response.json()["status"] == "error"


@pytest.mark.parametrize("slash", ["/", ""])
def test_spc_token_is_an_es256_jwt_signed_by_the_stipa_cert_at_x5u(
    stipa: STIPATestClient, slash: str
) -> None:
    key = new_key()
    request = atc("456J", fingerprint=jwk_fingerprint(key))
    response = stipa.request_token(request, slash=slash)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["crl"] == stipa.handle.stipa_base_url + "/download/v1/crl"
    header_b64, payload_b64, signature_b64 = body["token"].split(".")
    header = json.loads(b64decode(header_b64))
    claims = json.loads(b64decode(payload_b64))
    assert header["alg"] == "ES256"
    assert header["typ"] == "JWT"
    cert_response = stipa.http.get(header["x5u"])
    assert cert_response.status_code == 200
    cert = x509.load_pem_x509_certificate(cert_response.content)
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    signing_input = f"{header_b64}.{payload_b64}".encode()
    assert ES256.verify(public_key, signing_input, b64decode(signature_b64))
    assert claims["atc"] == request
    assert claims["exp"] > claims["iat"]
    assert claims["jti"]


def test_token_request_needs_a_valid_access_token(stipa: STIPATestClient) -> None:
    assert stipa.request_token(atc(), access_token="").status_code == 401
    assert stipa.request_token(atc(), access_token="not-issued").status_code == 401


def test_expired_access_token_is_refused(stipa: STIPATestClient, clock: Clock) -> None:
    token = stipa.access_token()
    clock.advance(dt.timedelta(hours=2))
    response = stipa.request_token(atc(), access_token=token)
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_bearer_prefix_is_accepted(stipa: STIPATestClient) -> None:
    response = stipa.request_token(atc(), access_token="Bearer " + stipa.access_token())
    assert response.status_code == 200


@pytest.fixture
def other_provider(sandbox: SandboxHandle) -> ProviderConfig:
    provider = ProviderConfig("999Z", ("999Z",), (APIUserConfig("other", "other-pass"),))
    sandbox.state.add_provider(provider)
    return provider


@pytest.mark.usefixtures("other_provider")
def test_spc_of_another_account_is_refused(stipa: STIPATestClient) -> None:
    response = stipa.request_token(atc("999Z"))
    assert response.status_code == 403
    assert "does not belong" in response.json()["message"]


@pytest.mark.usefixtures("other_provider")
def test_token_for_another_account_id_is_refused(stipa: STIPATestClient) -> None:
    assert stipa.request_token(atc("999Z"), account="999Z").status_code == 403
    other = stipa.access_token("other", "other-pass")
    assert stipa.request_token(atc("999Z"), account="999Z", access_token=other).status_code == 200


def test_unknown_spc_is_refused(stipa: STIPATestClient) -> None:
    assert stipa.request_token(atc("777Q")).status_code == 403


@pytest.mark.parametrize(
    "fingerprint",
    [
        "SHA256 " + ":".join(["ab"] * 32),  # lower case
        ":".join(["AB"] * 32),  # no algorithm
        "SHA256 " + ":".join(["AB"] * 31),  # too short
        "SHA256 " + "AB" * 32,  # no colons
        "SHA1 " + ":".join(["AB"] * 20),
    ],
)
def test_bad_fingerprint_format_is_400(stipa: STIPATestClient, fingerprint: str) -> None:
    response = stipa.request_token(atc(fingerprint=fingerprint))
    assert response.status_code == 400
    assert "fingerprint" in response.json()["message"]


@pytest.mark.parametrize(
    "changes",
    [
        {"tktype": "SPC"},
        {"ca": True},
        {"tkvalue": "not base64 !"},
        {"tkvalue": b64(b"\x30\x00")},
    ],
)
def test_malformed_atc_is_400(stipa: STIPATestClient, changes: dict[str, object]) -> None:
    assert stipa.request_token(atc(**changes)).status_code == 400


def test_tkvalue_with_two_spcs_is_refused(stipa: STIPATestClient) -> None:
    from opensti.core.tnauthlist import SPC, TNAuthList

    value = TNAuthList((SPC("123H"), SPC("456J"))).to_acme_value(padded=True)
    assert stipa.request_token(atc(tkvalue=value)).status_code == 400


def test_ca_list_is_the_sandbox_root_as_pem_or_json(stipa: STIPATestClient) -> None:
    root = stipa.handle.trust_anchors[0]
    pem = stipa.http.get("/api/v1/ca-list")
    assert pem.status_code == 200
    assert x509.load_pem_x509_certificates(pem.content) == [root]
    listed = stipa.http.get("/api/v1/ca-list", headers={"Accept": "application/json"}).json()
    assert [x509.load_pem_x509_certificate(p.encode()) for p in listed["certificates"]] == [root]


def test_crl_is_signed_by_the_stipa_certificate(stipa: STIPATestClient) -> None:
    response = stipa.http.get("/download/v1/crl")
    assert response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(response.content)
    stipa_cert = stipa.handle.state.pki.stipa.certificate
    key = stipa_cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert crl.issuer == stipa_cert.subject
    assert crl.is_signature_valid(key)


def test_unknown_certificate_id_is_404(stipa: STIPATestClient) -> None:
    assert stipa.http.get("/download/v1/certificate/certificateId_1.crt").status_code == 404


def test_revoked_spc_gets_no_token(stipa: STIPATestClient) -> None:
    assert stipa.request_token(atc("456J")).status_code == 200
    response = stipa.http.post("/admin/spc/456J/revoke")
    assert response.status_code == 200
    refused = stipa.request_token(atc("456J"))
    assert refused.status_code == 403
    assert "revoked" in refused.json()["message"]
    assert stipa.request_token(atc("123H")).status_code == 200
