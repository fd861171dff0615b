"""Helpers for the core tests: vector files, a fixed clock, credential resolvers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from opensti.core.certs import (
    CertificateChain,
    TrustContext,
    ValidatedCertificate,
    validate_shaken_certificate,
)
from opensti.core.passport import b64url_encode, canonical_json
from opensti.sandbox.pki import IssuedCertificate

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

#: The fixed instant every core test runs at (the core never reads the clock).
NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
NOW_EPOCH = int(NOW.timestamp())

Resolver = Callable[[str], ValidatedCertificate]


def vector_text(name: str) -> str:
    """A vector file's text without its trailing newline."""
    return (VECTORS / name).read_text(encoding="utf-8").rstrip("\n")


def vector_json(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def chain_resolver(
    chain: CertificateChain, trust: TrustContext, now: dt.datetime = NOW
) -> Resolver:
    """What an STI-VS does with a fetched x5u: validate the chain it got."""

    def resolve(url: str) -> ValidatedCertificate:
        return validate_shaken_certificate(chain, trust, now)

    return resolve


def reissue(
    cert: x509.Certificate,
    issuer: IssuedCertificate,
    *,
    drop: tuple[type[x509.ExtensionType] | x509.ObjectIdentifier, ...] = (),
    add: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    public_key: CertificatePublicKeyTypes | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A copy of ``cert`` with extensions dropped or replaced, re-signed by ``issuer``.

    This makes certificates that break exactly one rule of the SHAKEN profile.
    """
    assert issuer.key is not None
    replaced = {ext.oid for ext, _ in add}
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key or cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or cert.not_valid_before_utc)
        .not_valid_after(not_after or cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        dropped = any(
            ext.oid == kind if isinstance(kind, x509.ObjectIdentifier) else ext.oid == kind.oid
            for kind in drop
        )
        if not dropped and ext.oid not in replaced:
            builder = builder.add_extension(ext.value, ext.critical)
    for value, critical in add:
        builder = builder.add_extension(value, critical)
    return builder.sign(issuer.key, hashes.SHA256())


def sign_jws(key: ec.EllipticCurvePrivateKey, header: Any, payload: Any) -> str:
    """A full-form token over any header and payload, with a valid ES256 signature.

    PassportSigner only writes well-formed SHAKEN headers; tests need broken ones too.
    """
    signing_input = ".".join(b64url_encode(canonical_json(part)) for part in (header, payload))
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
