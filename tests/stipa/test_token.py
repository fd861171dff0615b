"""SPC token validation: every check, with tokens signed here by an STI-PA key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from opensti.core.errors import InvalidSPCToken
from opensti.core.passport import b64url_encode
from opensti.core.tnauthlist import TNAuthList
from opensti.sandbox.pki import (
    IssuedCertificate,
    issue_ca,
    issue_stipa_certificate,
    new_key,
    to_pem,
)
from opensti.stipa import (
    TokenBundle,
    TokenExpectation,
    TokenTrust,
    parse_token_file,
    validate_spc_token,
)
from tests._sti_ca_chains import pem_of_der, with_null_parameter
from tests.stipa._tokens import FINGERPRINT, NOW, X5U, TokenFactory, serving

SPC_1234 = TNAuthList.for_spc("1234")


def _validate(
    token: str | TokenBundle, trust: TokenTrust, now: dt.datetime = NOW, **expected: Any
) -> Any:
    expectation = TokenExpectation(
        **{"tnauthlist": SPC_1234, "fingerprint": FINGERPRINT, **expected}
    )
    return validate_spc_token(token, expectation, trust=trust, now=now)


@pytest.mark.parametrize("tkvalue", ["MAigBhYEMTIzNA==", "MAigBhYEMTIzNA"])
def test_valid_token_in_either_encoding(
    tokens: TokenFactory, trust: TokenTrust, stipa: IssuedCertificate, tkvalue: str
) -> None:
    token = _validate(tokens.token(tokens.claims(tkvalue)), trust)
    assert token.spc == "1234"
    assert token.tkvalue == tkvalue
    assert token.expires == NOW + dt.timedelta(hours=1)
    assert token.jti == "519175cb-6998-4074-9aea-0da5175a1622"
    assert token.signer == stipa.certificate
    assert token.jwt not in repr(token)


def test_fingerprint_compares_case_insensitively(tokens: TokenFactory, trust: TokenTrust) -> None:
    token = tokens.token(tokens.claims(fingerprint=FINGERPRINT.lower()))
    assert _validate(token, trust).fingerprint == FINGERPRINT.lower()


def test_token_for_another_spc(tokens: TokenFactory, trust: TokenTrust) -> None:
    other = TNAuthList.for_spc("456J").to_acme_value(padded=True)
    with pytest.raises(InvalidSPCToken, match="is for SPC 456J, not SPC 1234"):
        _validate(tokens.token(tokens.claims(other)), trust)


def test_token_for_another_account_key(tokens: TokenFactory, trust: TokenTrust) -> None:
    with pytest.raises(InvalidSPCToken, match="bound to key SHA256 5A:5A"):
        _validate(tokens.token(), trust, fingerprint="SHA256 " + ":".join(["A5"] * 32))


def test_ca_token_for_an_end_entity(tokens: TokenFactory, trust: TokenTrust) -> None:
    with pytest.raises(InvalidSPCToken, match=r"atc\.ca True"):
        _validate(tokens.token(tokens.claims(ca=True)), trust)


def test_expired_token(tokens: TokenFactory, trust: TokenTrust) -> None:
    with pytest.raises(InvalidSPCToken, match="has expired"):
        _validate(tokens.token(), trust, now=NOW + dt.timedelta(hours=2))


def test_token_with_too_little_life_left(tokens: TokenFactory, trust: TokenTrust) -> None:
    later = NOW + dt.timedelta(minutes=59)
    with pytest.raises(InvalidSPCToken, match="expires too soon"):
        _validate(tokens.token(), trust, now=later)
    assert _validate(tokens.token(), trust, now=later, min_life=dt.timedelta(seconds=30))


@pytest.mark.parametrize("claim", ["exp", "jti", "atc"])
def test_missing_claim(tokens: TokenFactory, trust: TokenTrust, claim: str) -> None:
    claims = tokens.claims()
    del claims[claim]
    with pytest.raises(InvalidSPCToken, match=f"no {claim}|no '{claim}'"):
        _validate(tokens.token(claims), trust)


def test_wrong_tktype(tokens: TokenFactory, trust: TokenTrust) -> None:
    with pytest.raises(InvalidSPCToken, match="tktype"):
        _validate(tokens.token(tokens.claims(tktype="TN")), trust)


def test_signature_by_an_untrusted_stipa(tokens: TokenFactory, trust: TokenTrust) -> None:
    rogue = issue_stipa_certificate(now=NOW)
    fetch = serving({X5U: to_pem([rogue.certificate])})
    assert rogue.key is not None
    with pytest.raises(InvalidSPCToken, match="not a trusted STI-PA"):
        _validate(tokens.token(key=rogue.key), dataclasses.replace(trust, fetch=fetch))


def test_signature_by_another_key_than_x5u(tokens: TokenFactory, trust: TokenTrust) -> None:
    with pytest.raises(InvalidSPCToken, match="signature does not verify"):
        _validate(tokens.token(key=new_key()), trust)


def test_tampered_claims(tokens: TokenFactory, trust: TokenTrust) -> None:
    header, _, signature = tokens.token().split(".")
    claims = tokens.claims(fingerprint=FINGERPRINT)
    claims["exp"] += 86400
    forged = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    with pytest.raises(InvalidSPCToken, match="signature does not verify"):
        _validate(f"{header}.{forged}.{signature}", trust)


def test_alg_other_than_es256(tokens: TokenFactory, trust: TokenTrust) -> None:
    with pytest.raises(InvalidSPCToken, match="ES256"):
        _validate(tokens.token(alg="none"), trust)


def test_http_x5u_refused_unless_allowed(tokens: TokenFactory, stipa: IssuedCertificate) -> None:
    url = "http://127.0.0.1:8080/download/v1/certificate/1.crt"
    tokens.x5u = url
    trust = TokenTrust((stipa.certificate,), serving({url: stipa.pem}))
    with pytest.raises(InvalidSPCToken, match="not an HTTPS URL"):
        _validate(tokens.token(), trust)
    assert _validate(tokens.token(), dataclasses.replace(trust, allow_http=True)).spc == "1234"


def test_stipa_certificate_chaining_to_an_anchor(tokens: TokenFactory) -> None:
    root = issue_ca("STI-PA root", organization="PA", now=NOW)
    signer = issue_ca("STI-PA token signer", organization="PA", now=NOW, issuer=root)
    assert signer.key is not None
    trust = TokenTrust((root.certificate,), serving({X5U: signer.pem}))
    assert _validate(tokens.token(key=signer.key), trust).signer == signer.certificate


def test_expired_stipa_certificate(tokens: TokenFactory, trust: TokenTrust) -> None:
    later = NOW + dt.timedelta(days=3651)
    claims = tokens.claims()
    claims["exp"] = int((later + dt.timedelta(hours=1)).timestamp())
    with pytest.raises(InvalidSPCToken, match="not valid now"):
        _validate(tokens.token(claims), trust, now=later)


def test_no_trust_anchors(tokens: TokenFactory, trust: TokenTrust) -> None:
    with pytest.raises(InvalidSPCToken, match="no STI-PA trust anchors"):
        _validate(tokens.token(), dataclasses.replace(trust, anchors=()))


def test_crl_url_must_be_the_expected_one(tokens: TokenFactory, trust: TokenTrust) -> None:
    crl = "https://sti-pa.example.net/download/v1/crl"
    bundle = TokenBundle(tokens.token(), crl)
    assert _validate(bundle, trust, expected_crl_url=crl).crl_url == crl
    with pytest.raises(InvalidSPCToken, match=r"CRL URL is .* expected"):
        _validate(bundle, trust, expected_crl_url="https://other.example.net/crl")


def test_token_file_in_the_stipa_json_form(tokens: TokenFactory) -> None:
    jwt = tokens.token()
    crl = "https://sti-pa.example.net/download/v1/crl"
    answer = {"status": "success", "message": "created", "token": jwt, "crl": crl}
    bundle = parse_token_file(json.dumps(answer).encode())
    assert bundle.token == jwt
    assert bundle.crl_url == crl


def test_token_file_with_a_bare_jwt(tokens: TokenFactory) -> None:
    jwt = tokens.token()
    assert parse_token_file(f"\n{jwt}\n") == TokenBundle(jwt)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello world", "neither"),
        (b"a.b", "neither"),
        (b'{"token": 5}', 'no "token"'),
        (b'{"status": "success"', "not valid JSON"),
        (b'{"token": "a.b.c", "crl": 7}', "crl"),
        (b"\xff\xfe", "not text"),
        (b"a" * 70_000, "larger than 64 KiB"),
    ],
)
def test_bad_token_files(content: bytes, message: str) -> None:
    with pytest.raises(InvalidSPCToken, match=message):
        parse_token_file(content)


def test_token_file_that_is_not_a_jwt_fails_validation(trust: TokenTrust) -> None:
    bundle = parse_token_file(b"abc.def.ghi")
    with pytest.raises(InvalidSPCToken, match="not an SPC token"):
        _validate(bundle, trust)


def test_stipa_certificate_with_the_null_parameter(tokens: TokenFactory) -> None:
    """An STI-PA signer certificate encoded as T-Mobile's STI-CA certificates are (explicit
    NULL in ecdsa-with-SHA256): checked over its original TBS, so only the real root's
    signature is accepted."""
    root = issue_ca("STI-PA root", organization="PA", now=NOW)
    signer = issue_ca("STI-PA token signer", organization="PA", now=NOW, issuer=root)
    assert signer.key is not None
    assert root.key is not None
    odd = pem_of_der(with_null_parameter(signer.certificate, root.key))
    trust = TokenTrust((root.certificate,), serving({X5U: odd}))
    token = _validate(tokens.token(key=signer.key), trust)
    assert token.signer is not None
    assert token.signer.subject == signer.certificate.subject
    forged = pem_of_der(with_null_parameter(signer.certificate, new_key()))
    with pytest.raises(InvalidSPCToken, match="not a trusted STI-PA"):
        _validate(
            tokens.token(key=signer.key), TokenTrust((root.certificate,), serving({X5U: forged}))
        )
