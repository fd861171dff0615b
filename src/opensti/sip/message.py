"""SIP messages (RFC 3261 section 7): bounded parsing, stream framing, responses.

Parsing has two stages so that the server can tell garbage from a bad request:

- :func:`frame_message` finds the start line, the header fields and the body. What it
  rejects is not SIP at all and is dropped (UDP) or ends the connection (TCP).
- :meth:`SIPMessage.validate` checks what a redirect server relies on (Content-Length,
  the mandatory header fields, CSeq, From/To syntax). A request that fails here is
  still SIP and gets a 400 when :func:`can_answer` says a response can be routed.

:func:`parse_message` runs both. Every failure is a :class:`SIPParseError`; sizes are
bounded before anything is decoded.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, overload

from opensti.core.errors import SIPParseError
from opensti.sip.address import TCHARS, NameAddr, parse_name_addr, split_list

__all__ = [
    "COMPACT_FORMS",
    "MAX_HEADERS",
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "PlainACK",
    "SIPMessage",
    "SIPRequest",
    "SIPResponse",
    "StreamFramer",
    "build_response",
    "can_answer",
    "canonical_name",
    "frame_message",
    "parse_message",
    "plain_ack",
]

#: Bound on one message (UDP datagram or TCP frame); SIP over UDP rarely exceeds 1500.
MAX_MESSAGE_SIZE = 65536
#: Bound on header fields (after unfolding) in one message.
MAX_HEADERS = 200

#: RFC 3261 section 7.3.3 and later RFCs (RFC 8224 gives Identity the letter "y").
COMPACT_FORMS = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

#: Header fields whose grammar is a comma-separated list (RFC 3261 section 7.3.1), plus
#: Identity, which several deployments send comma-joined although RFC 8224 repeats it.
_LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "p-asserted-identity",
        "identity",
        "reason",
    }
)

_SPECIAL_NAMES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "mime-version": "MIME-Version",
    "www-authenticate": "WWW-Authenticate",
}

REASON_PHRASES = {
    100: "Trying",
    200: "OK",
    302: "Moved Temporarily",
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    428: "Use Identity Header",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
    481: "Call/Transaction Does Not Exist",
    487: "Request Terminated",
    500: "Server Internal Error",
    503: "Service Unavailable",
}

_REQUEST_LINE = re.compile(rf"({TCHARS}) ([^\s]+) (SIP/2\.0)", re.IGNORECASE)
_STATUS_LINE = re.compile(r"(SIP/2\.0) ([1-6][0-9][0-9])(?: ([^\r\n]*))?", re.IGNORECASE)
_TOKEN = re.compile(TCHARS)
#: Control characters but LF, which separates the lines (see _decode_head).
_CONTROL_BYTES = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F])
_CONTENT_LENGTH = re.compile(r"[0-9]{1,8}")
_CSEQ = re.compile(rf"([0-9]{{1,10}})[ \t]+({TCHARS})")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"]+")
_MAX_CSEQ = 2**31 - 1
_ANSWER_NEEDS = ("via", "from", "to", "call-id", "cseq")
#: What a plain ACK (see plain_ack) is made of.
#: The start line of a plain ACK, its Request-URI an absolute URI (as _URI).
_ACK_LINE = re.compile(rb"ACK ([A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"]+) SIP/2\.0")
_ACK_CSEQ = re.compile(rb"([0-9]{1,10}) ACK")
_ACK_HEADERS = frozenset(
    (b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Max-Forwards", b"Content-Length")
)
#: Printable ASCII, tab and the line breaks: deleting them leaves nothing of a plain head.
_PLAIN_BYTES = bytes([9, 10, 13, *range(0x20, 0x7F)])
_VIA_HOST = re.compile(r"[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*\S+[ \t]+(\[[^\]]*\]|[^:\s]+)")
_TAG = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)
#: Random bytes per To-tag (RFC 3261 section 19.3 asks for at least 32 bits) and tags
#: drawn from one read of the system's random source.
_TAG_BYTES = 6
_TAGS_PER_READ = 256
#: To-tags ready for the next final responses; emptied in a forked child, which must
#: not hand out its parent's tags.
_tags: collections.deque[str] = collections.deque()
os.register_at_fork(after_in_child=_tags.clear)


_T = TypeVar("_T")


class _memo(Generic[_T]):
    """``functools.cached_property`` without its lock (Python 3.11 takes one per first
    access, about a microsecond): a message is only ever used by one thread."""

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _memo[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...
    def __get__(self, instance: object, owner: type | None = None) -> _T | _memo[_T]:
        if instance is None:
            return self
        value = self._compute(instance)
        instance.__dict__[self._name] = value  # shadows this descriptor from now on
        return value


def canonical_name(name: str) -> str:
    """How a (lower-case, full-form) header name is written on the wire."""
    special = _SPECIAL_NAMES.get(name)
    if special:
        return special
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


class SIPMessage:
    """Header fields keyed by lower-case full name, in order, plus the body."""

    def __init__(self, headers: dict[str, list[str]], body: bytes = b"") -> None:
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The first field value of ``name`` (full or compact form), or None."""
        values = self.headers.get(_full_name(name))
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name``: repeated fields, and list headers split at commas."""
        full = _full_name(name)
        values = self.headers.get(full, [])
        if full in _LIST_HEADERS:
            return [item for value in values for item in split_list(value)]
        return list(values)

    def single(self, name: str) -> str:
        values = self.headers.get(_full_name(name), [])
        if len(values) != 1:
            problem = "missing" if not values else "repeated"
            raise SIPParseError(f"{canonical_name(_full_name(name))} header is {problem}")
        return values[0]

    @_memo
    def content_length(self) -> int | None:
        """Content-Length, parsed defensively: digits only, bounded, consistent."""
        values = {value.strip() for value in self.headers.get("content-length", [])}
        if not values:
            return None
        if len(values) > 1:
            raise SIPParseError("conflicting Content-Length headers")
        text = values.pop()
        if not _CONTENT_LENGTH.fullmatch(text):
            raise SIPParseError("Content-Length is not a small decimal number", value=text[:20])
        length = int(text)
        if length > MAX_MESSAGE_SIZE:
            raise SIPParseError("Content-Length exceeds the message size limit", value=length)
        return length

    @_memo
    def call_id(self) -> str:
        return self.single("call-id").strip()

    @_memo
    def cseq(self) -> tuple[int, str]:
        text = self.single("cseq").strip()
        match = _CSEQ.fullmatch(text)
        if match is None or int(match.group(1)) > _MAX_CSEQ:
            raise SIPParseError("malformed CSeq", value=text[:40])
        return int(match.group(1)), match.group(2)

    @_memo
    def from_addr(self) -> NameAddr:
        return parse_name_addr(self.single("from"), "From")

    @_memo
    def to_addr(self) -> NameAddr:
        return parse_name_addr(self.single("to"), "To")

    def validate(self, *, addresses: bool = True) -> None:
        """Check what responding relies on; raise :class:`SIPParseError` if it is unusable.

        ``addresses=False`` leaves From and To unparsed, for a caller that knows them
        already (an ACK that repeats the ones of the response it acknowledges).
        """
        length = self.content_length
        if length is not None:
            if length > len(self.body):
                raise SIPParseError("body is shorter than Content-Length", value=length)
            # RFC 3261 section 18.3: bytes beyond Content-Length are discarded.
            self.body = self.body[:length]
        if not self.headers.get("via"):
            raise SIPParseError("Via header is missing")
        self.call_id  # noqa: B018 - each property validates its header on first access.
        self.cseq  # noqa: B018
        if addresses:
            self.from_addr  # noqa: B018
            self.to_addr  # noqa: B018


class SIPRequest(SIPMessage):
    def __init__(
        self, method: str, uri: str, headers: dict[str, list[str]], body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def validate(self, *, addresses: bool = True) -> None:
        if not _URI.fullmatch(self.uri):
            raise SIPParseError("Request-URI is not an absolute URI", value=self.uri[:80])
        super().validate(addresses=addresses)
        if self.cseq[1] != self.method:
            raise SIPParseError("CSeq method does not match the request method")

    def __repr__(self) -> str:
        return f"<SIPRequest {self.method} {self.uri}>"


class SIPResponse(SIPMessage):
    def __init__(
        self, status: int, reason: str, headers: dict[str, list[str]], body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"<SIPResponse {self.status} {self.reason}>"


def _full_name(name: str) -> str:
    full = _NAMES.get(name)
    if full is None:
        lower = name.lower()
        full = COMPACT_FORMS.get(lower, lower)
        if len(_NAMES) < _MAX_NAMES:
            _NAMES[name] = full
    return full


def _head_end(data: bytes | bytearray) -> tuple[int, int] | None:
    """Where the blank line after the head starts and ends: the first match of
    ``\\r?\\n\\r?\\n``, found with two ``find`` calls (a regex search tried every
    offset of the head: some 4 us per INVITE)."""
    crlf, lf = data.find(b"\n\r\n"), data.find(b"\n\n")
    if lf < 0 and crlf < 0:
        return None
    newline = lf if crlf < 0 or 0 <= lf < crlf else crlf
    start = newline - 1 if newline and data[newline - 1] == 13 else newline  # 13: CR
    return start, newline + (2 if newline == lf else 3)


def _split_datagram(data: bytes) -> tuple[bytes, bytes]:
    end = _head_end(data)
    if end is None:
        # A datagram is the whole message; tolerate a missing final blank line.
        return data.rstrip(b"\r\n"), b""
    return data[: end[0]], data[end[1] :]


def _decode_head(head: bytes) -> list[str]:
    # Lines end in LF or CRLF: one CR before each LF (and at the very end) goes with the
    # line break, any other CR is a control character. One pass over the whole head
    # instead of a check per line, on the bytes (a control character is one byte in
    # UTF-8, never part of another character).
    if head.endswith(b"\r"):
        head = head[:-1]
    head = head.replace(b"\r\n", b"\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SIPParseError("message head is not UTF-8") from None
    if len(head.translate(None, _CONTROL_BYTES)) != len(head):
        raise SIPParseError("control character in the message head")
    return text.split("\n")


#: Header names -> full lower-case name, for the names peers write before the colon
#: (_WRITTEN) and callers ask for (_NAMES). Bounded, so odd names cannot grow them.
_WRITTEN: dict[str, str] = {}
_NAMES: dict[str, str] = {}
_MAX_NAMES = 512


def _header_name(written: str, line: str) -> str:
    """The full name of a header line's ``written`` name, or SIPParseError."""
    name = written.rstrip(" \t")
    if not _TOKEN.fullmatch(name):
        raise SIPParseError("malformed header line", value=line[:80])
    full = _full_name(name)
    if len(_WRITTEN) < _MAX_NAMES:
        _WRITTEN[written] = full
    return full


