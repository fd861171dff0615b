"""TNAuthList (RFC 8226 section 9): the X.509 extension and the ACME identifier value.

The ASN.1 module is ``DEFINITIONS EXPLICIT TAGS``, so an SPC is ``A0 len 16 len ...``.
DER goes through pyasn1 with the module written out below; only the base64 forms of
the ACME identifier (RFC 9448 section 3 vs. the padded form deployed CAs use) are ours.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, constraint, namedtype, tag, univ

from opensti.core.errors import InvalidTNAuthList

__all__ = [
    "SPC",
    "TNAUTHLIST_OID",
    "TNAuthList",
    "TNEntry",
    "TelephoneNumber",
    "TelephoneNumberRange",
]

#: id-pe-TNAuthList, RFC 8226 section 9.
TNAUTHLIST_OID = "1.3.6.1.5.5.7.1.26"

_TN_PATTERN = re.compile(r"[0-9#*]{1,15}")
_MAX_DER = 64 * 1024


class _TelephoneNumber(char.IA5String):
    subtypeSpec = char.IA5String.subtypeSpec + constraint.ValueSizeConstraint(1, 15)


class _TelephoneNumberRange(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("start", _TelephoneNumber()),
        namedtype.NamedType(
            "count",
            univ.Integer().subtype(subtypeSpec=constraint.ValueRangeConstraint(2, 2**63)),
        ),
    )


def _explicit(number: int) -> tag.TagSet:
    return tag.TagSet().tagExplicitly(
        tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number)
    )


class _TNEntry(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("spc", char.IA5String().subtype(explicitTag=_explicit(0)[0])),
        namedtype.NamedType("range", _TelephoneNumberRange().subtype(explicitTag=_explicit(1)[0])),
        namedtype.NamedType("one", _TelephoneNumber().subtype(explicitTag=_explicit(2)[0])),
    )


class _TNAuthorizationList(univ.SequenceOf):
    componentType = _TNEntry()
    subtypeSpec = univ.SequenceOf.subtypeSpec + constraint.ValueSizeConstraint(1, 10_000)


@dataclass(frozen=True, slots=True)
class SPC:
    """A Service Provider Code (in the US, the OCN)."""

    code: str

    def __post_init__(self) -> None:
        if not self.code or not self.code.isascii() or not self.code.isprintable():
            raise InvalidTNAuthList(f"SPC must be printable ASCII: {self.code!r}", value=self.code)


@dataclass(frozen=True, slots=True)
class TelephoneNumber:
    tn: str

    def __post_init__(self) -> None:
        if not _TN_PATTERN.fullmatch(self.tn):
            raise InvalidTNAuthList(
                f"not a TNAuthList telephone number: {self.tn!r}", value=self.tn
            )


@dataclass(frozen=True, slots=True)
class TelephoneNumberRange:
    start: str
    count: int

    def __post_init__(self) -> None:
        if not _TN_PATTERN.fullmatch(self.start) or not self.start.isdigit():
            raise InvalidTNAuthList(f"not a range start: {self.start!r}", value=self.start)
        # RFC 8226: the count must not make the number longer than the start.
        if self.count < 2 or int(self.start) + self.count > 10 ** len(self.start):
            raise InvalidTNAuthList(
                f"range {self.start}+{self.count} is empty or overflows its length",
                value=self.count,
            )

    def __contains__(self, tn: object) -> bool:
        return (
            isinstance(tn, str)
            and tn.isdigit()
            and len(tn) == len(self.start)
            and int(self.start) <= int(tn) < int(self.start) + self.count
        )


TNEntry = SPC | TelephoneNumberRange | TelephoneNumber


@dataclass(frozen=True, slots=True)
class TNAuthList:
    """An ordered, non-empty list of SPCs, TN ranges and single TNs."""

    entries: tuple[TNEntry, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise InvalidTNAuthList("a TNAuthList has at least one entry")

    @classmethod
    def for_spc(cls, code: str) -> TNAuthList:
        return cls((SPC(code),))

    @property
    def spcs(self) -> tuple[str, ...]:
        return tuple(entry.code for entry in self.entries if isinstance(entry, SPC))

    @property
    def single_spc(self) -> str | None:
        """The SPC when this list is exactly one SPC, as a SHAKEN end-entity cert must be."""
        if len(self.entries) == 1 and isinstance(self.entries[0], SPC):
            return self.entries[0].code
        return None

    def to_der(self) -> bytes:
        value = _TNAuthorizationList()
        for index, entry in enumerate(self.entries):
            choice = _TNEntry()
            if isinstance(entry, SPC):
                choice["spc"] = entry.code
            elif isinstance(entry, TelephoneNumber):
                choice["one"] = entry.tn
            else:
                choice["range"]["start"] = entry.start
                choice["range"]["count"] = entry.count
            value[index] = choice
        return bytes(der_encoder.encode(value))

    @classmethod
    def from_der(cls, data: bytes) -> TNAuthList:
        if len(data) > _MAX_DER:
            raise InvalidTNAuthList("TNAuthList is too large")
        try:
            decoded, rest = der_decoder.decode(data, asn1Spec=_TNAuthorizationList())
        except (PyAsn1Error, ValueError, TypeError) as exc:
            raise InvalidTNAuthList(f"TNAuthList is not valid DER: {exc}") from None
        if rest:
            raise InvalidTNAuthList("trailing bytes after the TNAuthList")
        entries: list[TNEntry] = []
        try:
            for item in decoded:
                name = item.getName()
                component = item.getComponent()
                if name == "spc":
                    entries.append(SPC(_ia5(component)))
                elif name == "one":
                    entries.append(TelephoneNumber(_ia5(component)))
                else:
                    entries.append(
                        TelephoneNumberRange(_ia5(component["start"]), int(component["count"]))
                    )
        except (PyAsn1Error, UnicodeDecodeError) as exc:
            raise InvalidTNAuthList(f"TNAuthList entry does not parse: {exc}") from None
        return cls(tuple(entries))

    def to_acme_value(self, *, padded: bool = False) -> str:
        """The ACME identifier value: base64url without padding (RFC 9448), or the
        padded standard base64 that ATIS examples, iconectiv and several CAs use."""
        der = self.to_der()
        if padded:
            return base64.b64encode(der).decode("ascii")
        return base64.urlsafe_b64encode(der).rstrip(b"=").decode("ascii")

    @classmethod
    def from_acme_value(cls, value: str) -> TNAuthList:
        """Parse either base64 form; the alphabet tells them apart where it matters."""
        text = value.strip()
        if not text or len(text) > _MAX_DER or not re.fullmatch(r"[A-Za-z0-9+/_=-]+", text):
            raise InvalidTNAuthList(f"not a base64 TNAuthList value: {value[:40]!r}", value=value)
        unpadded = text.rstrip("=")
        normalized = unpadded.replace("-", "+").replace("_", "/")
        try:
            der = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidTNAuthList(f"not a base64 TNAuthList value: {value[:40]!r}") from None
        return cls.from_der(der)


def _ia5(component: Any) -> str:
    return bytes(component).decode("ascii")
