"""Property tests: whatever arrives on the socket, the parser answers cleanly."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from sip_support import request

from opensti.core.errors import OpenSTIError, SIPParseError
from opensti.core.identity import parse_identity
from opensti.core.passport import b64url_encode, decode_passport
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