def _parse_headers(lines: Iterable[str]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    names = _WRITTEN
    #: The values of the last field: a continuation line extends its last one.
    last: list[str] | None = None
    count = 0
    for line in lines:
        written, colon, value = line.partition(":")
        # A name seen before is a token: never a continuation line, which starts with
        # whitespace. Anything else is looked at closely.
        name = names.get(written) if colon else None
        if name is None:
            if line[:1] in (" ", "\t"):
                # Folding (RFC 3261 section 7.3.1): the line continues the previous value.
                if last is None:
                    raise SIPParseError("continuation line before any header")
                last[-1] = (last[-1] + " " + line.strip(" \t")).strip(" ")
                continue
            if not colon:
                raise SIPParseError("malformed header line", value=line[:80])
            name = _header_name(written, line)
        if count >= MAX_HEADERS:
            raise SIPParseError(f"more than {MAX_HEADERS} header fields")
        count += 1
        last = headers.setdefault(name, [])
        last.append(value.strip(" \t"))
    return headers


def _parse_head(head: bytes, body: bytes) -> SIPRequest | SIPResponse:
    lines = _decode_head(head)
    start = lines[0]
    headers = _parse_headers(lines[1:])
    request = _REQUEST_LINE.fullmatch(start)
    if request:
        return SIPRequest(request.group(1), request.group(2), headers, body)
    status = _STATUS_LINE.fullmatch(start)
    if status:
        return SIPResponse(int(status.group(2)), status.group(3) or "", headers, body)
    raise SIPParseError("not a SIP request or status line", value=start[:80])


def frame_message(data: bytes) -> SIPRequest | SIPResponse:
    """Split one datagram into start line, header fields and body (no semantic checks)."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise SIPParseError(f"message exceeds {MAX_MESSAGE_SIZE} bytes", value=len(data))
    # RFC 3261 section 7.5: CRLFs before the start line are ignored (keep-alives).
    data = data.lstrip(b"\r\n")
    if not data:
        raise SIPParseError("empty message")
    head, body = _split_datagram(data)
    return _parse_head(head, body)


def parse_message(data: bytes) -> SIPRequest | SIPResponse:
    """Any bytes -> a validated message, or :class:`SIPParseError`."""
    message = frame_message(data)
    message.validate()
    return message


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length, with a bounded buffer.

    A message without Content-Length is taken to have no body (RFC 3261 makes the header
    mandatory on streams, but every body-less request we answer is then unambiguous).
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._pending: tuple[SIPRequest | SIPResponse, int] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[SIPRequest | SIPResponse]:
        """Add bytes; return every message now complete. Raises :class:`SIPParseError`
        when the stream cannot be framed any more (the connection must be closed)."""
        self._buffer += data
        messages: list[SIPRequest | SIPResponse] = []
        while True:
            message = self._next()
            if message is None:
                break
            messages.append(message)
        if len(self._buffer) > self._max_size:
            raise SIPParseError("stream buffer limit exceeded", value=len(self._buffer))
        return messages

    def _next(self) -> SIPRequest | SIPResponse | None:
        if self._pending is None:
            stripped = len(self._buffer) - len(self._buffer.lstrip(b"\r\n"))
            del self._buffer[:stripped]
            end = _head_end(self._buffer)
            if end is None:
                return None
            message = _parse_head(bytes(self._buffer[: end[0]]), b"")
            total = end[1] + (message.content_length or 0)
            if total > self._max_size:
                raise SIPParseError("message exceeds the size limit", value=total)
            self._pending = (message, end[1])
        message, body_start = self._pending
        total = body_start + (message.content_length or 0)
        if len(self._buffer) < total:
            return None
        message.body = bytes(self._buffer[body_start:total])
        del self._buffer[:total]
        self._pending = None
        return message


class PlainACK(NamedTuple):
    """An ACK as :func:`plain_ack` reads it."""

    uri: str
    #: The top (only) Via value, the Call-ID and the CSeq number.
    via: str
    call_id: str
    number: int
    #: The From and To lines, as sent (``From: ...``).
    from_line: bytes
    to_line: bytes


def plain_ack(data: bytes) -> PlainACK | None:
    """An ACK written the plain way, read without framing it; None for any other datagram.

    Plain: ASCII, one ``Name: value`` line per header, no other than Via (one value),
    From, To, Call-ID, CSeq (``N ACK``), Max-Forwards and Content-Length (``0``), each
    once, and nothing after the blank line: how SBCs and SIPp acknowledge a 3xx. Such
    an ACK passes :func:`parse_message` whenever its From and To do, and the caller
    checks those against the response they repeat; any other ACK takes the general path.
    """
    head, blank, rest = data.partition(b"\r\n\r\n")
    if not blank or rest or len(data) > MAX_MESSAGE_SIZE:
        return None
    start, *lines = head.split(b"\r\n")
    breaks = len(lines)
    if head.translate(None, _PLAIN_BYTES) or head.count(b"\r") != breaks:
        return None  # not ASCII, a control character, or a CR or LF alone
    if head.count(b"\n") != breaks:
        return None
    request = _ACK_LINE.fullmatch(start)
    if request is None:
        return None
    fields: dict[bytes, bytes] = {}
    for line in lines:
        name, colon, value = line.partition(b": ")
        if not colon or name not in _ACK_HEADERS or name in fields:
            return None
        if not value or value != value.strip(b" \t"):
            return None
        fields[name] = value
    uri = request.group(1).decode()
    cseq = _ACK_CSEQ.fullmatch(fields.get(b"CSeq", b""))
    via, call_id = fields.get(b"Via"), fields.get(b"Call-ID")
    if (
        cseq is None
        or int(cseq.group(1)) > _MAX_CSEQ
        or via is None
        or b"," in via
        or call_id is None
        or b"From" not in fields
        or b"To" not in fields
        or fields.get(b"Content-Length", b"0") != b"0"
    ):
        return None
    return PlainACK(
        uri,
        via.decode(),
        call_id.decode(),
        int(cseq.group(1)),
        b"From: " + fields[b"From"],
        b"To: " + fields[b"To"],
    )


def can_answer(message: SIPMessage) -> bool:
    """True when a response can be built and routed (RFC 3261 section 8.2.6)."""
    return isinstance(message, SIPRequest) and all(message.headers.get(n) for n in _ANSWER_NEEDS)


def _stamp_via(via: str, peer: tuple[str, int] | None) -> str:
    """Add ``received`` and fill ``rport`` on the top Via (RFC 3261 18.2.1, RFC 3581)."""
    if peer is None:
        return via
    host, port = peer
    sent_by, semicolon, rest = via.partition(";")
    match = _VIA_HOST.match(sent_by)
    received = match is None or match.group(1).strip("[]") != host
    rport = "rport" in rest.lower()  # only then can a parameter be a bare rport
    if not received and not rport:
        return via  # the usual request: sent from where its Via says, no rport
    params = rest.split(";") if semicolon else []
    changed = False
    if received and not any(p.split("=", 1)[0].strip().lower() == "received" for p in params):
        params.append(f"received={host}")
        changed = True
    if rport:
        params = [f"rport={port}" if p.strip().lower() == "rport" else p for p in params]
        changed = True
    return ";".join([sent_by, *params]) if changed else via


def build_response(
    request: SIPRequest,
    status: int,
    reason: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    *,
    to_tag: str | None = None,
    from_value: str | None = None,
    peer: tuple[str, int] | None = None,
    server: str = "opensti",
) -> bytes:
    """A response to ``request`` (RFC 3261 section 8.2.6): Via, From, To, Call-ID and
    CSeq copied, a To-tag added to a final response, then ``headers``, Server and
    ``Content-Length: 0``. ``peer`` stamps the top Via with where the request came from;
    ``from_value`` replaces the From value (the verify mode puts verstat there).
    """
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "")
    fields = request.headers
    values = fields.get("via")
    if values is not None and len(values) == 1 and "," not in values[0]:
        vias = [_stamp_via(values[0], peer)]  # the usual request: one Via value
    else:
        vias = [item for value in values or () for item in split_list(value)]
        if vias:
            vias[0] = _stamp_via(vias[0], peer)
    to = _first(fields, "to") or ""
    if status != 100 and not _TAG.search(to):
        to = f"{to};tag={to_tag or _new_tag()}"
    via_lines = "".join([f"Via: {via}\r\n" for via in vias])
    extra = "".join([f"{name}: {value}\r\n" for name, value in headers])
    return (
        f"SIP/2.0 {status} {phrase}\r\n{via_lines}"
        f"From: {from_value or _first(fields, 'from')}\r\nTo: {to}\r\n"
        f"Call-ID: {_first(fields, 'call-id')}\r\nCSeq: {_first(fields, 'cseq')}\r\n"
        f"{extra}Server: {server}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _new_tag() -> str:
    """A fresh To-tag: 48 random bits as hex. They are read a few hundred at a time: a
    system call per tag cost more than building the rest of the response."""
    try:
        return _tags.popleft()  # atomic, so threads never share a tag
    except IndexError:
        width = 2 * _TAG_BYTES
        pool = os.urandom(_TAG_BYTES * _TAGS_PER_READ).hex()
        _tags.extend(pool[start : start + width] for start in range(width, len(pool), width))
        return pool[:width]


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None
