"""SIP addresses: name-addr / addr-spec (RFC 3261 section 20.10) and the URI edits the
redirect server makes (the calling TN, and ``verstat`` per ATIS-1000074 / TS 24.229).

Only what the redirect server needs is modelled: a URI stays a string, and the
display name is kept as received so that a rewritten header differs from the original
only where we changed it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from opensti.core.errors import InvalidTN, SIPParseError
from opensti.core.tn import MAX_TN_DIGITS, MAX_TN_INPUT, canonicalize_tn

__all__ = [
    "NameAddr",
    "parse_name_addr",
    "split_list",
    "uri_tn",
    "with_verstat",
]

#: RFC 3261 token characters (one or more).
TCHARS = r"[A-Za-z0-9.!%*_+`'~-]+"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_DISPLAY_TOKENS = re.compile(rf"{TCHARS}(?:[ \t]+{TCHARS})*")
_PARAM = re.compile(
    rf"[ \t]*({TCHARS})[ \t]*(?:=[ \t]*({TCHARS}|\[[0-9A-Fa-f:.]+\]|\"(?:[^\"\\]|\\.)*\"))?[ \t]*"
)
_QUOTED = re.compile(r'"(?:[^"\\\r\n]|\\[^\r\n])*"')
_URI_CHARS = re.compile(r"[^\s<>\"]+")
_VERSTAT = "verstat"
#: ``<URI>;name=value;name``, no whitespace, no display name: how SBCs write From, To
#: and P-Asserted-Identity. Parsed in one match; any other form takes the full path.
_PLAIN_NAME_ADDR = re.compile(
    rf"<([A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"]*)>((?:;{TCHARS}(?:={TCHARS})?)*)"
)
#: ``sip:+DIGITS@``, ``sips:`` alike, or ``tel:+DIGITS`` then ``;`` or the end: a global
#: number with nothing to strip, how SBCs write it. Its digits are the TN; any other
#: form goes through :func:`~opensti.core.tn.canonicalize_tn` (a property test checks
#: the two agree).
_GLOBAL_TN_URI = re.compile(
    rf"(?:sips?:\+([0-9]{{1,{MAX_TN_DIGITS}}})@|tel:\+([0-9]{{1,{MAX_TN_DIGITS}}})(?:;|\Z))",
    re.IGNORECASE,
)


class NameAddr(NamedTuple):
    """One From/To/P-Asserted-Identity/Contact value (a tuple: several are built per
    call, and a frozen dataclass took twice as long to make)."""

    uri: str
    #: The display name exactly as received (quoted string or tokens), or None.
    display_name: str | None = None
    params: tuple[tuple[str, str | None], ...] = ()

    def param(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.params if k.lower() == wanted), None)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    @property
    def scheme(self) -> str:
        return self.uri.split(":", 1)[0].lower()

    def with_uri(self, uri: str) -> NameAddr:
        return self._replace(uri=uri)

    def __str__(self) -> str:
        text = f"<{self.uri}>"
        if self.display_name:
            text = f"{self.display_name} {text}"
        for name, value in self.params:
            text += f";{name}" if value is None else f";{name}={value}"
        return text


def _parse_params(text: str, what: str) -> tuple[tuple[str, str | None], ...]:
    params: list[tuple[str, str | None]] = []
    pos = 0
    while pos < len(text):
        if text[pos] != ";":
            raise SIPParseError(f"{what}: expected ';' before parameters", value=text[:80])
        match = _PARAM.match(text, pos + 1)
        if match is None or match.end() == pos + 1:
            raise SIPParseError(f"{what}: malformed parameter", value=text[:80])
        params.append((match.group(1), match.group(2)))
        pos = match.end()
    return tuple(params)


def _plain_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """``;a=b;c`` already matched by _PLAIN_NAME_ADDR (tokens only, no whitespace)."""
    params: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        name, equals, param = item.partition("=")
        params.append((name, param if equals else None))
    return tuple(params)


def _check_uri(uri: str, what: str) -> str:
    if not _SCHEME.match(uri) or not _URI_CHARS.fullmatch(uri):
        raise SIPParseError(f"{what}: not a URI", value=uri[:80])
    return uri


def parse_name_addr(value: str, what: str = "address") -> NameAddr:
    """Parse ``[display-name] <URI> *(;param)`` or ``addr-spec *(;param)``.

    Raises :class:`SIPParseError` when the value does not follow RFC 3261 section 20.10.
    """
    plain = _PLAIN_NAME_ADDR.fullmatch(value)
    if plain is not None:
        uri, rest = plain.groups()
        return NameAddr(uri=uri, params=_plain_params(rest) if rest else ())
    text = value.strip(" \t")
    display: str | None = None
    if text.startswith('"'):
        match = _QUOTED.match(text)
        if match is None:
            raise SIPParseError(f"{what}: unterminated display name", value=text[:80])
        display = match.group(0)
        text = text[match.end() :].lstrip(" \t")
        if not text.startswith("<"):
            raise SIPParseError(f"{what}: a display name must precede <URI>", value=text[:80])
    elif "<" in text:
        head, _, _ = text.partition("<")
        head = head.strip(" \t")
        if head:
            if not _DISPLAY_TOKENS.fullmatch(head):
                raise SIPParseError(f"{what}: malformed display name", value=head[:80])
            display = head
        text = text[text.index("<") :]
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            raise SIPParseError(f"{what}: missing '>'", value=text[:80])
        uri, rest = text[1:end].strip(" \t"), text[end + 1 :].strip(" \t")
    else:
        # addr-spec: RFC 3261 says parameters after it belong to the header, not the URI.
        uri, sep, rest = text.partition(";")
        rest = sep + rest
    return NameAddr(
        uri=_check_uri(uri, what), display_name=display, params=_parse_params(rest, what)
    )


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes or ``<...>``."""
    if "," not in value:
        # The common case (one Via, one Identity of ~500 characters) skips the
        # character loop, which cost more per verified call than the ECDSA verify.
        single = value.strip(" \t")
        return [single] if single else []
    parts: list[str] = []
    start = 0
    quoted = bracketed = False
    escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "<":
            bracketed = True
        elif char == ">":
            bracketed = False
        elif char == "," and not bracketed:
            parts.append(value[start:index])
            start = index + 1
    parts.append(value[start:])
    return [part.strip(" \t") for part in parts if part.strip(" \t")]


