"""Rich Call Data claims (RFC 9795): building, parsing and rcdi integrity."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opensti.core.errors import (
    InvalidIdentityHeader,
    InvalidInput,
    PassportError,
    RCDIntegrityFailed,
    sip_response,
)
from opensti.core.rcd import (
    build_rcd_claims,
    check_rcdi,
    json_pointer,
    parse_rich_call_data,
    rcdi_digest,
)
from tests.core.core_support import VECTORS

LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()
LOGO_RCDI = (VECTORS / "rcd" / "logo.png.rcdi").read_text().strip()
CLAIMS = json.loads((VECTORS / "rcd" / "rcd-claims.json").read_text())


def test_digest_matches_openssl() -> None:
    assert rcdi_digest(LOGO) == LOGO_RCDI


def test_vector_claims_parse_and_verify_with_the_logo() -> None:
    data = parse_rich_call_data(CLAIMS)
    assert data is not None
    assert (data.name, data.icon, data.call_reason) == (
        "Example Bank",
        "https://brand.example.com/logo.png",
        "Your appointment reminder",
    )
    assert data.urls_to_fetch() == {"/icn": "https://brand.example.com/logo.png"}
    check_rcdi(data, {"/icn": LOGO})


def test_builder_writes_the_vector_claims() -> None:
    built = build_rcd_claims(
        name="Example Bank",
        icon="https://brand.example.com/logo.png",
        icon_content=LOGO,
        call_reason="Your appointment reminder",
    )
    assert built == CLAIMS


def test_a_changed_logo_fails_rcdi_with_438() -> None:
    data = parse_rich_call_data(CLAIMS)
    assert data is not None
    with pytest.raises(RCDIntegrityFailed, match="/icn") as info:
        check_rcdi(data, {"/icn": LOGO + b"x"})
    assert sip_response(info.value)[0] == 438
    with pytest.raises(RCDIntegrityFailed, match="not fetched"):
        check_rcdi(data, {})


def test_inline_members_are_digested_as_json() -> None:
    claims = {"rcd": {"nam": "Example Bank"}, "rcdi": {"/nam": rcdi_digest(b'"Example Bank"')}}
    data = parse_rich_call_data(claims)
    assert data is not None
    check_rcdi(data, {})
    tampered = parse_rich_call_data({**claims, "rcd": {"nam": "Example Bank!"}})
    assert tampered is not None
    with pytest.raises(RCDIntegrityFailed):
        check_rcdi(tampered, {})


def test_unpadded_digest_is_accepted() -> None:
    claims = {**CLAIMS, "rcdi": {"/icn": LOGO_RCDI.rstrip("=")}}
    data = parse_rich_call_data(claims)
    assert data is not None
    check_rcdi(data, {"/icn": LOGO})


def test_no_rcd_claims_is_none() -> None:
    assert parse_rich_call_data({"attest": "A"}) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"rcd": "Example Bank"},
        {"rcd": {"nam": ""}},
        {"rcd": {"nam": "a\x00b"}},
        {"rcd": {"nam": "x" * 300}},
        {"rcd": {"nam": 5}},
        {"rcd": {"nam": "A"}, "rcdi": []},
        {"rcd": {"nam": "A"}, "rcdi": {"/icn": "sha256-AAAA"}},  # points nowhere
        {"rcd": {"icn": "https://x.example/l"}, "rcdi": {"/icn": "md5-AAAA"}},
        {"rcd": {"icn": "https://x.example/l"}, "rcdi": {"/icn": "sha256-!!"}},
        {"rcd": {"icn": "https://x.example/l"}, "rcdi": {"/icn": "sha256-AAAA"}},  # short
        {"rcdi": {"/icn": LOGO_RCDI}},
        {"rcd": {"nam": "A"}, "crn": 7},
    ],
)
def test_malformed_claims_are_invalid_identity(claims: dict[str, object]) -> None:
    with pytest.raises(InvalidIdentityHeader):
        parse_rich_call_data(claims)


def test_builder_refuses_empty_rcd() -> None:
    with pytest.raises(InvalidInput):
        build_rcd_claims()
    with pytest.raises(InvalidInput):
        build_rcd_claims(name="A", icon_content=b"x")


def test_json_pointer_rfc6901_section5_examples() -> None:
    # RFC 6901 section 5: the example document and a selection of its pointers.
    doc = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8}
    assert json_pointer(doc, "") is doc
    assert json_pointer(doc, "/foo") == ["bar", "baz"]
    assert json_pointer(doc, "/foo/0") == "bar"
    assert json_pointer(doc, "/") == 0
    assert json_pointer(doc, "/a~1b") == 1
    assert json_pointer(doc, "/m~0n") == 8
    for bad in ("foo", "/foo/2", "/foo/01", "/nope"):
        with pytest.raises(KeyError):
            json_pointer(doc, bad)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["rcd", "rcdi", "crn", "attest"]), _json, max_size=4))
def test_any_payload_gives_claims_or_a_clean_error(payload: dict[str, object]) -> None:
    try:
        data = parse_rich_call_data(payload)
        if data is not None:
            check_rcdi(data, {})
    except PassportError:
        pass
