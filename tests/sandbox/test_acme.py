"""The sandbox STI-CA as an ACME server: every endpoint and every refusal, over HTTPS."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.sandbox.server import SandboxHandle
from opensti.sandbox.tokens import issue_spc_token
from tests.sandbox.acme_support import (
    JOSE,
    ACMETestClient,
    STIPATestClient,
    b64,
    b64json,
    eab_binding,
    jwk_fingerprint,
    make_csr,
    new_key,
    public_jwk,
    sign_jws,
    tnauthlist_value,
)
from tests.sandbox.conftest import Clock

pytestmark = pytest.mark.integration

ERR = "urn:ietf:params:acme:error:"


def problem(response: httpx.Response, kind: str, status: int | None = None) -> dict[str, Any]:
    """Assert ``response`` is an ACME problem document of ``kind``; return it."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = response.json()
    assert body["type"] == ERR + kind, body
    if status is not None:
        assert response.status_code == status
    assert response.headers.get("Replay-Nonce")
    return body


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[ACMETestClient]:
    unregistered = ACMETestClient(sandbox)
    yield unregistered
    unregistered.close()


# Directory and nonces


def test_directory_lists_every_resource(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    directory = client.directory
    for name in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert directory[name].startswith(sandbox.base_url + "/acme/")
    assert directory["meta"]["externalAccountRequired"] is True


def test_new_nonce_head_and_get(client: ACMETestClient) -> None:
    head = client.http.head(client.directory["newNonce"])
    get = client.http.get(client.directory["newNonce"])
    assert (head.status_code, get.status_code) == (200, 204)
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert head.headers["Cache-Control"] == "no-store"
    assert 'rel="index"' in head.headers["Link"]


# Accounts and External Account Binding


def test_new_account_with_eab_is_created(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    response = client.register(sandbox.state.add_eab(), contact=["mailto:ops@example.net"])
    assert response.status_code == 201
    assert response.headers["Location"].startswith(sandbox.base_url + "/acme/account/")
    assert response.headers["Replay-Nonce"]
    body = response.json()
    assert body["status"] == "valid"
    assert body["contact"] == ["mailto:ops@example.net"]


def test_new_account_without_eab_is_refused(client: ACMETestClient) -> None:
    problem(client.register(None), "externalAccountRequired", 403)


def test_eab_with_wrong_hmac_is_refused(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    kid, _ = sandbox.state.add_eab()
    _, other_key = sandbox.state.add_eab()
    problem(client.register((kid, other_key)), "unauthorized", 403)


def test_eab_with_unknown_kid_is_refused(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    _, key = sandbox.state.add_eab()
    body = problem(client.register(("kid-never-issued", key)), "unauthorized")
    assert "unknown" in body["detail"]


def _register_with_binding(client: ACMETestClient, binding: dict[str, str]) -> httpx.Response:
    url = client.directory["newAccount"]
    return client.post(url, {"externalAccountBinding": binding}, use_jwk=True)


def test_eab_over_another_key_is_refused(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    kid, key = sandbox.state.add_eab()
    url = client.directory["newAccount"]
    binding = eab_binding(kid, key, url, public_jwk(new_key()))
    problem(_register_with_binding(client, binding), "unauthorized")


def test_eab_with_another_url_is_refused(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    kid, key = sandbox.state.add_eab()
    binding = eab_binding(kid, key, client.directory["newOrder"], public_jwk(client.key))
    problem(_register_with_binding(client, binding), "unauthorized")


def test_eab_with_a_nonce_is_malformed(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    kid, key = sandbox.state.add_eab()
    url = client.directory["newAccount"]
    binding = eab_binding(kid, key, url, public_jwk(client.key), nonce="abc")
    problem(_register_with_binding(client, binding), "malformed")


def test_eab_kid_binds_one_account_only(sandbox: SandboxHandle, client: ACMETestClient) -> None:
    eab = sandbox.state.add_eab()
    assert client.register(eab).status_code == 201
    again = client.register(eab)
    assert again.status_code == 200  # same key: the existing account
    assert again.headers["Location"] == client.kid
    other = ACMETestClient(sandbox)
    problem(other.register(eab), "unauthorized")


def test_only_return_existing(sandbox: SandboxHandle, acme: ACMETestClient) -> None:
    url = acme.directory["newAccount"]
    found = acme.post(url, {"onlyReturnExisting": True}, use_jwk=True)
    assert found.status_code == 200
    assert found.headers["Location"] == acme.kid
    stranger = ACMETestClient(sandbox)
    missing = stranger.post(url, {"onlyReturnExisting": True}, use_jwk=True)
    problem(missing, "accountDoesNotExist", 400)


def test_account_lookup_update_and_deactivate(acme: ACMETestClient) -> None:
    assert acme.kid is not None
    assert acme.post(acme.kid).json()["status"] == "valid"
    updated = acme.post(acme.kid, {"contact": ["mailto:new@example.net"]})
    assert updated.json()["contact"] == ["mailto:new@example.net"]
    problem(acme.post(acme.kid, {"contact": ["tel:+12025550100"]}), "unsupportedContact")
    orders = acme.post(acme.post(acme.kid).json()["orders"])
    assert orders.json() == {"orders": []}
    assert acme.post(acme.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    problem(acme.new_order("123H"), "unauthorized", 403)


def test_key_rollover(acme: ACMETestClient) -> None:
    assert acme.kid is not None
    new = new_key()
    url = acme.directory["keyChange"]
    inner = sign_jws(
        new,
        {"alg": "ES256", "jwk": public_jwk(new), "url": url},
        {"account": acme.kid, "oldKey": public_jwk(acme.key)},
    )
    response = acme.post(url, inner)
    assert response.status_code == 200, response.text
    old_key, acme.key = acme.key, new
    assert acme.post(acme.kid).status_code == 200
    problem(acme.post(acme.kid, key=old_key), "malformed")


def test_key_rollover_needs_the_old_key(acme: ACMETestClient) -> None:
    new = new_key()
    url = acme.directory["keyChange"]
    inner = sign_jws(
        new,
        {"alg": "ES256", "jwk": public_jwk(new), "url": url},
        {"account": acme.kid, "oldKey": public_jwk(new_key())},
    )
    problem(acme.post(url, inner), "unauthorized")


# JWS rules (RFC 8555 section 6)


def test_reused_nonce_is_bad_nonce(acme: ACMETestClient) -> None:
    assert acme.kid is not None
    protected = acme.protected(acme.kid)
    body = json.dumps(sign_jws(acme.key, protected, None))
    assert acme.http.post(acme.kid, content=body, headers=JOSE).status_code == 200
    problem(acme.http.post(acme.kid, content=body, headers=JOSE), "badNonce", 400)


def test_unknown_nonce_is_bad_nonce(acme: ACMETestClient) -> None:
    assert acme.kid is not None
    problem(acme.post(acme.kid, nonce="bm90LWlzc3VlZA"), "badNonce")


def test_bad_signature_is_refused(acme: ACMETestClient) -> None:
    assert acme.kid is not None
    problem(acme.post(acme.kid, key=new_key()), "malformed", 400)


def test_tampered_payload_is_refused(acme: ACMETestClient) -> None:
    body = sign_jws(acme.key, acme.protected(acme.directory["newOrder"]), {"identifiers": []})
    body["payload"] = b64json({"identifiers": [{"type": "TNAuthList", "value": "x"}]})
    response = acme.http.post(acme.directory["newOrder"], content=json.dumps(body), headers=JOSE)
    problem(response, "malformed")


def test_url_mismatch_is_refused(acme: ACMETestClient) -> None:
    assert acme.kid is not None
    problem(acme.post(acme.kid, header_url=acme.directory["newOrder"]), "unauthorized", 403)


def test_jwk_where_kid_is_required(acme: ACMETestClient) -> None:
    response = acme.post(acme.directory["newOrder"], {"identifiers": []}, use_jwk=True)
    problem(response, "malformed")


def test_kid_on_new_account_and_both_kid_and_jwk(acme: ACMETestClient) -> None:
    url = acme.directory["newAccount"]
    problem(acme.post(url, {}), "malformed")
    both = acme.post(acme.directory["newOrder"], {}, jwk=public_jwk(acme.key))
    problem(both, "malformed")


def test_unknown_kid_is_account_does_not_exist(acme: ACMETestClient) -> None:
    response = acme.post(acme.directory["newOrder"], {}, kid=acme.kid + "x")
    problem(response, "accountDoesNotExist")


def test_unsupported_algorithm(acme: ACMETestClient) -> None:
    body = problem(acme.post(acme.directory["newOrder"], {}, alg="HS256"), "badSignatureAlgorithm")
    assert "ES256" in body["algorithms"]


def test_wrong_content_type(acme: ACMETestClient) -> None:
    body = json.dumps(sign_jws(acme.key, acme.protected(acme.directory["newOrder"]), {}))
    response = acme.http.post(acme.directory["newOrder"], content=body)
    problem(response, "malformed", 415)


def test_general_serialization_is_refused(acme: ACMETestClient) -> None:
    flat = sign_jws(acme.key, acme.protected(acme.directory["newOrder"]), {})
    general = {
        "payload": flat["payload"],
        "signatures": [{"protected": flat["protected"], "signature": flat["signature"]}],
    }
    response = acme.http.post(acme.directory["newOrder"], content=json.dumps(general), headers=JOSE)
    problem(response, "malformed")


def test_unknown_resource_is_a_404_problem(client: ACMETestClient, sandbox: SandboxHandle) -> None:
    problem(client.http.post(sandbox.base_url + "/acme/nothing-here"), "malformed", 404)


# Orders and the tkauth-01 challenge


def test_new_order_has_one_authz_with_a_tkauth_challenge(
    sandbox: SandboxHandle, acme: ACMETestClient
) -> None:
    response = acme.new_order("123H")
    assert response.status_code == 201
    order = response.json()
    assert response.headers["Location"].startswith(sandbox.base_url + "/acme/order/")
    assert order["status"] == "pending"
    assert order["identifiers"] == [{"type": "TNAuthList", "value": "MAigBhYEMTIzSA=="}]
    authz = acme.post(order["authorizations"][0]).json()
    assert authz["status"] == "pending"
    assert authz["identifier"] == order["identifiers"][0]
    (challenge,) = authz["challenges"]
    assert challenge["type"] == "tkauth-01"
    assert challenge["tkauth-type"] == "atc"
    assert challenge["token-authority"] == sandbox.stipa_base_url
    assert acme.post(response.headers["Location"]).json()["status"] == "pending"
    listed = acme.post(acme.post(acme.kid).json()["orders"]).json()  # type: ignore[arg-type]
    assert listed["orders"] == [response.headers["Location"]]


@pytest.mark.parametrize(
    ("identifier", "kind"),
    [
        ({"type": "dns", "value": "example.com"}, "unsupportedIdentifier"),
        ({"type": "TNAuthList", "value": "MAigBhYEMTIzSA"}, "rejectedIdentifier"),
        ({"type": "TNAuthList", "value": "MAqiCBYGMjAyNTU1"}, "rejectedIdentifier"),
        ({"type": "TNAuthList", "value": "!!"}, "malformed"),
    ],
)
def test_new_order_refusals(acme: ACMETestClient, identifier: dict[str, str], kind: str) -> None:
    problem(acme.post(acme.directory["newOrder"], {"identifiers": [identifier]}), kind)


def test_order_of_another_account_is_unauthorized(
    sandbox: SandboxHandle, acme: ACMETestClient
) -> None:
    order_url = acme.new_order("123H").headers["Location"]
    other = ACMETestClient(sandbox)
    other.register(sandbox.state.add_eab())
    problem(other.post(order_url), "unauthorized", 403)


def _answered(
    acme: ACMETestClient, token: str, spc: str = "123H"
) -> tuple[dict[str, Any], httpx.Response]:
    created = acme.new_order(spc)
    order = created.json() | {"url": created.headers["Location"]}
    return order, acme.answer(order, token)


def _assert_refused(acme: ACMETestClient, order: dict[str, Any], answer: httpx.Response) -> str:
    challenge = answer.json()
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"] == ERR + "unauthorized"
    assert acme.post(order["authorizations"][0]).json()["status"] == "invalid"
    assert acme.post(order["url"]).json()["status"] == "invalid"
    return str(challenge["error"]["detail"])


def test_valid_token_validates_the_challenge(acme: ACMETestClient, stipa: STIPATestClient) -> None:
    token = stipa.spc_token("123H", jwk_fingerprint(acme.key))
    order, answer = _answered(acme, token)
    assert answer.status_code == 200
    assert answer.json()["status"] == "valid"
    assert answer.json()["validated"]
    assert f'<{order["authorizations"][0]}>;rel="up"' in answer.headers["Link"]
    assert acme.post(order["url"]).json()["status"] == "ready"


@pytest.mark.parametrize("field_name", ["tkauth", "atc"])
def test_both_response_fields_are_accepted(
    acme: ACMETestClient, stipa: STIPATestClient, field_name: str
) -> None:
    token = stipa.spc_token("123H", jwk_fingerprint(acme.key))
    order = acme.new_order("123H").json()
    assert acme.answer(order, token, field_name).json()["status"] == "valid"


def test_challenge_without_token_is_malformed(acme: ACMETestClient) -> None:
    order = acme.new_order("123H").json()
    problem(acme.post(acme.challenge_url(order), {}), "malformed")


def test_token_for_another_spc_is_refused(acme: ACMETestClient, stipa: STIPATestClient) -> None:
    token = stipa.spc_token("456J", jwk_fingerprint(acme.key))
    order, answer = _answered(acme, token, "123H")
    assert "tkvalue" in _assert_refused(acme, order, answer)


def test_token_for_another_account_key_is_refused(
    acme: ACMETestClient, stipa: STIPATestClient
) -> None:
    token = stipa.spc_token("123H", jwk_fingerprint(new_key()))
    order, answer = _answered(acme, token)
    assert "fingerprint" in _assert_refused(acme, order, answer)


def test_expired_token_is_refused(
    acme: ACMETestClient, stipa: STIPATestClient, clock: Clock
) -> None:
    token = stipa.spc_token("123H", jwk_fingerprint(acme.key))
    clock.advance(dt.timedelta(days=2))
    order, answer = _answered(acme, token)
    assert "expired" in _assert_refused(acme, order, answer)


def _forged(sandbox: SandboxHandle, acme: ACMETestClient, *, key: Any, x5u: str) -> str:
    atc = {
        "tktype": "TNAuthList",
        "tkvalue": tnauthlist_value("123H"),
        "ca": False,
        "fingerprint": jwk_fingerprint(acme.key),
    }
    now = dt.datetime.now(dt.UTC)
    return issue_spc_token(atc, key=key, x5u=x5u, now=now, validity=dt.timedelta(hours=1))[0]


def test_token_not_signed_by_the_stipa_is_refused(
    sandbox: SandboxHandle, acme: ACMETestClient
) -> None:
    token = _forged(sandbox, acme, key=new_key(), x5u=sandbox.state.pki.stipa_certificate_url)
    order, answer = _answered(acme, token)
    assert "signature" in _assert_refused(acme, order, answer)


def test_token_naming_another_x5u_is_refused(sandbox: SandboxHandle, acme: ACMETestClient) -> None:
    stipa_key = sandbox.state.pki.stipa.key
    token = _forged(sandbox, acme, key=stipa_key, x5u="https://127.0.0.1:1/other.crt")
    order, answer = _answered(acme, token)
    assert "x5u" in _assert_refused(acme, order, answer)


def test_garbage_token_is_refused(acme: ACMETestClient) -> None:
    order, answer = _answered(acme, "not-a-jwt")
    _assert_refused(acme, order, answer)


def test_token_of_a_revoked_spc_is_refused(
    sandbox: SandboxHandle, acme: ACMETestClient, stipa: STIPATestClient
) -> None:
    token = stipa.spc_token("123H", jwk_fingerprint(acme.key))
    sandbox.state.revoke_spc("123H")
    order, answer = _answered(acme, token)
    assert "revoked" in _assert_refused(acme, order, answer)


def test_authorization_deactivation(acme: ACMETestClient) -> None:
    order = acme.new_order("123H").json()
    authz = acme.post(order["authorizations"][0], {"status": "deactivated"})
    assert authz.json()["status"] == "deactivated"


# Finalize, download, revocation


@pytest.fixture
def ready_order(acme: ACMETestClient, stipa: STIPATestClient) -> dict[str, Any]:
    token = stipa.spc_token("123H", jwk_fingerprint(acme.key))
    order, answer = _answered(acme, token)
    assert answer.json()["status"] == "valid"
    return order


def test_finalize_before_ready_is_order_not_ready(acme: ACMETestClient) -> None:
    order = acme.new_order("123H").json()
    problem(
        acme.post(order["finalize"], {"csr": make_csr(new_key(), "123H")}), "orderNotReady", 403
    )


def _p384_csr() -> str:
    key = ec.generate_private_key(ec.SECP384R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "SHAKEN 123H")]))
        .sign(key, hashes.SHA384())
    )
    return b64(csr.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize(
    ("csr", "detail"),
    [
        (lambda: make_csr(new_key(), "456J"), "not the order"),
        (lambda: make_csr(new_key(), None), "no TNAuthList"),
        (lambda: make_csr(new_key(), "123H", ca=True), "CA:TRUE"),
        (_p384_csr, "P-256"),
        (lambda: "AAAA", "PKCS#10"),
    ],
)
def test_bad_csr_is_refused(
    acme: ACMETestClient, ready_order: dict[str, Any], csr: Any, detail: str
) -> None:
    body = problem(acme.post(ready_order["finalize"], {"csr": csr()}), "badCSR", 400)
    assert detail in body["detail"]
    assert acme.post(ready_order["url"]).json()["status"] == "ready"


def test_finalize_issues_and_the_chain_downloads(
    sandbox: SandboxHandle, acme: ACMETestClient, ready_order: dict[str, Any]
) -> None:
    key = new_key()
    final = acme.post(ready_order["finalize"], {"csr": make_csr(key, "123H")})
    assert final.status_code == 200
    assert final.headers["Location"] == ready_order["url"]
    assert final.json()["status"] == "valid"
    chain = acme.post(final.json()["certificate"])
    assert chain.headers["content-type"] == "application/pem-certificate-chain"
    assert 'rel="index"' in chain.headers["Link"]
    leaf, intermediate = x509.load_pem_x509_certificates(chain.content)
    assert leaf.public_key() == key.public_key()
    assert intermediate == sandbox.state.pki.intermediate.certificate
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=7)
    again = acme.post(ready_order["finalize"], {"csr": make_csr(key, "123H")})
    problem(again, "orderNotReady")


def test_certificate_of_another_account_is_unauthorized(
    sandbox: SandboxHandle, acme: ACMETestClient, ready_order: dict[str, Any]
) -> None:
    final = acme.post(ready_order["finalize"], {"csr": make_csr(new_key(), "123H")}).json()
    other = ACMETestClient(sandbox)
    other.register(sandbox.state.add_eab())
    problem(other.post(final["certificate"]), "unauthorized")


def _issued(acme: ACMETestClient, order: dict[str, Any]) -> tuple[Any, x509.Certificate]:
    key = new_key()
    final = acme.post(order["finalize"], {"csr": make_csr(key, "123H")}).json()
    leaf = x509.load_pem_x509_certificates(acme.post(final["certificate"]).content)[0]
    return key, leaf


def _revoke_body(cert: x509.Certificate, **extra: Any) -> dict[str, Any]:
    return {"certificate": b64(cert.public_bytes(serialization.Encoding.DER)), **extra}


def _crl_serials(stipa: STIPATestClient) -> set[int]:
    crl = x509.load_der_x509_crl(stipa.http.get("/download/v1/crl").content)
    return {entry.serial_number for entry in crl}


def test_revoke_by_account_puts_the_serial_on_the_crl(
    acme: ACMETestClient, stipa: STIPATestClient, ready_order: dict[str, Any]
) -> None:
    _, leaf = _issued(acme, ready_order)
    assert leaf.serial_number not in _crl_serials(stipa)
    url = acme.directory["revokeCert"]
    assert acme.post(url, _revoke_body(leaf, reason=4)).status_code == 200
    assert leaf.serial_number in _crl_serials(stipa)
    problem(acme.post(url, _revoke_body(leaf)), "alreadyRevoked")


def test_revoke_by_certificate_key(
    acme: ACMETestClient, stipa: STIPATestClient, ready_order: dict[str, Any]
) -> None:
    key, leaf = _issued(acme, ready_order)
    stranger = ACMETestClient(acme.handle, key=new_key())
    url = acme.directory["revokeCert"]
    problem(stranger.post(url, _revoke_body(leaf), use_jwk=True), "unauthorized")
    holder = ACMETestClient(acme.handle, key=key)
    assert holder.post(url, _revoke_body(leaf), use_jwk=True).status_code == 200
    assert leaf.serial_number in _crl_serials(stipa)


def test_revoke_with_a_bad_reason(acme: ACMETestClient, ready_order: dict[str, Any]) -> None:
    _, leaf = _issued(acme, ready_order)
    url = acme.directory["revokeCert"]
    problem(acme.post(url, _revoke_body(leaf, reason=7)), "badRevocationReason")


def test_revoking_an_spc_revokes_its_certificates(
    sandbox: SandboxHandle,
    acme: ACMETestClient,
    stipa: STIPATestClient,
    ready_order: dict[str, Any],
) -> None:
    _, leaf = _issued(acme, ready_order)
    revoked = stipa.http.post("/admin/spc/123H/revoke").json()["revoked_serials"]
    assert revoked == [f"{leaf.serial_number:x}"]
    assert leaf.serial_number in _crl_serials(stipa)
