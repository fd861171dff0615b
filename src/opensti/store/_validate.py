"""Input limits, checked before anything is written so a refusal changes nothing.

SPC form: by default the US OCN form, four characters ``[0-9A-Z]``, after upper-casing
(``281k`` is stored as ``281K``). Other governance authorities may assign other codes:
a deployment sets ``spc_pattern`` (a regular expression matched in full, after
upper-casing); :data:`BROAD_SPC_PATTERN` (one to eight letters or digits) is a
ready-made looser choice. STI-PA limits are those ClearIP documents for the iconectiv
API: user id under 256 characters, password under 190, any printable characters.
"""

from __future__ import annotations

import re

from opensti.core.errors import InvalidInput
from opensti.store._secrets import Secret, decode_base64url

__all__ = [
    "BROAD_SPC_PATTERN",
    "MAX_STIPA_PASSWORD",
    "MAX_STIPA_USER_ID",
    "OCN_PATTERN",
    "check_attest",
    "check_eab_hmac_key",
    "check_email",
    "check_name",
    "check_spc",
    "check_stipa_password",
    "check_stipa_user_id",
    "check_url",
]

OCN_PATTERN = r"[0-9A-Z]{4}"
BROAD_SPC_PATTERN = r"[0-9A-Z]{1,8}"
MAX_STIPA_USER_ID = 255
MAX_STIPA_PASSWORD = 189
MAX_NAME = 64
MAX_URL = 2048

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Deliberately simple: one @, no spaces, a dot in the domain. The CA checks the rest.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s]+")
_URL = re.compile(r"https?://[^/\s?#]+[^\s]*")


def check_name(value: str, what: str) -> str:
    if not 1 <= len(value) <= MAX_NAME or not _NAME.fullmatch(value):
        raise InvalidInput(
            f"{what} name {value!r} is not valid: use 1 to {MAX_NAME} letters, digits, "
            "'.', '_' or '-', starting with a letter or digit",
            value=value,
        )
    return value


def check_spc(value: str, pattern: str | None = None) -> str:
    """The SPC upper-cased, or :class:`InvalidInput` naming the expected form."""
    spc = value.strip().upper()
    if not re.fullmatch(pattern or OCN_PATTERN, spc):
        form = "an OCN: 4 letters or digits, e.g. 281K" if pattern is None else pattern
        raise InvalidInput(f"SPC {value!r} is not valid: expected {form}", value=value)
    return spc


def check_email(value: str) -> str:
    email = value.strip()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise InvalidInput(f"{value!r} is not an email address", value=value)
    return email


def check_url(value: str, what: str) -> str:
    if len(value) > MAX_URL or not _URL.fullmatch(value):
        raise InvalidInput(f"{what} {value!r} is not an http(s) URL", value=value)
    return value


def _check_printable(value: str, what: str, limit: int) -> None:
    if not value:
        raise InvalidInput(f"{what} is empty")
    if len(value) > limit:
        raise InvalidInput(f"{what} has {len(value)} characters: at most {limit} are allowed")
    if not value.isprintable():
        raise InvalidInput(f"{what} contains a control character (only printable ones allowed)")


def check_stipa_user_id(value: str) -> str:
    _check_printable(value, "STI-PA user id", MAX_STIPA_USER_ID)
    return value


def check_stipa_password(value: Secret) -> Secret:
    """Checked without ever putting the password into a message."""
    try:
        text = value.reveal_text()
    except UnicodeDecodeError:
        raise InvalidInput("STI-PA password is not UTF-8 text") from None
    _check_printable(text, "STI-PA password", MAX_STIPA_PASSWORD)
    return value


def check_eab_hmac_key(value: Secret) -> Secret:
    """An EAB MAC key as CAs hand it out: base64url (RFC 8555 7.3.4), padding optional."""
    text = value.reveal().strip().decode("ascii", "replace")
    try:
        if not decode_base64url(text):
            raise ValueError("empty")
    except ValueError:
        raise InvalidInput(
            "the EAB HMAC key is not base64url text (RFC 8555 section 7.3.4)"
        ) from None
    return Secret(text.encode("ascii"))


def check_attest(value: str | None) -> str | None:
    if value is not None and value not in ("A", "B", "C"):
        raise InvalidInput(f"attestation {value!r} is not A, B or C", value=value)
    return value
