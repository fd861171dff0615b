"""The SIP Identity header (RFC 8224 section 4.1, with erratum 6499: base64url).

    Identity = signed-identity-digest SEMI ident-info *( SEMI ident-info-params )

Lenient where SIP is (whitespace around ``;`` and ``=``, parameter order, the case of
parameter names, a quoted ``ppt``, folded lines); strict where it is not (the digest
alphabet, ``info`` in angle brackets, duplicate parameters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from opensti.core.errors import InvalidIdentityHeader, InvalidInfo

__all__ = ["MAX_IDENTITY_LENGTH", "IdentityHeader", "format_identity", "parse_identity"]

#: Bound on one header value from the network (a SHAKEN Identity is ~700 bytes).
MAX_IDENTITY_LENGTH = 16384

_DIGEST = re.compile(r"[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"]+")
_FOLD = re.compile(r"\r?\n[ \t]+")
#: The form SHAKEN deployments (and format_identity) write: parsed in one match; any
#: other spelling goes through the scanner, which gives the same result for this one.
_COMMON = re.compile(
    r"([A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+);info=<([^<>\s]+)>"
    r"(?:;alg=([A-Za-z0-9.!%*_+`'~-]+))?(?:;ppt=([A-Za-z0-9.!%*_+`'~-]+))?"
)


@dataclass(frozen=True, slots=True)
class IdentityHeader:
    """One parsed Identity header value."""

    token: str
    info: str
    alg: str | None = None
    ppt: str | None = None
    extensions: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_compact(self) -> bool:
        return self.token.startswith("..")

    @property
    def signature_segment(self) -> str:
        return self.token.rsplit(".", 1)[1]

    def __str__(self) -> str:
        return format_identity(self.token, self.info, alg=self.alg, ppt=self.ppt)


def format_identity(
    token: str, info: str, *, alg: str | None = "ES256", ppt: str | None = "shaken"
) -> str:
    """Build the header value as SHAKEN deployments write it (``ppt`` unquoted)."""
    value = f"{token};info=<{info}>"
    if alg:
        value += f";alg={alg}"
    if ppt:
        value += f";ppt={ppt}"
    return value


class _Scanner:
    """A cursor over the header text; just enough for RFC 3261 generic-params."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.text, self.pos)
        if not match:
            raise InvalidIdentityHeader(f"Identity header: expected {what} at offset {self.pos}")
        self.pos = match.end()
        return match.group(0)

    def take_until(self, closing: str, what: str) -> str:
        end = self.text.find(closing, self.pos)
        if end < 0:
            raise InvalidIdentityHeader(f"Identity header: unterminated {what}")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def take_quoted(self) -> str:
        out: list[str] = []
        while not self.at_end():
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\" and not self.at_end():
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == '"':
                return "".join(out)
            else:
                out.append(ch)
        raise InvalidIdentityHeader("Identity header: unterminated quoted string")


def _param_value(scanner: _Scanner, name: str) -> str | None:
    scanner.skip_ws()
    if scanner.peek() != "=":
        return None
    scanner.pos += 1
    scanner.skip_ws()
    if scanner.peek() == "<":
        scanner.pos += 1
        return "<" + scanner.take_until(">", f"<...> in {name}") + ">"
    if scanner.peek() == '"':
        scanner.pos += 1
        return scanner.take_quoted()
    return scanner.take(_TOKEN, f"a value for {name}")


def parse_identity(value: str) -> IdentityHeader:
    """Parse one Identity header value; raise :class:`InvalidIdentityHeader` if malformed."""
    if len(value) > MAX_IDENTITY_LENGTH:
        raise InvalidIdentityHeader("Identity header is too long")
    common = _COMMON.fullmatch(value)
    if common is not None and _ABSOLUTE_URI.fullmatch(common.group(2)):
        token, info, alg, ppt = common.groups()
        return IdentityHeader(token=token, info=info, alg=alg, ppt=ppt)
    scanner = _Scanner(_FOLD.sub(" ", value).strip())
    token = scanner.take(_DIGEST, "the signed-identity-digest (header.payload.signature)")
    params: dict[str, str | None] = {}
    while True:
        scanner.skip_ws()
        if scanner.at_end():
            break
        if scanner.peek() != ";":
            raise InvalidIdentityHeader(f"Identity header: expected ';' at offset {scanner.pos}")
        scanner.pos += 1
        scanner.skip_ws()
        name = scanner.take(_TOKEN, "a parameter name").lower()
        if name in params:
            raise InvalidIdentityHeader(f"Identity header: parameter {name!r} appears twice")
        params[name] = _param_value(scanner, name)
    info = params.pop("info", None)
    if info is None:
        raise InvalidInfo("Identity header has no info parameter")
    if not (info.startswith("<") and info.endswith(">")):
        raise InvalidInfo("Identity info must be a URI in angle brackets")
    uri = info[1:-1].strip()
    if not _ABSOLUTE_URI.fullmatch(uri):
        raise InvalidInfo(f"Identity info is not an absolute URI: {uri[:80]!r}")
    return IdentityHeader(
        token=token,
        info=uri,
        alg=params.pop("alg", None),
        ppt=params.pop("ppt", None),
        extensions=params,
    )
