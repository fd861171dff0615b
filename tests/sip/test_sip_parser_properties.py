"""Property tests: whatever arrives on the socket, the parser answers cleanly."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip_support import request

from opensti.core.errors import OpenSTIError, SIPParseError
from opensti.core.identity import parse_identity
from opensti.core.passport import b64url_encode, decode_passport
from opensti.sip import SIPServer, SIPServices, parse_listeners
from opensti.sip.address import _canonical_tn, parse_name_addr, uri_tn
from opensti.sip.message import (
    SIPRequest,
    StreamFramer,
    _head_end,
    build_response,
    can_answer,
    frame_message,
    parse_message,
)
from opensti.sip.redirect import _carries_rcd
from opensti.sip.transaction import transaction_key

_VALID = request("INVITE", headers=[("P-Asserted-Identity", "<tel:+12155550121>")])


def _parse_or_reject(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SIPParseError:
        return
    if isinstance(message, SIPRequest):
        # Whatever parsed can be answered: the response builder must not fail either.
        assert parse_message(build_response(message, 400)).call_id == message.call_id


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    _parse_or_reject(data)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mutated_requests_parse_or_raise_sip_parse_error(data: st.DataObject) -> None:
    raw = bytearray(_VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            raw[index] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del raw[index]
        else:
            raw[index:index] = data.draw(st.sampled_from([b"\r\n", b",", b";", b"<", b'"', b" "]))
    _parse_or_reject(bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=12))
def test_header_text_parse_or_raise_sip_parse_error(values: list[str]) -> None:
    names = ["Via", "From", "To", "Call-ID", "CSeq", "l", "P-Asserted-Identity", "Identity"]
    headers = [(names[i % len(names)], v) for i, v in enumerate(values)]
    raw = request("INVITE", headers=headers)
    try:
        message = frame_message(raw)
    except SIPParseError:
        return
    try:
        message.validate()
    except SIPParseError:
        if isinstance(message, SIPRequest) and can_answer(message):
            build_response(message, 400)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=20))
def test_stream_framing_does_not_depend_on_split_points(cuts: list[int]) -> None:
    stream = _VALID + request("OPTIONS", body=b"x=1") + _VALID
    framer = StreamFramer()
    messages = []
    position = 0
    for cut in cuts:
        messages += framer.feed(stream[position : position + cut])
        position += cut
    messages += framer.feed(stream[position:])
    assert [m.body for m in messages] == [b"", b"x=1", b""]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_stream_framer_yields_messages_or_raises(data: bytes) -> None:
    framer = StreamFramer(max_size=2048)
    try:
        framer.feed(data)
    except SIPParseError:
        return
    assert framer.buffered <= 2048


def _address(value: str) -> object:
    try:
        return parse_name_addr(value, "X")
    except SIPParseError as exc:
        return exc.message


_PIECES = st.sampled_from(
    ["<sip:+12155550121@h:5060;user=phone>", "<tel:+1215;npdi>", "<x>", "<1a:b>", "<sip:a b>",
     ";tag=1", ";tag=a-b.c", ";lr", ';x="q"', "; tag=1", ";tag=", ";;", ";a=b=c", '"Bob" ',
     "Bob ", "sip:a@b", ";received=[::1]", ">", "<", ";ta%g=1", "<sip:é@h>"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=5).map("".join))
def test_surrounding_whitespace_does_not_change_an_address(value: str) -> None:
    """``<URI>;params`` is parsed by one match, any other form by the full parser: a
    leading space sends a value down the full parser, which must agree."""
    assert _address(f" {value}\t") == _address(value)


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b"\r\n"]), max_size=16).map(b"".join))
def test_the_end_of_the_head_is_the_first_blank_line(data: bytes) -> None:
    match = _BLANK_LINE.search(data)
    assert _head_end(data) == (None if match is None else match.span())


_URIS = st.tuples(
    st.sampled_from(["sip:", "sips:", "tel:", "SIP:", "Tel:", "http:", ""]),
    st.sampled_from(["+", "", "+(", " +"]),
    st.text("0123456789", max_size=17),
    st.lists(
        st.sampled_from(
            ["@h", "@", ";npdi", ";phone-context=+1", ":pw", "-1", "\n", "#", "x" * 600]
        ),
        max_size=3,
    ).map("".join),
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(_URIS, st.booleans())
def test_a_global_number_uri_reads_as_canonicalize_tn_reads_it(uri: str, nanp: bool) -> None:
    """``sip:+DIGITS@...`` and ``tel:+DIGITS`` are read by one match, any other URI by
    canonicalize_tn: both must give the same TN (or none)."""
    assert uri_tn(uri, nanp=nanp) == _canonical_tn(uri, nanp)


def _decoded_rcd(identity: str) -> bool:
    """The rcd check by decoding the whole PASSporT, the reference for the fast one."""
    try:
        return "rcd" in decode_passport(parse_identity(identity).token).payload
    except OpenSTIError:
        return False


_PAYLOADS = st.tuples(
    st.lists(
        st.sampled_from(
            ['"rcd":{"nam":"A"}', '"\\u0072cd":1', '"attest":"A"', '"x":"rcd"', '"r":1']
        ),
        max_size=3,
    ).map(lambda items: "{" + ",".join(items) + "}"),
    st.sampled_from(["utf-8", "utf-16-le", "utf-32-be"]),
).map(lambda pair: pair[0].encode(pair[1]))


@settings(max_examples=300, deadline=None)
@given(
    _PAYLOADS,
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from([";info=<https://x.example/c.pem>;alg=ES256;ppt=shaken", ";ppt=rcd", ""]),
    st.booleans(),
)
def test_the_rcd_check_agrees_with_decoding_the_passport(
    payload: bytes, space: str, params: str, compact: bool
) -> None:
    header = b64url_encode(b'{"alg":"ES256","typ":"passport","ppt":"shaken","x5u":"x"}')
    body = "" if compact else b64url_encode(payload)
    identity = f"{space}{'' if compact else header}.{body}.c2ln{space}{params}"
    assert _carries_rcd(identity) == _decoded_rcd(identity)


class _Unused:
    """A signer the ACK tests never reach."""

    def sign(self, orig_tn: str, dest_tns: Sequence[str], attest: str | None, call_id: str) -> str:
        raise AssertionError("an ACK is never signed")


_INVITE = parse_message(request("INVITE", branch="z9hG4bK-plain", call_id="plain@t"))
assert isinstance(_INVITE, SIPRequest)
_RESPONSE = build_response(_INVITE, 302, headers=[("Contact", f"<{_INVITE.uri}>")])


def _plain_ack() -> bytes:
    """The ACK as SIPp's scenarios build it from our 302 ([last_Via:] ...)."""
    lines = _RESPONSE.decode().split("\r\n")
    copied = [next(x for x in lines if x.startswith(f"{n}:")) for n in ("Via", "From", "To")]
    call_id = next(x for x in lines if x.startswith("Call-ID:"))
    head = [f"ACK {_INVITE.uri} SIP/2.0", *copied, call_id, "CSeq: 1 ACK", "Max-Forwards: 70"]
    return ("\r\n".join([*head, "Content-Length: 0"]) + "\r\n\r\n").encode()


