"""The SIP parser and response builder (RFC 3261 framing, only what a redirect needs)."""

from __future__ import annotations

import os
import re

import pytest
from sip_support import request

from opensti.core.errors import InvalidInput, SIPParseError
from opensti.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    SIPRequest,
    SIPResponse,
    StreamFramer,
    build_response,
    can_answer,
    frame_message,
    parse_message,
)

COMPACT = (
    b"INVITE sip:+12155550131@example.net;user=phone SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1,SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK2\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bK3\r\n"
    b'f: "Alice" <sip:+12155550121@example.net;user=phone>;tag=abc\r\n'
    b"t: <sip:+12155550131@example.net>\r\n"
    b"i: c1@example.net\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"m: <sip:sbc@192.0.2.1>\r\n"
    b"y: a.b.c;info=<https://cr.example/x.pem>;alg=ES256;ppt=shaken\r\n"
    b"Subject: first\r\n"
    b"  second\r\n"
    b"\tthird\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"body"
)


def _parsed(data: bytes) -> SIPRequest:
    message = parse_message(data)
    assert isinstance(message, SIPRequest)
    return message


def test_compact_forms_are_the_full_headers() -> None:
    message = _parsed(COMPACT)
    assert message.method == "INVITE"
    assert message.call_id == "c1@example.net"
    assert message.cseq == (7, "INVITE")
    assert message.header("Call-ID") == message.header("i")
    assert message.from_addr.tag == "abc"
    assert message.to_addr.uri == "sip:+12155550131@example.net"
    assert message.header("contact") == "<sip:sbc@192.0.2.1>"
    assert message.header_values("identity") == [
        "a.b.c;info=<https://cr.example/x.pem>;alg=ES256;ppt=shaken"
    ]
    assert message.body == b"body"


def test_via_values_keep_their_order_across_lines_and_commas() -> None:
    branches = [v.split("branch=")[1] for v in _parsed(COMPACT).header_values("via")]
    assert branches == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]


def test_folded_header_lines_are_joined_with_one_space() -> None:
    assert _parsed(COMPACT).header("subject") == "first second third"


def test_bare_lf_line_endings_are_accepted() -> None:
    message = _parsed(request("OPTIONS").replace(b"\r\n", b"\n"))
    assert message.method == "OPTIONS"


def test_leading_crlf_keepalives_are_ignored() -> None:
    assert _parsed(b"\r\n\r\n" + request("OPTIONS")).method == "OPTIONS"


def test_status_line() -> None:
    message = parse_message(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
        b"To: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    assert isinstance(message, SIPResponse)
    assert (message.status, message.reason) == (180, "Ringing")


def test_sip_parse_error_is_invalid_input() -> None:
    assert issubclass(SIPParseError, InvalidInput)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"hello world\r\n\r\n",
        b"INVITE sip:x@h SIP/3.0\r\nVia: x\r\n\r\n",
        b"INVITE  sip:x@h SIP/2.0\r\n\r\n",
        b"INVITE sip:x@h SIP/2.0\r\n continuation first\r\n\r\n",
        b"INVITE sip:x@h SIP/2.0\r\nno colon here\r\n\r\n",
        b"INVITE sip:x@h SIP/2.0\r\nVia: a\x00b\r\n\r\n",
        b"INVITE sip:x@h SIP/2.0\r\nVia: a\rb\r\n\r\n",
        b"INVITE sip:x@h SIP/2.0\r\nFrom: \xff\xfe\r\n\r\n",
        b"SIP/2.0 99 Too Small\r\n\r\n",
    ],
)
def test_garbage_is_not_framed(data: bytes) -> None:
    with pytest.raises(SIPParseError):
        frame_message(data)


def test_message_size_is_bounded() -> None:
    big = request("OPTIONS", headers=[("X-Pad", "a" * MAX_MESSAGE_SIZE)])
    with pytest.raises(SIPParseError, match="exceeds"):
        frame_message(big)


def test_header_count_is_bounded() -> None:
    many = request("OPTIONS", headers=[("X-N", str(i)) for i in range(MAX_HEADERS)])
    with pytest.raises(SIPParseError, match="header fields"):
        frame_message(many)


@pytest.mark.parametrize(
    ("content_length", "problem"),
    [
        ("abc", "small decimal"),
        ("-1", "small decimal"),
        ("1e3", "small decimal"),
        ("\u0661", "small decimal"),  # an Arabic-Indic digit: int() would accept it
        ("999999999", "small decimal"),
        ("99999999", "size limit"),
        ("10", "shorter than Content-Length"),
    ],
)
def test_content_length_is_parsed_defensively(content_length: str, problem: str) -> None:
    data = request("OPTIONS").replace(b"Content-Length: 0", f"l: {content_length}".encode())
    message = frame_message(data)  # still SIP: the server answers 400
    assert can_answer(message)
    with pytest.raises(SIPParseError, match=problem):
        message.validate()


