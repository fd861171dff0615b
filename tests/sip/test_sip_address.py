"""name-addr parsing, the calling TN, and verstat placement (ATIS-1000074, TS 24.229)."""

from __future__ import annotations

import pytest

from opensti.core.errors import SIPParseError
from opensti.sip.address import parse_name_addr, split_list, uri_tn, with_verstat

PASSED = "TN-Validation-Passed"


@pytest.mark.parametrize(
    ("value", "display", "uri", "params"),
    [
        ('"Alice" <sip:+1215@h>;tag=9', '"Alice"', "sip:+1215@h", (("tag", "9"),)),
        ("Alice Smith <sip:a@h>", "Alice Smith", "sip:a@h", ()),
        ("<tel:+12155550121>", None, "tel:+12155550121", ()),
        ("sip:a@h;tag=1", None, "sip:a@h", (("tag", "1"),)),
        (
            '"A \\"q\\" <b>" <sip:a@h> ; tag = x ; lr',
            '"A \\"q\\" <b>"',
            "sip:a@h",
            (("tag", "x"), ("lr", None)),
        ),
        ("<sip:+1;npdi;rn=+2@h;user=phone>", None, "sip:+1;npdi;rn=+2@h;user=phone", ()),
    ],
)
def test_parse_name_addr(
    value: str, display: str | None, uri: str, params: tuple[tuple[str, str | None], ...]
) -> None:
    address = parse_name_addr(value)
    assert (address.display_name, address.uri, address.params) == (display, uri, params)


def test_name_addr_round_trips() -> None:
    address = parse_name_addr('"Alice" <sip:+1215@h;user=phone>;tag=9')
    assert str(address) == '"Alice" <sip:+1215@h;user=phone>;tag=9'
    assert parse_name_addr(str(address)) == address


@pytest.mark.parametrize(
    "value", ["", "<>", "<sip:a@h", '"x', "bad<>display <sip:a@h>", "<sip:a@h>junk", "<sip:a@h>;"]
)
def test_bad_name_addr(value: str) -> None:
    with pytest.raises(SIPParseError):
        parse_name_addr(value)


def test_split_list_respects_quotes_and_brackets() -> None:
    value = '"Doe, J" <sip:a@h;x=1,2>, <tel:+1>,sip:b@h'
    assert split_list(value) == ['"Doe, J" <sip:a@h;x=1,2>', "<tel:+1>", "sip:b@h"]


@pytest.mark.parametrize(
    ("uri", "tn"),
    [
        ("sip:+12155550121@h;user=phone", "12155550121"),
        ("sip:+1-215-555-0121;verstat=x@h", "12155550121"),
        ("tel:+12155550121;npdi", "12155550121"),
        ("sips:2155550121@h", "12155550121"),
        ("sip:alice@h", None),
        ("sip:h", None),
        ("mailto:+12155550121@h", None),
    ],
)
def test_uri_tn(uri: str, tn: str | None) -> None:
    assert uri_tn(uri) == tn


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "sip:+12155550121@ims.example.net;user=phone",
            f"sip:+12155550121;verstat={PASSED}@ims.example.net;user=phone",
        ),
        (
            "sip:+12155550121;verstat=TN-Validation-Passed@h;verstat=forged;user=phone",
            f"sip:+12155550121;verstat={PASSED}@h;user=phone",
        ),
        (
            "sip:+12155550121;VERSTAT=x;npdi:secret@h?Subject=x",
            f"sip:+12155550121;npdi;verstat={PASSED}:secret@h?Subject=x",
        ),
        ("tel:+12155550121", f"tel:+12155550121;verstat={PASSED}"),
        (
            "tel:+12155550121;verstat=No-TN-Validation;npdi",
            f"tel:+12155550121;npdi;verstat={PASSED}",
        ),
        ("sip:h.example", "sip:h.example"),
        ("mailto:a@h", "mailto:a@h"),
    ],
)
def test_verstat_placement(uri: str, expected: str) -> None:
    assert with_verstat(uri, PASSED) == expected
