"""SPC tokens signed here with sandbox PKI keys, as an STI-PA would sign them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from opensti.core.errors import UpstreamError
from opensti.core.passport import b64url_encode
from opensti.sandbox.pki import IssuedCertificate

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
X5U = "https://sti-pa.example.net/download/v1/certificate/certificateId_1.crt"
FINGERPRINT = "SHA256 " + ":".join(["5A"] * 32)


def sign_jwt(
    header: dict[str, Any], claims: dict[str, Any], key: ec.EllipticCurvePrivateKey
) -> str:
    """A compact ES256 JWS (raw r||s signature, RFC 7518 3.4)."""
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@dataclass
class TokenFactory:
    """Issues SPC tokens as the STI-PA would, with any field overridden."""

    stipa: IssuedCertificate
    x5u: str = X5U

    def claims(self, tkvalue: str = "MAigBhYEMTIzNA==", **atc: Any) -> dict[str, Any]:
        return {
            "exp": int((NOW + dt.timedelta(hours=1)).timestamp()),
            "jti": "519175cb-6998-4074-9aea-0da5175a1622",
            "atc": {
                "tktype": "TNAuthList",
                "tkvalue": tkvalue,
                "ca": False,
                "fingerprint": FINGERPRINT,
                **atc,
            },
        }

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        **header: Any,
    ) -> str:
        signer = key or self.stipa.key
        assert signer is not None
        head = {"alg": "ES256", "typ": "JWT", "x5u": self.x5u, **header}
        return sign_jwt(head, self.claims() if claims is None else claims, signer)


def serving(documents: dict[str, bytes]) -> Callable[[str], bytes]:
    """The x5u fetch seam, answering from ``documents`` like a repository would."""

    def fetch(url: str) -> bytes:
        if url not in documents:
            raise UpstreamError(f"fetching {url} failed: HTTP 404")
        return documents[url]

    return fetch
