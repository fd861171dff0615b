"""SPC tokens (RFC 9448 section 5): issued by the sandbox STI-PA, checked by its STI-CA.

The token is a JWT signed ES256 by the STI-PA certificate that its ``x5u`` names:
header ``{"alg":"ES256","typ":"JWT","x5u":...}``, claims ``iat``, ``exp``, ``jti`` and
``atc`` = ``{"tktype":"TNAuthList","tkvalue":...,"ca":false,"fingerprint":"SHA256 .."}``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from opensti.core.errors import InvalidTNAuthList
from opensti.core.tnauthlist import TNAuthList
from opensti.sandbox.config import FingerprintAlgorithm, IdentifierEncoding
from opensti.sandbox.jws import FlattenedJWS, b64url_encode
from opensti.sandbox.problems import Problem

__all__ = [
    "FINGERPRINT_PATTERN",
    "ExpectedToken",
    "account_fingerprint",
    "issue_spc_token",
    "validate_spc_token",
]

#: ``SHA256`` + one space + 32 uppercase hex pairs separated by colons (RFC 9448 5.4).
FINGERPRINT_PATTERN = re.compile(r"SHA256 [0-9A-F]{2}(?::[0-9A-F]{2}){31}")


def _format_fingerprint(digest: bytes) -> str:
    return "SHA256 " + ":".join(f"{byte:02X}" for byte in digest)


def account_fingerprint(jwk: JWK, algorithm: FingerprintAlgorithm) -> str:
    """The ``atc.fingerprint`` of an ACME account key, per the CA profile's definition."""
    if algorithm == "jwk_thumbprint":
        return _format_fingerprint(jwk.public_key().thumbprint(hashes.SHA256))
    spki = jwk.public_key().key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return _format_fingerprint(digest.finalize())


def issue_spc_token(
    atc: dict[str, Any],
    *,
    key: ec.EllipticCurvePrivateKey,
    x5u: str,
    now: dt.datetime,
    validity: dt.timedelta,
) -> tuple[str, str, dt.datetime]:
    """Sign an SPC token; return (compact JWT, jti, expiry)."""
    jti = str(uuid.uuid4())
    expires = now + validity
    claims = {
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": jti,
        "atc": atc,
    }
    header = {"alg": "ES256", "typ": "JWT", "x5u": x5u}
    protected = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    payload = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signature = ES256.sign(key, f"{protected}.{payload}".encode())
    return f"{protected}.{payload}.{b64url_encode(signature)}", jti, expires


@dataclass(frozen=True, slots=True)
class ExpectedToken:
    """What the CA knows when a tkauth-01 challenge is answered."""

    stipa_url: str
    stipa_key: ec.EllipticCurvePublicKey
    identifier: TNAuthList
    encoding: IdentifierEncoding
    fingerprint: str
    now: dt.datetime


def _refuse(detail: str) -> Problem:
    return Problem("unauthorized", f"SPC token refused: {detail}")


def _claims(token: str) -> tuple[FlattenedJWS, dict[str, Any]]:
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise _refuse("not a JWS in compact serialization")
    try:
        jws = FlattenedJWS.parse(
            dict(zip(("protected", "payload", "signature"), parts, strict=True))
        )
        return jws, jws.payload_json()
    except Problem as exc:
        raise _refuse(exc.detail) from None


def validate_spc_token(token: Any, expected: ExpectedToken) -> dict[str, Any]:
    """Every RFC 9448 section 6 check; return the claims or raise ``unauthorized``."""
    jws, claims = _claims(token)
    if jws.header.get("x5u") != expected.stipa_url:
        raise _refuse("x5u is not the certificate of this CA's STI-PA")
    try:
        jws.verify(JWKEC(key=expected.stipa_key), ("ES256",))
    except Problem as exc:
        raise _refuse(exc.detail) from None
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise _refuse("exp is missing")
    if exp <= expected.now.timestamp():
        raise _refuse("the token has expired")
    if not isinstance(claims.get("jti"), str):
        raise _refuse("jti is missing")
    atc = claims.get("atc")
    if not isinstance(atc, dict) or atc.get("tktype") != "TNAuthList":
        raise _refuse("atc.tktype is not TNAuthList")
    _check_tkvalue(atc.get("tkvalue"), expected)
    if atc.get("ca") is not False:
        raise _refuse("atc.ca must be false for an end-entity certificate")
    if atc.get("fingerprint") != expected.fingerprint:
        raise _refuse("atc.fingerprint is not the fingerprint of this account's key")
    return claims


def _check_tkvalue(tkvalue: Any, expected: ExpectedToken) -> None:
    if not isinstance(tkvalue, str):
        raise _refuse("atc.tkvalue is missing")
    try:
        value = TNAuthList.from_acme_value(tkvalue)
    except InvalidTNAuthList as exc:
        raise _refuse(f"atc.tkvalue: {exc}") from None
    if value != expected.identifier:
        raise _refuse("atc.tkvalue is not the order's TNAuthList")
    if tkvalue != value.to_acme_value(padded=expected.encoding == "padded"):
        raise _refuse(f"atc.tkvalue is not in the CA's {expected.encoding} encoding")