def test_conflicting_content_lengths_are_rejected() -> None:
    data = request("OPTIONS", headers=[("l", "3")])
    with pytest.raises(SIPParseError, match="conflicting"):
        parse_message(data)


def test_bytes_beyond_content_length_are_discarded() -> None:
    data = request("OPTIONS", body=b"abc") + b"trailing"
    assert _parsed(data).body == b"abc"


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"omit": ["Via"]}, "Via"),
        ({"omit": ["Call-ID"]}, "Call-ID header is missing"),
        ({"omit": ["From"]}, "From header is missing"),
        ({"headers": [("t", "<sip:x@h>")]}, "To header is repeated"),
        ({"cseq": "1 OPTIONS"}, "CSeq method"),
        ({"cseq": "x INVITE"}, "malformed CSeq"),
        ({"cseq": "4294967296 INVITE"}, "malformed CSeq"),
        ({"from_": "<sip:a@h"}, "missing '>'"),
        ({"from_": "<not a uri>;tag=1"}, "not a URI"),
        ({"to": '"unterminated <sip:a@h>'}, "unterminated"),
        ({"uri": "nouri"}, "Request-URI"),
    ],
)
def test_unusable_requests_fail_validation(kwargs: dict[str, object], problem: str) -> None:
    message = frame_message(request("INVITE", **kwargs))  # type: ignore[arg-type]
    with pytest.raises(SIPParseError, match=problem):
        message.validate()


def test_can_answer_needs_the_headers_a_response_copies() -> None:
    assert can_answer(frame_message(request(cseq="1 OPTIONS")))
    assert not can_answer(frame_message(request(omit=["Call-ID"])))


def test_response_copies_the_transaction_headers() -> None:
    original = _parsed(COMPACT)
    response = parse_message(
        build_response(original, 302, headers=[("Contact", "<sip:x@h>")], to_tag="t1")
    )
    assert isinstance(response, SIPResponse)
    assert (response.status, response.reason) == (302, "Moved Temporarily")
    assert response.header_values("via") == original.header_values("via")
    assert response.header("from") == original.header("from")
    assert response.to_addr.tag == "t1"
    assert response.to_addr.uri == original.to_addr.uri
    assert response.call_id == original.call_id
    assert response.header("cseq") == "7 INVITE"
    assert response.header("contact") == "<sip:x@h>"
    assert response.header("server") == "opensti"
    assert response.content_length == 0


def test_to_tag_is_kept_and_not_added_to_100() -> None:
    tagged = _parsed(request(to="<sip:b@h>;tag=keep"))
    assert parse_message(build_response(tagged, 200)).to_addr.tag == "keep"
    assert parse_message(build_response(_parsed(request()), 100)).to_addr.tag is None
    first = parse_message(build_response(_parsed(request()), 200)).to_addr.tag
    assert first  # generated


def _generated_tag() -> str:
    tag = parse_message(build_response(_parsed(request()), 302)).to_addr.tag
    assert tag is not None
    return tag


def test_generated_to_tags_are_random_hex_and_never_repeat() -> None:
    tags = [_generated_tag() for _ in range(2000)]  # several reads of the random source
    assert all(re.fullmatch(r"[0-9a-f]{12}", tag) for tag in tags)
    assert len(set(tags)) == len(tags)


def test_a_forked_worker_does_not_reuse_its_parents_to_tags() -> None:
    _generated_tag()  # the parent holds tags drawn before the fork
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first tag and leave at once
        try:
            os.write(writer, _generated_tag().encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    assert child
    assert child != _generated_tag()


def test_top_via_gets_received_and_rport() -> None:
    original = _parsed(request("OPTIONS"))
    response = parse_message(build_response(original, 200, peer=("10.1.2.3", 40000)))
    top = response.header_values("via")[0]
    assert top.endswith(";rport=40000;received=10.1.2.3")
    same_host = parse_message(build_response(original, 200, peer=("127.0.0.1", 5999)))
    assert "received" not in same_host.header_values("via")[0]


def test_stream_framer_cuts_by_content_length() -> None:
    first = request("OPTIONS", body=b"v=0\r\n")
    second = request("OPTIONS")
    framer = StreamFramer()
    stream = b"\r\n" + first + second
    messages = []
    for i in range(0, len(stream), 7):  # arbitrary split points
        messages += framer.feed(stream[i : i + 7])
    assert [m.body for m in messages] == [b"v=0\r\n", b""]
    assert framer.buffered == 0


def test_stream_framer_bounds_its_buffer() -> None:
    framer = StreamFramer(max_size=1024)
    with pytest.raises(SIPParseError):
        framer.feed(b"INVITE sip:x@h SIP/2.0\r\n" + b"X-Pad: " + b"a" * 2000)


def test_stream_framer_refuses_a_body_beyond_the_limit() -> None:
    framer = StreamFramer(max_size=1024)
    data = request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: 5000")
    with pytest.raises(SIPParseError):
        framer.feed(data)
