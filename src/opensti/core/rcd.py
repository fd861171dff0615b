"""Rich Call Data (RFC 9795): the ``rcd``, ``rcdi`` and ``crn`` claims.

``rcd`` carries what the called party sees: ``nam`` (display name), ``icn`` (a logo
URL), ``jcd``/``jcl`` (a jCard, inline or by URL) and ``apn``. ``rcdi`` protects the
content those claims point to: each key is a JSON pointer (RFC 6901) into ``rcd``,
each value ``<alg>-<base64 digest>`` (RFC 9795 section 6.1), computed over the bytes
a URL resolves to, or over the JSON of an inline value [unconfirmed, see
docs/spec-div-rcd.md]. The claims ride in a SHAKEN PASSporT (ATIS-1000094) or in a
PASSporT of type ``rcd``.

Pure: the caller fetches the resources (under the x5u fetch rules) and hands in
their bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opensti.core.errors import InvalidIdentityHeader, InvalidInput, RCDIntegrityFailed
from opensti.core.passport import canonical_json

__all__ = [
    "MAX_NAME_LENGTH",
    "RCD_CLAIMS",
    "RichCallData",
    "build_rcd_claims",
    "check_rcdi",
    "json_pointer",
    "parse_rich_call_data",
    "rcdi_digest",
]

#: The claims RFC 9795 adds to a PASSporT.
RCD_CLAIMS = ("rcd", "rcdi", "crn")
#: Bounds on what we accept from the network (a CNAM is 15 characters; brands are longer).
MAX_NAME_LENGTH = 256
_MAX_URL_LENGTH = 2048
_MAX_POINTERS = 16
#: RFC 9795 section 6.1 names the hash by its W3C SRI token.
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
#: Members of ``rcd`` whose value is a URL to fetch rather than data to hash as JSON.
_URL_MEMBERS = frozenset({"/icn", "/jcl"})


@dataclass(frozen=True, slots=True)
class RichCallData:
    """The rcd claims of one PASSporT, checked for shape, not yet for integrity."""

    name: str | None
    icon: str | None
    rcd: Mapping[str, Any]
    rcdi: Mapping[str, str] = field(default_factory=dict)
    call_reason: str | None = None

    def urls_to_fetch(self) -> dict[str, str]:
        """Pointer -> URL of each resource an rcdi digest covers (to fetch before
        :func:`check_rcdi`); a URL with no digest is not fetched."""
        urls: dict[str, str] = {}
        for pointer in self.rcdi:
            if pointer in _URL_MEMBERS:
                value = json_pointer(self.rcd, pointer)
                if isinstance(value, str):
                    urls[pointer] = value
        return urls

    def to_dict(self) -> dict[str, Any]:
        return {"nam": self.name, "icn": self.icon, "crn": self.call_reason}


def rcdi_digest(content: bytes, algorithm: str = "sha256") -> str:
    """``<alg>-<base64>`` of ``content`` (standard base64 with padding, as SRI)."""
    return algorithm + "-" + base64.b64encode(_HASHES[algorithm](content).digest()).decode()


def _digest_bytes(value: str, pointer: str) -> tuple[str, bytes]:
    algorithm, sep, encoded = value.partition("-")
    if not sep or algorithm not in _HASHES:
        raise InvalidIdentityHeader(f"rcdi {pointer!r}: unsupported digest {value[:40]!r}")
    try:
        # Padding optional: some signers strip it, as base64url habits go.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidIdentityHeader(f"rcdi {pointer!r}: digest is not base64") from None
    if len(raw) != _HASHES[algorithm]().digest_size:
        raise InvalidIdentityHeader(f"rcdi {pointer!r}: digest has the wrong length")
    return algorithm, raw


def json_pointer(document: Any, pointer: str) -> Any:
    """Resolve an RFC 6901 pointer; raise ``KeyError`` if it points nowhere."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    current = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            if token != str(int(token)):  # RFC 6901: no leading zeros
                raise KeyError(pointer)
            current = current[int(token)]
        else:
            raise KeyError(pointer)
    return current


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidIdentityHeader(f"{what} must be a string of 1 to {limit} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidIdentityHeader(f"{what} contains control characters")
    return value


def parse_rich_call_data(payload: Mapping[str, Any]) -> RichCallData | None:
    """The rcd claims of a PASSporT payload, or None if it has none; raise
    :class:`InvalidIdentityHeader` on claims that are malformed."""
    if not any(name in payload for name in RCD_CLAIMS):
        return None
    rcd = payload.get("rcd")
    if not isinstance(rcd, dict):
        raise InvalidIdentityHeader("rcd must be a JSON object (RFC 9795 section 5)")
    name = _text(rcd["nam"], "rcd nam", MAX_NAME_LENGTH) if "nam" in rcd else None
    icon = _text(rcd["icn"], "rcd icn", _MAX_URL_LENGTH) if "icn" in rcd else None
    if "jcl" in rcd:
        _text(rcd["jcl"], "rcd jcl", _MAX_URL_LENGTH)
    rcdi = payload.get("rcdi", {})
    if not isinstance(rcdi, dict) or len(rcdi) > _MAX_POINTERS:
        raise InvalidIdentityHeader(f"rcdi must be an object of at most {_MAX_POINTERS} digests")
    for pointer, digest in rcdi.items():
        if not isinstance(digest, str):
            raise InvalidIdentityHeader(f"rcdi {pointer!r} must be a digest string")
        _digest_bytes(digest, pointer)
        try:
            json_pointer(rcd, pointer)
        except KeyError:
            raise InvalidIdentityHeader(f"rcdi key {pointer!r} points to no rcd member") from None
    crn = payload.get("crn")
    call_reason = _text(crn, "crn", MAX_NAME_LENGTH) if crn is not None else None
    return RichCallData(name, icon, dict(rcd), dict(rcdi), call_reason)


def _inline_bytes(value: Any) -> bytes:
    if isinstance(value, dict):
        return canonical_json(value)
    return canonical_json({"": value})[4:-1]  # the value alone, in canonical JSON


def check_rcdi(data: RichCallData, resources: Mapping[str, bytes]) -> None:
    """Check every rcdi digest; ``resources`` maps pointers (see
    :meth:`RichCallData.urls_to_fetch`) to the bytes fetched. Raise
    :class:`RCDIntegrityFailed` on a mismatch or a resource not fetched."""
    for pointer, digest in data.rcdi.items():
        algorithm, expected = _digest_bytes(digest, pointer)
        if pointer in _URL_MEMBERS:
            if pointer not in resources:
                raise RCDIntegrityFailed(f"rcdi {pointer}: the resource was not fetched")
            content = resources[pointer]
        else:
            content = _inline_bytes(json_pointer(data.rcd, pointer))
        actual = _HASHES[algorithm](content).digest()
        if not hmac.compare_digest(actual, expected):
            raise RCDIntegrityFailed(
                f"rcdi {pointer}: the content does not match its {algorithm} digest",
                value=pointer,
            )


def build_rcd_claims(
    *,
    name: str | None = None,
    icon: str | None = None,
    icon_content: bytes | None = None,
    icon_digest: str | None = None,
    call_reason: str | None = None,
) -> dict[str, Any]:
    """The rcd/rcdi/crn claims to add to a payload; ``icon_content`` (the fetched
    logo), or its :func:`rcdi_digest` computed earlier (``icon_digest``), adds the
    ``/icn`` integrity digest. Raise :class:`InvalidInput` if empty."""
    rcd: dict[str, Any] = {}
    if name is not None:
        rcd["nam"] = name
    if icon is not None:
        rcd["icn"] = icon
    if not rcd:
        raise InvalidInput("rcd needs a name or an icon")
    claims: dict[str, Any] = {"rcd": rcd}
    if icon_content is not None:
        icon_digest = rcdi_digest(icon_content)
    if icon_digest is not None:
        if icon is None:
            raise InvalidInput("icon content given without an icon URL")
        claims["rcdi"] = {"/icn": icon_digest}
    if call_reason is not None:
        claims["crn"] = call_reason
    try:
        parse_rich_call_data(claims)
    except InvalidIdentityHeader as exc:
        raise InvalidInput(str(exc)) from None
    return claims
