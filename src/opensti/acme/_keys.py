"""Account keys and the fingerprint that binds an SPC token to one ACME account.

RFC 9448 section 5.4 builds the token's ``fingerprint`` from the RFC 7638 JWK
thumbprint of the account key; one public STI-PA client hashes the DER SPKI instead.
Both are written ``SHA256 AA:BB:...``; which one a CA recomputes is a profile setting.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwk import JWK, JWKEC, JWKRSA

from opensti.acme.profiles import FingerprintAlgorithm
from opensti.core.passport import b64url_encode

__all__ = [
    "fingerprint_text",
    "jwk_of",
    "jwk_thumbprint",
    "key_fingerprint",
    "thumbprint_b64",
]

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def jwk_of(key: PrivateKey | PublicKey) -> JWK:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return JWKEC(key=key)
    return JWKRSA(key=key)


def _public(key: PrivateKey | PublicKey) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key.public_key()
    return key


def jwk_thumbprint(key: PrivateKey | PublicKey) -> bytes:
    """RFC 7638 SHA-256 thumbprint of the public part of ``key``."""
    digest: bytes = jwk_of(_public(key)).thumbprint()
    return digest


def fingerprint_text(digest: bytes) -> str:
    """``SHA256 `` then the digest as upper-case hex pairs joined by ``:``."""
    return "SHA256 " + ":".join(f"{byte:02X}" for byte in digest)


def key_fingerprint(
    key: PrivateKey | PublicKey, algorithm: FingerprintAlgorithm = "jwk_thumbprint"
) -> str:
    """The SPC token ``fingerprint`` of an account key, by the CA's algorithm."""
    if algorithm == "spki_sha256":
        spki = _public(key).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return fingerprint_text(hashlib.sha256(spki).digest())
    return fingerprint_text(jwk_thumbprint(key))


def thumbprint_b64(key: PrivateKey | PublicKey) -> str:
    """The thumbprint as RFC 7638 section 3.1 shows it (base64url), for display."""
    return b64url_encode(jwk_thumbprint(key))
