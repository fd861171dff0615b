"""JWT Claim Constraints in STIR certificates (RFC 8226 section 8, RFC 9118).

A certificate may limit what the PASSporTs it signs can say: ``mustInclude`` names
claims every PASSporT must carry, ``permittedValues`` lists the only values a claim
may take, and (RFC 9118 only) ``mustExclude`` names claims it must not carry. Rich
Call Data (RFC 9795 section 9) uses them so that a certificate delegated to one
brand can only sign that brand's name and logo.

Both ASN.1 modules are ``EXPLICIT TAGS``; DER goes through pyasn1 with the types
written out below (the types match pyasn1-alt-modules' rfc8226/rfc9118, which is not
a dependency of ours).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, constraint, namedtype, tag, univ

from opensti.core.errors import ClaimNotPermitted, InvalidCertificate
from opensti.core.passport import canonical_json

__all__ = [
    "ENHANCED_JWT_CLAIM_CONSTRAINTS_OID",
    "JWT_CLAIM_CONSTRAINTS_OID",
    "ClaimConstraints",
    "certificate_claim_constraints",
    "check_claim_constraints",
    "decode_claim_constraints",
    "encode_claim_constraints",
]

#: id-pe-JWTClaimConstraints (RFC 8226 section 8) and id-pe-eJWTClaimConstraints (RFC 9118).
JWT_CLAIM_CONSTRAINTS_OID = "1.3.6.1.5.5.7.1.27"
ENHANCED_JWT_CLAIM_CONSTRAINTS_OID = "1.3.6.1.5.5.7.1.33"

_MAX_DER = 64 * 1024
_MAX = 10_000


def _explicit(number: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number)


class _ClaimNames(univ.SequenceOf):
    componentType = char.IA5String()
    subtypeSpec = univ.SequenceOf.subtypeSpec + constraint.ValueSizeConstraint(1, _MAX)


class _UTF8Strings(univ.SequenceOf):
    componentType = char.UTF8String()
    subtypeSpec = univ.SequenceOf.subtypeSpec + constraint.ValueSizeConstraint(1, _MAX)


def _values_type(second: str) -> type[univ.Sequence]:
    """``JWTClaimPermittedValues`` (RFC 8226) and ``JWTClaimValues`` (RFC 9118) differ
    only in the name of their second field."""

    class _Values(univ.Sequence):
        componentType = namedtype.NamedTypes(
            namedtype.NamedType("claim", char.IA5String()),
            namedtype.NamedType(second, _UTF8Strings()),
        )

    return _Values


def _constraints_type(enhanced: bool) -> univ.Sequence:
    values = _values_type("values" if enhanced else "permitted")

    class _ValuesList(univ.SequenceOf):
        componentType = values()
        subtypeSpec = univ.SequenceOf.subtypeSpec + constraint.ValueSizeConstraint(1, _MAX)

    fields = [
        namedtype.OptionalNamedType("mustInclude", _ClaimNames().subtype(explicitTag=_explicit(0))),
        namedtype.OptionalNamedType(
            "permittedValues", _ValuesList().subtype(explicitTag=_explicit(1))
        ),
    ]
    if enhanced:
        fields.append(
            namedtype.OptionalNamedType(
                "mustExclude", _ClaimNames().subtype(explicitTag=_explicit(2))
            )
        )

    class _Constraints(univ.Sequence):
        componentType = namedtype.NamedTypes(*fields)

    return _Constraints()


_RFC8226 = _constraints_type(enhanced=False)
_RFC9118 = _constraints_type(enhanced=True)


@dataclass(frozen=True, slots=True)
class ClaimConstraints:
    """The constraints of one certificate, merged from either extension."""

    must_include: tuple[str, ...] = ()
    permitted_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    must_exclude: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.must_include or self.permitted_values or self.must_exclude)


def decode_claim_constraints(der: bytes, *, enhanced: bool = False) -> ClaimConstraints:
    """Parse the extension value (RFC 8226, or RFC 9118 when ``enhanced``) or raise."""
    what = "EnhancedJWTClaimConstraints" if enhanced else "JWTClaimConstraints"
    if len(der) > _MAX_DER:
        raise InvalidCertificate(f"{what} is larger than 64 KiB")
    spec = _RFC9118 if enhanced else _RFC8226
    try:
        value, rest = der_decoder.decode(der, asn1Spec=spec)
    except (PyAsn1Error, ValueError, TypeError) as exc:
        raise InvalidCertificate(f"{what} is not valid DER: {exc}") from None
    if rest:
        raise InvalidCertificate(f"{what} has trailing bytes after the DER value")
    second = "values" if enhanced else "permitted"
    must_include = _names(value, "mustInclude")
    must_exclude = _names(value, "mustExclude") if enhanced else ()
    permitted: dict[str, tuple[str, ...]] = {}
    if value["permittedValues"].isValue:
        for entry in value["permittedValues"]:
            claim = str(entry["claim"])
            permitted[claim] = permitted.get(claim, ()) + tuple(str(v) for v in entry[second])
    result = ClaimConstraints(must_include, permitted, must_exclude)
    if result.empty:
        raise InvalidCertificate(f"{what} has none of its fields (at least one is required)")
    return result


def _names(value: Any, name: str) -> tuple[str, ...]:
    component = value[name]
    return tuple(str(n) for n in component) if component.isValue else ()


def encode_claim_constraints(constraints: ClaimConstraints, *, enhanced: bool = False) -> bytes:
    """DER for the extension value; for tests, the sandbox and delegate certificates."""
    if constraints.must_exclude and not enhanced:
        raise InvalidCertificate("mustExclude needs the RFC 9118 (enhanced) extension")
    spec = (_RFC9118 if enhanced else _RFC8226).clone()
    second = "values" if enhanced else "permitted"
    if constraints.must_include:
        spec["mustInclude"].extend(constraints.must_include)
    if constraints.permitted_values:
        values = spec["permittedValues"]
        for claim, permitted in constraints.permitted_values.items():
            entry = values.componentType.clone()
            entry["claim"] = claim
            entry[second].extend(permitted)
            values.append(entry)
    if enhanced and constraints.must_exclude:
        spec["mustExclude"].extend(constraints.must_exclude)
    return bytes(der_encoder.encode(spec))


def certificate_claim_constraints(certificate: x509.Certificate) -> ClaimConstraints | None:
    """The constraints a certificate carries (both extensions merged), or None."""
    found: list[ClaimConstraints] = []
    for oid, enhanced in (
        (JWT_CLAIM_CONSTRAINTS_OID, False),
        (ENHANCED_JWT_CLAIM_CONSTRAINTS_OID, True),
    ):
        try:
            ext = certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
        except x509.ExtensionNotFound:
            continue
        value = ext.value
        if isinstance(value, x509.UnrecognizedExtension):
            found.append(decode_claim_constraints(value.value, enhanced=enhanced))
    if not found:
        return None
    permitted: dict[str, tuple[str, ...]] = {}
    for item in found:
        for claim, values in item.permitted_values.items():
            # Two extensions restricting one claim: a value must pass both.
            permitted[claim] = (
                tuple(v for v in permitted[claim] if _same_value(v, values))
                if claim in permitted
                else values
            )
    return ClaimConstraints(
        tuple(dict.fromkeys(n for c in found for n in c.must_include)),
        permitted,
        tuple(dict.fromkeys(n for c in found for n in c.must_exclude)),
    )


def _same_value(value: str, permitted: Sequence[str]) -> bool:
    return any(_as_json(value) == _as_json(p) for p in permitted)


def _as_json(text: str) -> bytes:
    """A permitted value as comparable bytes: JSON objects and arrays compare by their
    canonical form (RFC 8225 section 9), anything else as the string itself."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except ValueError:
            return text.encode()
        if isinstance(value, dict):
            return canonical_json(value)
        return canonical_json({"": value})
    return text.encode()


def _claim_text(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return canonical_json(value)
    return canonical_json({"": value})


def check_claim_constraints(payload: Mapping[str, Any], constraints: ClaimConstraints) -> None:
    """Raise :class:`ClaimNotPermitted` unless ``payload`` obeys ``constraints``.

    A string claim must equal a permitted value; an object or array claim must equal
    one (compared in canonical JSON), which is how RFC 9795 section 9 constrains
    ``rcd`` [unconfirmed: see docs/spec-div-rcd.md].
    """
    for name in constraints.must_include:
        if name not in payload:
            raise ClaimNotPermitted(
                f"the certificate requires claim {name!r}, which is missing", value=name
            )
    for name in constraints.must_exclude:
        if name in payload:
            raise ClaimNotPermitted(
                f"the certificate forbids claim {name!r}, which is present", value=name
            )
    for name, permitted in constraints.permitted_values.items():
        if name not in payload:
            continue
        actual = _claim_text(payload[name])
        if not any(actual == _as_json(p) for p in permitted):
            raise ClaimNotPermitted(
                f"claim {name!r} has a value the certificate does not permit", value=name
            )