def uri_tn(uri: str, *, nanp: bool = True) -> str | None:
    """The canonical TN in a tel/sip/sips URI's user part, or None if it holds none."""
    plain = _GLOBAL_TN_URI.match(uri)
    if plain is not None and len(uri) <= MAX_TN_INPUT:
        return plain.group(1) or plain.group(2)
    return _canonical_tn(uri, nanp)


def _canonical_tn(uri: str, nanp: bool) -> str | None:
    if uri.split(":", 1)[0].lower() not in ("tel", "sip", "sips"):
        return None
    try:
        return canonicalize_tn(uri, nanp=nanp)
    except InvalidTN:
        return None


def _without_verstat(params: list[str]) -> list[str]:
    return [p for p in params if p.split("=", 1)[0].strip().lower() != _VERSTAT]


def _set_verstat(segment: str, verstat: str) -> str:
    """``number;p1;p2`` -> ``number;p1;p2;verstat=X`` with any earlier verstat removed."""
    number, *params = segment.split(";")
    return ";".join([number, *_without_verstat(params), f"{_VERSTAT}={verstat}"])


def _strip_verstat(segment: str) -> str:
    head, *params = segment.split(";")
    return ";".join([head, *_without_verstat(params)])


def with_verstat(uri: str, verstat: str) -> str:
    """Put ``verstat`` where TS 24.229 and ATIS-1000074 want it, replacing any received.

    A tel URI gets it as a parameter; a sip/sips URI gets it in the user part (it is a
    telephone-subscriber parameter, so it sits before the ``@``), and a ``verstat``
    misplaced among the URI parameters after the host is removed. A URI without a user
    part, or of another scheme, is returned unchanged.
    """
    scheme, sep, rest = uri.partition(":")
    kind = scheme.lower()
    if not sep:
        return uri
    if kind == "tel":
        return f"{scheme}:{_set_verstat(rest, verstat)}"
    if kind not in ("sip", "sips") or "@" not in rest:
        return uri
    userinfo, _, hostpart = rest.partition("@")
    user, colon, password = userinfo.partition(":")
    hostport, question, headers = hostpart.partition("?")
    return (
        f"{scheme}:{_set_verstat(user, verstat)}{colon}{password}"
        f"@{_strip_verstat(hostport)}{question}{headers}"
    )
