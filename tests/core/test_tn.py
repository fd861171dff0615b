"""TN canonicalization, RFC 8224 section 8.3 (with the NANP local policy of step 2)."""

from __future__ import annotations

import pytest

from opensti.core.errors import InvalidTN
from opensti.core.tn import MAX_TN_DIGITS, canonicalize_tn, is_e164


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The examples of the spec digest (RFC 8224 section 8.3).
        ("sip:+1-215-555-0121@example.com;user=phone", "12155550121"),
        ("tel:+1(215)555.0131", "12155550131"),
        ("2155550121", "12155550121"),
        # Visual separators and the leading "+" are dropped.
        ("+1 215 555 0121", "12155550121"),
        ("+1.215.555.0121", "12155550121"),
        ("(215) 555-0121", "12155550121"),
        ("+44 20 7946 0958", "442079460958"),
        # tel and sip/sips URIs, any case of the scheme, in angle brackets or not.
        ("TEL:+12155550121", "12155550121"),
        ("<tel:+12155550121>", "12155550121"),
        ("sips:+12155550121@example.com;user=phone", "12155550121"),
        ("<sip:+12155550121@example.com:5061;user=phone>", "12155550121"),
        ("sip:+12155550121:secret@example.com;user=phone", "12155550121"),
        # Parameters glued to the number (RFC 3966, RFC 4904) are not part of it.
        ("tel:+12155550121;npdi;rn=+12155559999", "12155550121"),
        ("tel:+12155550121;ext=22", "12155550121"),
        ("tel:2155550121;phone-context=+1", "12155550121"),
        (
            "sip:+12155550121;tgrp=TG1;trunk-context=example.com@example.com;user=phone",
            "12155550121",
        ),
        ("tel:+12155550121;isub=1234", "12155550121"),
        # "#" and "*" are TN characters (special service numbers).
        ("*67", "*67"),
        ("#31#", "#31#"),
        # Short codes have no global form and are left alone.
        ("911", "911"),
        ("112", "112"),
    ],
)
def test_canonical_form(value: str, expected: str) -> None:
    assert canonicalize_tn(value) == expected


@pytest.mark.parametrize(
    ("value", "nanp", "expected"),
    [
        # A ten-digit NANP number gets the country code, the international prefix goes.
        ("2155550121", True, "12155550121"),
        ("01144207946 0958", True, "442079460958"),
        # Without the policy, the digits stay as they are.
        ("2155550121", False, "2155550121"),
        ("011442079460958", False, "011442079460958"),
        # The policy only applies to numbers without a global "+" form.
        ("+2155550121", True, "2155550121"),
        # A ten-digit string that cannot be a NANP number (area code 0xx/1xx) is kept.
        ("0155550121", True, "0155550121"),
        ("1155550121", True, "1155550121"),
        # Eleven digits already carry the country code.
        ("12155550121", True, "12155550121"),
    ],
)
def test_nanp_policy(value: str, nanp: bool, expected: str) -> None:
    assert canonicalize_tn(value, nanp=nanp) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "+",
        "tel:",
        "sip:@example.com",
        "sip:alice@example.com",
        "1-800-FLOWERS",
        "215555O121",  # a letter O, not a zero
        "+1 215 555 0121 x22",
        "12155550121a",
        "tel:+1_215_555_0121",
        "1215555012١",  # an Arabic-Indic digit is not an ASCII DIGIT
        "+1/215/555/0121",
    ],
)
def test_not_a_telephone_number(value: str) -> None:
    with pytest.raises(InvalidTN) as caught:
        canonicalize_tn(value)
    assert caught.value.value is not None or value == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 3966 section 5.1.5: a global-number context prefixes the local number.
        ("tel:2155550121;phone-context=+1", "12155550121"),
        ("tel:555-0121;phone-context=+1-215", "12155550121"),
        ("tel:79460958;ext=1;phone-context=+4420", "442079460958"),
        ("sip:2155550121;phone-context=+1@example.com;user=phone", "12155550121"),
        ("TEL:2155550121;PHONE-CONTEXT=+1", "12155550121"),
        # A domain-name context says nothing about the country code.
        ("tel:2155550121;phone-context=example.com", "2155550121"),
        # A global number ignores any context.
        ("tel:+12155550121;phone-context=+44", "12155550121"),
    ],
)
def test_phone_context_without_local_policy(value: str, expected: str) -> None:
    assert canonicalize_tn(value, nanp=False) == expected


def test_sixteen_digits_are_too_many() -> None:
    assert canonicalize_tn("+" + "1" * MAX_TN_DIGITS) == "1" * MAX_TN_DIGITS
    with pytest.raises(InvalidTN, match="more than 15"):
        canonicalize_tn("+" + "1" * (MAX_TN_DIGITS + 1))


def test_sixteen_digits_after_stripping_the_international_prefix_pass() -> None:
    # 011 + 13 digits is 16 characters, 13 after the NANP prefix is removed.
    assert canonicalize_tn("011" + "4" * 13) == "4" * 13


def test_huge_input_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidTN, match="too long") as caught:
        canonicalize_tn("1" * 10_000)
    assert len(str(caught.value.value)) < 100


@pytest.mark.parametrize(
    ("tn", "expected"),
    [("12155550121", True), ("0123", False), ("*67", False), ("1" * 16, False), ("", False)],
)
def test_is_e164(tn: str, expected: bool) -> None:
    assert is_e164(tn) is expected
