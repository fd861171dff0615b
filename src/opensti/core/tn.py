"""Telephone number canonicalization (RFC 8224 section 8.3).

The STI-AS builds ``orig``/``dest`` with this and the STI-VS rebuilds them from the
signalling the same way, so both sides must agree to the character.
"""

from __future__ import annotations

import re

from opensti.core.errors import InvalidTN

__all__ = ["MAX_TN_DIGITS", "MAX_TN_INPUT", "canonicalize_tn", "is_e164"]

#: E.164 numbers have at most 15 digits; RFC 8226 TelephoneNumber is SIZE (1..15).
MAX_TN_DIGITS = 15

# RFC 8224 section 8.3 step 1 drops "+", dashes, parentheses, dots and spaces.
# Anything else that is not a digit, "#" or "*" makes the input something other
# than a telephone number, which we report rather than silently drop.
_VISUAL_SEPARATORS = str.maketrans("", "", "+-.() \t")
_TN_CHARS = re.compile(r"[0-9#*]+")
_URI_SCHEME = re.compile(r"^(tel|sips?):", re.IGNORECASE)
_GLOBAL_CONTEXT = re.compile(r";phone-context=(\+[0-9().-]+)(?:;|$)", re.IGNORECASE)
#: Longer input is refused before it is looked at.
MAX_TN_INPUT = 512


def _user_part(value: str) -> tuple[str, str | None]:
    """Strip a URI (tel/sip/sips, optionally in angle brackets) down to its number,
    and return the global-number prefix of a ``;phone-context`` (RFC 3966 section 5.1.5)."""
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    match = _URI_SCHEME.match(text)
    if match:
        text = text[match.end() :]
        if match.group(1).lower() != "tel":
            text = text.split("@", 1)[0]
            text = text.split(":", 1)[0]  # user:password
    # Parameters glued to the number (;npdi, ;rn=, ;phone-context=, ;isub=, ;ext=).
    number, _, params = text.partition(";")
    context = _GLOBAL_CONTEXT.search(";" + params) if params else None
    return number, context.group(1) if context else None


def canonicalize_tn(value: str, *, nanp: bool = True) -> str:
    """Return the canonical TN (digits, ``#``, ``*``) of a number or tel/sip URI.

    ``nanp`` is the local policy of RFC 8224 section 8.3 step 2 for numbers dialled
    without a country code: a ten-digit NANP number gets the country code ``1`` and
    the NANP international prefix ``011`` is removed.

    Raises :class:`InvalidTN` for anything that is not a telephone number.
    """
    if len(value) > MAX_TN_INPUT:
        raise InvalidTN("telephone number is too long", value=value[:40] + "...")
    if value.isdigit() and value.isascii():
        # Already digits (the canonical form, as the SIP layer passes it on): nothing
        # to strip, only the local policy and the length remain.
        return _checked_length(_apply_nanp_policy(value) if nanp else value, value)
    user, context = _user_part(value)
    global_form = user.lstrip().startswith("+")
    if context and not global_form:
        # A local number whose context is a global number prefix (e.g. ``+1``) is
        # that prefix followed by the number: its E.164 form, no local policy needed.
        user, global_form = context + user, True
    digits = user.translate(_VISUAL_SEPARATORS)
    if not digits:
        raise InvalidTN(f"not a telephone number: {value!r}", value=value)
    if not _TN_CHARS.fullmatch(digits):
        raise InvalidTN(f"not a telephone number (unexpected characters): {value!r}", value=value)
    if nanp and not global_form:
        digits = _apply_nanp_policy(digits)
    return _checked_length(digits, value)


def _checked_length(digits: str, value: str) -> str:
    if len(digits) > MAX_TN_DIGITS:
        raise InvalidTN(
            f"telephone number has more than {MAX_TN_DIGITS} digits: {value!r}", value=value
        )
    return digits


def _apply_nanp_policy(digits: str) -> str:
    if digits.startswith("011") and len(digits) > 3 + 7:
        return digits[3:]
    if len(digits) == 10 and digits.isdigit() and digits[0] not in "01":
        return "1" + digits
    return digits


def is_e164(tn: str) -> bool:
    """True for a canonical TN that can be a global E.164 number (1-15 digits, no 0 lead)."""
    return tn.isdigit() and 1 <= len(tn) <= MAX_TN_DIGITS and not tn.startswith("0")
