"""An entry's Rich Call Data (RFC 9795) in every SHAKEN PASSporT it signs, a request's
own in its place, and the bounds on what an operator may set."""

from __future__ import annotations

import pytest

from opensti.core.bounds import check_icon_url, check_rcd_name
from opensti.core.errors import InvalidInput
from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport, verify_signature
from opensti.core.rcd import build_rcd_claims, parse_rich_call_data, rcdi_digest
from opensti.sandbox.pki import new_key
from opensti.signing import Keyring, SigningService
from tests.signing.test_signing_service import NOW, entry

LOGO_URL = "https://brand.example.com/logo.png"
BRAND = build_rcd_claims(name="Example Bank", icon=LOGO_URL, icon_digest=rcdi_digest(b"logo"))


def test_an_entry_signs_its_brand_into_the_shaken_passport() -> None:
    key = new_key()
    keyring = Keyring([entry("bank", key=key, is_default=True, rcd=BRAND), entry("plain")])
    service = SigningService(keyring, clock=lambda: NOW)
    signed = service.sign("12155550121", "12155550131", attest="A")
    header = parse_identity(signed.identity)
    passport = decode_passport(header.token)
    verify_signature(passport, key.public_key())
    assert (header.ppt, passport.ppt) == ("shaken", "shaken")
    assert passport.payload["rcd"] == {"nam": "Example Bank", "icn": LOGO_URL}
    assert passport.payload["rcdi"] == {"/icn": rcdi_digest(b"logo")}
    assert passport.payload["attest"] == "A"
    data = parse_rich_call_data(passport.payload)
    assert data is not None
    assert data.urls_to_fetch() == {"/icn": LOGO_URL}
    own = build_rcd_claims(name="Other")
    replaced = decode_passport(service.sign("12155550121", "12155550131", rcd=own).token)
    assert (replaced.payload["rcd"], "rcdi" in replaced.payload) == ({"nam": "Other"}, False)
    plain = decode_passport(service.sign("12155550121", "12155550131", entry="plain").token)
    assert "rcd" not in plain.payload


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://brand.example.com/logo.png", "https URL"),
        ("https://brand.example.com/a logo.png", "may not contain"),
        ("https:///logo.png", "with a host"),
        ("https://brand.example.com/" + "x" * 2048, "may not contain"),
    ],
)
def test_icon_urls_are_https_and_cannot_break_a_header(value: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        check_icon_url(value)


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "1 to 256"), ("x" * 257, "1 to 256"), ("Bank\nInc", "control"), ("Ba\x85nk", "control")],
)
def test_names_are_bounded_and_printable(value: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        check_rcd_name(value)


def test_a_good_name_and_icon_pass_as_given() -> None:
    assert check_rcd_name(" Café Ünïcode ") == "Café Ünïcode"
    assert check_icon_url(LOGO_URL) == LOGO_URL
