"""JWT Claim Constraints (RFC 8226 section 8, RFC 9118): parse, encode and enforce.

The DER vectors are made by OpenSSL from ASN.1 configurations (tests/vectors/README.md),
so they check our pyasn1 module against an independent encoder.
"""

from __future__ import annotations

import contextlib

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from opensti.core.claim_constraints import (
    ENHANCED_JWT_CLAIM_CONSTRAINTS_OID,
    JWT_CLAIM_CONSTRAINTS_OID,
    ClaimConstraints,
    certificate_claim_constraints,
    check_claim_constraints,
    decode_claim_constraints,
    encode_claim_constraints,
)
from opensti.core.errors import ClaimNotPermitted, InvalidCertificate, sip_response
from opensti.sandbox.pki import DemoPKI
from tests.core.core_support import VECTORS, reissue

RCD_DER = (VECTORS / "claim_constraints" / "rfc8226-rcd.der").read_bytes()
EXCLUDE_DER = (VECTORS / "claim_constraints" / "rfc9118-exclude.der").read_bytes()
BANK = ClaimConstraints(("rcd",), {"rcd": ('{"nam":"Example Bank"}',)})


def test_rfc8226_vector_decodes_and_our_encoder_reproduces_it() -> None:
    assert decode_claim_constraints(RCD_DER) == BANK
    assert encode_claim_constraints(BANK) == RCD_DER


def test_rfc9118_vector_decodes_and_our_encoder_reproduces_it() -> None:
    expected = ClaimConstraints((), {"attest": ("A", "B")}, ("crn",))
    assert decode_claim_constraints(EXCLUDE_DER, enhanced=True) == expected
    assert encode_claim_constraints(expected, enhanced=True) == EXCLUDE_DER


def test_must_exclude_needs_the_enhanced_extension() -> None:
    with pytest.raises(InvalidCertificate):
        encode_claim_constraints(ClaimConstraints(must_exclude=("crn",)))


@pytest.mark.parametrize(
    "payload",
    [
        {"rcd": {"nam": "Example Bank"}},
        {"rcd": {"nam": "Example Bank"}, "attest": "A"},  # other claims are free
    ],
)
def test_permitted_rcd_passes(payload: dict[str, object]) -> None:
    check_claim_constraints(payload, BANK)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"attest": "A"}, "requires claim 'rcd'"),
        ({"rcd": {"nam": "Other Bank"}}, "does not permit"),
        ({"rcd": {"nam": "Example Bank", "icn": "https://x.example/l.png"}}, "does not permit"),
    ],
)
def test_forbidden_claims_raise_with_a_438(payload: dict[str, object], why: str) -> None:
    with pytest.raises(ClaimNotPermitted, match=why) as info:
        check_claim_constraints(payload, BANK)
    assert sip_response(info.value)[0] == 438


def test_must_exclude_and_string_values() -> None:
    constraints = decode_claim_constraints(EXCLUDE_DER, enhanced=True)
    check_claim_constraints({"attest": "B"}, constraints)
    with pytest.raises(ClaimNotPermitted):
        check_claim_constraints({"attest": "C"}, constraints)
    with pytest.raises(ClaimNotPermitted, match="forbids claim 'crn'"):
        check_claim_constraints({"attest": "A", "crn": "sales"}, constraints)


def test_certificate_extensions_are_read_and_merged(pki: DemoPKI) -> None:
    _, cert = pki.issue("1234")
    assert certificate_claim_constraints(cert) is None
    both = reissue(
        cert,
        pki.intermediate,
        add=(
            (
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(JWT_CLAIM_CONSTRAINTS_OID), RCD_DER
                ),
                False,
            ),
            (
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(ENHANCED_JWT_CLAIM_CONSTRAINTS_OID), EXCLUDE_DER
                ),
                False,
            ),
        ),
    )
    merged = certificate_claim_constraints(both)
    assert merged == ClaimConstraints(
        ("rcd",), {"rcd": ('{"nam":"Example Bank"}',), "attest": ("A", "B")}, ("crn",)
    )


@pytest.mark.parametrize(
    "der", [b"", b"\x30\x00", b"\x30\x03\xa0\x01\x00", RCD_DER + b"\x00", RCD_DER[:-3]]
)
def test_malformed_der_is_a_clean_error(der: bytes) -> None:
    with pytest.raises(InvalidCertificate):
        decode_claim_constraints(der)


@given(st.binary(max_size=200), st.booleans())
def test_any_bytes_give_constraints_or_a_clean_error(der: bytes, enhanced: bool) -> None:
    with contextlib.suppress(InvalidCertificate):
        decode_claim_constraints(der, enhanced=enhanced)


@given(
    st.lists(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
        min_size=1,
        max_size=3,
    ),
    st.dictionaries(
        st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1, max_size=6),
        st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3).map(tuple),
        max_size=3,
    ),
)
def test_encode_decode_round_trip(names: list[str], permitted: dict[str, tuple[str, ...]]) -> None:
    value = ClaimConstraints(tuple(names), permitted)
    assert decode_claim_constraints(encode_claim_constraints(value)) == value
