"""Checking the JWS that carries every ACME request (RFC 8555 section 6.2) and the
External Account Binding inside newAccount (section 7.3.4).

Signatures are verified with josepy's algorithms over the exact bytes the client sent
(``protected "." payload`` as received), so no re-encoding can change what is checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from josepy.errors import DeserializationError
from josepy.errors import Error as JoseError
from josepy.jwa import JWASignature
from josepy.jwk import JWK, JWKOct

from opensti.sandbox.problems import Problem

__all__ = [
    "ACCOUNT_ALGORITHMS",
    "FlattenedJWS",
    "b64url_decode",
    "b64url_encode",
    "parse_jwk",
    "verify_eab",
]

#: Signature algorithms accepted for account keys; SHAKEN CAs commonly take only ES256.
ACCOUNT_ALGORITHMS = ("ES256", "ES384", "RS256")
_MAC_ALGORITHMS = ("HS256", "HS384", "HS512")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: Any, what: str) -> bytes:
    """Strict base64url without padding, as JWS requires; anything else is malformed."""
    if not isinstance(text, str) or "=" in text:
        raise Problem("malformed", f"{what} is not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Problem("malformed", f"{what} is not base64url") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Problem("malformed", f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Problem("malformed", f"{what} is not a JSON object")
    return value


def parse_jwk(value: Any) -> JWK:
    """A public JWK from a header; private members or odd key types are refused."""
    if not isinstance(value, dict) or value.get("kty") not in ("EC", "RSA"):
        raise Problem("badPublicKey", "jwk must be an EC or RSA public key")
    if "d" in value:
        raise Problem("malformed", "jwk must not contain a private key")
    try:
        key = JWK.from_json(value)
    except (DeserializationError, ValueError, TypeError, KeyError):
        raise Problem("badPublicKey", "jwk does not parse") from None
    assert isinstance(key, JWK)
    return key


@dataclass(frozen=True, slots=True)
class FlattenedJWS:
    """A flattened JSON JWS (RFC 7515 section 7.2.2), split but not yet trusted."""

    protected_b64: str
    payload_b64: str
    signature: bytes
    header: dict[str, Any]

    @classmethod
    def parse(cls, document: Any, what: str = "request") -> FlattenedJWS:
        if not isinstance(document, dict):
            raise Problem("malformed", f"{what} is not a JSON object")
        if "signatures" in document:
            raise Problem("malformed", f"{what} must use the flattened JWS serialization")
        if "header" in document:
            raise Problem("malformed", f"{what} must not have an unprotected header")
        protected, payload = document.get("protected"), document.get("payload")
        if not isinstance(protected, str) or not isinstance(payload, str):
            raise Problem("malformed", f"{what} needs 'protected', 'payload' and 'signature'")
        header = _json_object(b64url_decode(protected, "protected header"), "protected header")
        signature = b64url_decode(document.get("signature"), "signature")
        b64url_decode(payload, "payload")
        return cls(protected, payload, signature, header)

    @property
    def payload(self) -> bytes:
        return b64url_decode(self.payload_b64, "payload")

    def payload_json(self) -> dict[str, Any]:
        return _json_object(self.payload, "payload")

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    def signing_inputs(self, protected_only: bool) -> tuple[bytes, ...]:
        """RFC 7515's input, and with ``protected_only`` (a CA profile's quirk, see
        ``CAProfile.empty_payload_signature``) the protected header alone when the
        payload is empty."""
        if protected_only and self.payload_b64 == "":
            return self.signing_input, self.protected_b64.encode("ascii")
        return (self.signing_input,)

    def algorithm(self, allowed: tuple[str, ...]) -> JWASignature:
        name = self.header.get("alg")
        if name not in allowed:
            raise Problem(
                "badSignatureAlgorithm",
                f"alg {name!r} is not supported",
                extra={"algorithms": list(allowed)},
            )
        return JWASignature.from_json(name)

    def verify(
        self,
        key: JWK,
        allowed: tuple[str, ...] = ACCOUNT_ALGORITHMS,
        *,
        refusal: str = "malformed",
        protected_only: bool = False,
    ) -> None:
        """Raise ``refusal`` unless the signature verifies with ``key`` over one of
        :meth:`signing_inputs`."""
        alg = self.algorithm(allowed)
        if not isinstance(key, alg.kty):
            raise Problem("malformed", "the key type does not match alg")
        if not any(
            _verifies(alg, key, data, self.signature)
            for data in self.signing_inputs(protected_only)
        ):
            raise Problem(refusal, "JWS signature does not verify")


def _verifies(alg: JWASignature, key: JWK, data: bytes, signature: bytes) -> bool:
    try:
        return bool(alg.verify(key.key, data, signature))
    except (ValueError, TypeError, JoseError):
        return False


def verify_eab(
    binding: Any,
    *,
    account_jwk: JWK,
    url: str,
    mac_key_for: Callable[[str], bytes | None],
) -> str:
    """Check an ``externalAccountBinding`` and return its kid.

    ``mac_key_for`` looks up the MAC key the CA issued for a kid (None if unknown); the
    caller decides whether that kid is still free to bind.
    """
    jws = FlattenedJWS.parse(binding, "externalAccountBinding")
    if "nonce" in jws.header:
        raise Problem("malformed", "externalAccountBinding must not carry a nonce")
    if jws.header.get("url") != url:
        raise Problem("unauthorized", "externalAccountBinding url does not match the request")
    kid = jws.header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Problem("malformed", "externalAccountBinding has no kid")
    if parse_jwk(jws.payload_json()) != account_jwk:
        raise Problem("unauthorized", "externalAccountBinding payload is not the account key")
    mac_key = mac_key_for(kid)
    if mac_key is None:
        raise Problem("unauthorized", f"unknown externalAccountBinding kid {kid!r}")
    jws.verify(JWKOct(key=mac_key), _MAC_ALGORITHMS, refusal="unauthorized")
    return kid