def _acknowledged(data: bytes, *, framed: bool) -> tuple[int, list[bytes]]:
    """ACKs counted by a fresh sign listener whose one transaction is the INVITE's, and
    the status lines it sent (a mutation may no longer be an ACK)."""
    server = SIPServer(parse_listeners("udp:127.0.0.1:0"), SIPServices(signer=_Unused()))
    handler = server._handlers[0]
    handler.transactions.complete(transaction_key(_INVITE), _RESPONSE)
    sent: list[bytes] = []
    if not framed:
        server.datagram(handler, data, ("127.0.0.1", 5999), sent.append)
    else:
        with contextlib.suppress(SIPParseError):
            server.dispatch(handler, frame_message(data), ("127.0.0.1", 5999), sent.append)
    return handler.transactions.info().acked, [r.partition(b"\r\n")[0] for r in sent]


def test_the_plain_ack_of_our_302_ends_its_transaction() -> None:
    assert _acknowledged(_plain_ack(), framed=False) == (1, [])


_LINE_EDITS = st.sampled_from(
    ["duplicate", "drop", "lower", "compact", "space", "value", "inject", "length", "cseq", "body"]
)


def _edit_lines(data: st.DataObject, raw: bytes) -> bytes:
    """One change to whole header lines of an ACK."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    index = data.draw(st.integers(1, len(lines) - 1))
    name, _, value = lines[index].partition(b": ")
    edit = data.draw(_LINE_EDITS)
    if edit == "duplicate":
        lines.insert(index, lines[index])
    elif edit == "drop":
        del lines[index]
    elif edit == "lower":
        lines[index] = name.lower() + b": " + value
    elif edit == "compact":
        lines[index] = name[:1].lower() + b": " + value
    elif edit == "space":
        lines[index] = name + b":  " + value + b" "
    elif edit == "value":
        lines[index] = name + b": " + data.draw(st.sampled_from([b"", b"0", b"x", b"<sip:a@b>"]))
    elif edit == "inject":
        byte = data.draw(st.sampled_from([b"\n", b"\r", b"\x00", b"\x7f", b"\xc3\xa9", b"\t"]))
        lines[index] = name + b": " + value[:1] + byte + value[1:]
    elif edit == "length":
        lines[index] = b"Content-Length: " + data.draw(st.sampled_from([b"1", b"00", b"-1"]))
    elif edit == "cseq":
        lines[index] = b"CSeq: " + data.draw(st.sampled_from([b"1 INVITE", b"2 ACK", b"1  ACK"]))
    else:
        body = b"v=0\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_an_ack_read_unframed_ends_what_a_framed_one_would(data: st.DataObject) -> None:
    """Mutations of the plain ACK: read from its bytes when it stays plain, framed and
    validated otherwise, it must end the transaction exactly when the general path does."""
    raw = bytearray(_plain_ack())
    for _ in range(data.draw(st.integers(0, 2))):
        raw = bytearray(_edit_lines(data, bytes(raw)))
    for _ in range(data.draw(st.integers(0, 3))):
        index = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            raw[index] = data.draw(st.sampled_from(b" \t\r\n,;:<>x0\x00\xc3"))
        elif action == "delete":
            del raw[index]
        else:
            raw[index:index] = data.draw(
                st.sampled_from([b"\r\n", b" ", b",", b";", b"\t", b"\n", b"\xc3\xa9"])
            )
    mutated = bytes(raw)
    assert _acknowledged(mutated, framed=False) == _acknowledged(mutated, framed=True)


@pytest.mark.parametrize("line", range(1, 8))
@pytest.mark.parametrize("byte", [b"\n", b"\r", b"\x00", b"\x7f", b"\xc3\xa9", b"\t", b","])
def test_an_odd_byte_in_any_ack_header_ends_what_framing_would(line: int, byte: bytes) -> None:
    head, _, _ = _plain_ack().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    name, _, value = lines[line].partition(b": ")
    lines[line] = name + b": " + value[:1] + byte + value[1:]
    mutated = b"\r\n".join(lines) + b"\r\n\r\n"
    assert _acknowledged(mutated, framed=False) == _acknowledged(mutated, framed=True)
