"""JWK thumbprints (RFC 7638) and the SPC token fingerprint text (RFC 9448 5.4)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwk import JWK

from opensti.acme import fingerprint_text, jwk_thumbprint, key_fingerprint, thumbprint_b64

VECTORS = Path(__file__).parent.parent / "vectors" / "acme"
FINGERPRINT = re.compile(r"SHA256 [0-9A-F]{2}(?::[0-9A-F]{2}){31}")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rfc7638_key() -> JWK:
    return JWK.json_loads((VECTORS / "rfc7638-example-jwk.json").read_text())


def test_rfc7638_example_thumbprint() -> None:
    expected = (VECTORS / "rfc7638-example-thumbprint.b64url").read_text().strip()
    assert thumbprint_b64(_rfc7638_key().key) == expected


def test_rfc7638_example_fingerprint_text() -> None:
    digest = _b64url_decode((VECTORS / "rfc7638-example-thumbprint.b64url").read_text().strip())
    text = key_fingerprint(_rfc7638_key().key)
    assert FINGERPRINT.fullmatch(text)
    assert text == "SHA256 " + ":".join(f"{b:02X}" for b in digest)
    assert text.startswith("SHA256 37:36:CB:B1:78:7C:B8:30:9C:77:EE:8C:37:05:C5:E1")


def test_ec_thumbprint_is_sha256_of_the_rfc7638_member_form() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()

    def coordinate(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    canonical = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": coordinate(numbers.x), "y": coordinate(numbers.y)},
        separators=(",", ":"),
        sort_keys=True,
    )
    assert jwk_thumbprint(key) == hashlib.sha256(canonical.encode()).digest()
    assert jwk_thumbprint(key.public_key()) == jwk_thumbprint(key)


def test_spki_fingerprint_hashes_the_der_public_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = key_fingerprint(key, "spki_sha256")
    assert FINGERPRINT.fullmatch(text)
    assert bytes.fromhex(text.removeprefix("SHA256 ").replace(":", "")) == (
        hashlib.sha256(spki).digest()
    )
    assert text != key_fingerprint(key, "jwk_thumbprint")


@pytest.mark.parametrize(
    ("digest", "text"),
    [
        (bytes(range(32)), "SHA256 " + ":".join(f"{i:02X}" for i in range(32))),
        (b"\xab\x0f" * 16, "SHA256 " + ":".join(["AB", "0F"] * 16)),
    ],
)
def test_fingerprint_text_form(digest: bytes, text: str) -> None:
    assert fingerprint_text(digest) == text
