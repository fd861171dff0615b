"""Certificates strict parsers refuse for one known, harmless deviation.

RFC 5758 section 3.2 says the ``ecdsa-with-SHA256``/``-SHA384`` AlgorithmIdentifier has
no parameters; Java tooling writes an explicit NULL there, and production STI-CA
certificates on the STI-PA trust list are encoded that way (T-Mobile's SHAKEN root and
sub-CA). OpenSSL and Go (secsipidx) accept them; ``cryptography`` >= 45 refuses to
parse them at all. This module reads such a certificate with pyasn1, drops the NULL so
``cryptography`` can load the rest (key, names, validity, extensions), and keeps the
original TBS bytes and signature: the issuer's signature is checked over those, never
over the re-encoded TBS.

Only that deviation is tolerated: the certificate must be DER that pyasn1 re-encodes
to exactly its original bytes, and, with the NULL dropped, ``cryptography`` must load
it. The ASN.1 below is the part of RFC 5280 needed for that; the rest stays opaque
(``Any``) so it round-trips byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import SignatureAlgorithmOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ

__all__ = ["SignedTBS", "certificate_shaped", "relax_certificate", "subject_of_der"]

_NULL = b"\x05\x00"
_ECDSA = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256.dotted_string,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384.dotted_string,
    }
)
_SHORT_NAMES = {"2.5.4.3": "CN", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C"}


@dataclass(frozen=True, slots=True)
class SignedTBS:
    """What the issuer signed, as it came: the original TBS bytes and the signature."""

    tbs: bytes
    signature: bytes
    #: The whole certificate as it came (its SHA-256 is the fingerprint people know).
    der: bytes


class _AlgorithmIdentifier(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("algorithm", univ.ObjectIdentifier()),
        namedtype.OptionalNamedType("parameters", univ.Any()),
    )


def _context(number: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatSimple, number)


class _TBSCertificate(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("version", univ.Integer().subtype(explicitTag=_context(0))),
        namedtype.NamedType("serialNumber", univ.Integer()),
        namedtype.NamedType("signature", _AlgorithmIdentifier()),
        namedtype.NamedType("issuer", univ.Any()),
        namedtype.NamedType("validity", univ.Any()),
        namedtype.NamedType("subject", univ.Any()),
        namedtype.NamedType("subjectPublicKeyInfo", univ.Any()),
        namedtype.OptionalNamedType(
            "issuerUniqueID", univ.BitString().subtype(implicitTag=_context(1))
        ),
        namedtype.OptionalNamedType(
            "subjectUniqueID", univ.BitString().subtype(implicitTag=_context(2))
        ),
        namedtype.OptionalNamedType(
            "extensions",
            univ.SequenceOf(componentType=univ.Any()).subtype(explicitTag=_context(3)),
        ),
    )


class _Certificate(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("tbsCertificate", _TBSCertificate()),
        namedtype.NamedType("signatureAlgorithm", _AlgorithmIdentifier()),
        namedtype.NamedType("signature", univ.BitString()),
    )


class _AttributeTypeAndValue(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("type", univ.ObjectIdentifier()),
        namedtype.NamedType("value", univ.Any()),
    )


class _RelativeDistinguishedName(univ.SetOf):  # type: ignore[misc]
    componentType = _AttributeTypeAndValue()


class _Name(univ.SequenceOf):  # type: ignore[misc]
    componentType = _RelativeDistinguishedName()


def _decode(der: bytes, *, whole: bool = True) -> _Certificate | None:
    try:
        cert, rest = decoder.decode(der, asn1Spec=_Certificate())
    except (PyAsn1Error, ValueError, TypeError):
        return None
    return None if rest and whole else cert


def _parameters(algorithm: _AlgorithmIdentifier) -> bytes | None:
    value = algorithm["parameters"]
    return bytes(value.asOctets()) if value.isValue else None


def _null_ecdsa_pair(inner: _AlgorithmIdentifier, outer: _AlgorithmIdentifier) -> bool:
    """Both identifiers name the same ECDSA algorithm; at least one adds a NULL."""
    oid = str(inner["algorithm"])
    if oid not in _ECDSA or str(outer["algorithm"]) != oid:
        return False
    params = (_parameters(inner), _parameters(outer))
    return all(p in (None, _NULL) for p in params) and _NULL in params


def _without_parameters(algorithm: _AlgorithmIdentifier) -> _AlgorithmIdentifier:
    clean = _AlgorithmIdentifier()
    clean["algorithm"] = algorithm["algorithm"]
    return clean


def relax_certificate(der: bytes) -> tuple[x509.Certificate, SignedTBS] | None:
    """The certificate without the NULL parameter and what was signed; None if ``der``
    has any other problem (it is then refused like any unreadable certificate)."""
    cert = _decode(der)
    if cert is None:
        return None
    try:
        if encoder.encode(cert) != der:
            return None  # not DER, or something this reader does not model
        tbs = cert["tbsCertificate"]
        if not _null_ecdsa_pair(tbs["signature"], cert["signatureAlgorithm"]):
            return None
        signed = SignedTBS(encoder.encode(tbs), cert["signature"].asOctets(), der)
        tbs["signature"] = _without_parameters(tbs["signature"])
        cert["signatureAlgorithm"] = _without_parameters(cert["signatureAlgorithm"])
        relaxed = x509.load_der_x509_certificate(encoder.encode(cert))
    except (PyAsn1Error, ValueError, TypeError):
        return None
    return relaxed, signed


def certificate_shaped(der: bytes) -> bool:
    """Does ``der`` have a certificate's outline? Only such bytes are named by their
    SHA-256 when skipped: a key file given by mistake is not fingerprinted in logs."""
    return _decode(der, whole=False) is not None


def subject_of_der(der: bytes) -> str | None:
    """The subject of a certificate cryptography cannot load, as far as it reads."""
    cert = _decode(der, whole=False)
    if cert is None:
        return None
    try:
        name, _ = decoder.decode(cert["tbsCertificate"]["subject"].asOctets(), asn1Spec=_Name())
        parts = [_attribute_text(atv) for rdn in reversed(list(name)) for atv in rdn]
    except (PyAsn1Error, ValueError, TypeError):
        return None
    return ",".join(parts) or None


def _attribute_text(atv: _AttributeTypeAndValue) -> str:
    oid = str(atv["type"])
    value, _ = decoder.decode(atv["value"].asOctets())
    return f"{_SHORT_NAMES.get(oid, oid)}={value}"
