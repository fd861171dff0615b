"""Limits every front door applies to the same inputs (STIR API, REST API, CLI, SIP),
so that no door accepts what another refuses. Pure: ``now`` is a parameter.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from opensti.core.errors import InvalidInput
from opensti.core.rcd import MAX_NAME_LENGTH

__all__ = [
    "MAX_IAT_SKEW",
    "MAX_ORIGID",
    "MAX_TIME",
    "check_icon_url",
    "check_origid",
    "check_rcd_name",
    "check_signing_iat",
    "check_time",
    "check_x5u",
]

#: How far from the signer's clock a requested ``iat`` may be, in seconds. A verifier
#: refuses a PASSporT older than 60 s anyway; this only stops absurd values
#: (10^30) and tokens dated far into the future.
MAX_IAT_SKEW = 3600
#: Characters of ``origid`` (a UUID has 36).
MAX_ORIGID = 256
#: Latest epoch second accepted as a time (year 9999), so arithmetic never overflows.
MAX_TIME = 253_402_300_799
#: What may not appear in an x5u: it goes between ``<`` and ``>`` in the Identity
#: header, where these would end the URI or add parameters.
_X5U_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"'\\;,{}|^`\[\]]")
_MAX_X5U = 2048


def _whole_seconds(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be a whole number of seconds, not {value!r}", value=value)
    if not 0 <= value <= MAX_TIME:
        raise InvalidInput(f"{what} must be between 0 and {MAX_TIME}, not {value}", value=value)
    return value


def check_time(value: object, what: str = "time") -> int:
    """A non-negative epoch second (a verification's ``time``)."""
    return _whole_seconds(value, what)


def check_signing_iat(iat: object, now: int) -> int:
    """An ``iat`` to sign with: within :data:`MAX_IAT_SKEW` seconds of ``now``."""
    value = _whole_seconds(iat, "iat")
    if abs(value - now) > MAX_IAT_SKEW:
        raise InvalidInput(
            f"iat must be within {MAX_IAT_SKEW} s of the signer's clock ({now}), not {value}",
            value=value,
        )
    return value


def check_origid(origid: str | None) -> str | None:
    if origid is not None and len(origid) > MAX_ORIGID:
        raise InvalidInput(f"origid has at most {MAX_ORIGID} characters")
    return origid


def check_x5u(url: str, *, allow_http: bool = False, what: str = "x5u") -> str:
    """An https URL (http only when allowed) that cannot break the Identity header."""
    if len(url) > _MAX_X5U or _X5U_FORBIDDEN.search(url):
        raise InvalidInput(
            f"the {what} URL may not contain spaces, control characters or any of "
            "<>\"';,\\{}|^`[]",
            value=url,
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise InvalidInput(f"not a URL: {url!r}", value=url) from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise InvalidInput(f"the {what} must be an {' or '.join(schemes)} URL with a host: {url!r}")
    return url


def check_icon_url(url: str) -> str:
    """A logo URL to sign as ``rcd.icn`` (RFC 9795): https only, whatever the x5u
    policy, since a verifier fetches it from the open network."""
    return check_x5u(url.strip(), what="rcd icon")


def check_rcd_name(name: str) -> str:
    """A display name to sign as ``rcd.nam``: 1 to :data:`MAX_NAME_LENGTH` characters,
    no control characters (what the verifier's parser accepts)."""
    value = name.strip()
    if not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the rcd name must have 1 to {MAX_NAME_LENGTH} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise InvalidInput("the rcd name may not contain control characters", value=value)
    return value
