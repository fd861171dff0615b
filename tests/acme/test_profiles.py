"""CA profiles: the built-in CAs, custom ones, and what each setting changes."""

from __future__ import annotations

import pytest

from opensti.acme import BUILTIN_PROFILES, custom_profile, get_profile, sandbox_profile
from opensti.core.errors import InvalidInput, NotFound
from opensti.core.tnauthlist import TNAuthList


def test_builtin_cas() -> None:
    martini = get_profile("Martini")
    assert martini.directory_url() == "https://wfe.prod.martinisecurity.com/v2/acme/directory"
    assert martini.directory_url(staging=True) == (
        "https://wfe.dev.martinisecurity.com/v2/acme/directory"
    )
    peeringhub = get_profile("peeringhub")
    assert peeringhub.directory_url() == "https://stica.peeringhub.io/acme"
    assert peeringhub.directory_url(staging=True) == "https://stica-dev.peeringhub.io/acme"
    assert peeringhub.cert_key_is_account_key
    assert not martini.cert_key_is_account_key
    assert all(p.tkauth_field == "atc" for p in BUILTIN_PROFILES)
    # Peeringhub binds accounts by a kid inside the jwk, Martini by RFC 8555 EAB.
    assert martini.needs_eab
    assert martini.account_binding == "eab"
    assert not peeringhub.needs_eab
    assert peeringhub.account_binding == "jwk_kid"


def test_unknown_ca_names_the_known_ones() -> None:
    with pytest.raises(NotFound, match=r"unknown CA 'acme-ca' \(known: .*martini.*peeringhub"):
        get_profile("acme-ca")


def test_custom_and_sandbox_profiles_are_found_by_name() -> None:
    mine = custom_profile("mine", "https://ca.example.net/dir", identifier_encoding="base64url")
    sandbox = sandbox_profile("https://127.0.0.1:8443/acme/directory")
    assert get_profile("MINE", (mine, sandbox)) is mine
    assert get_profile("sandbox", (mine, sandbox)).directory_url(staging=True) == (
        "https://127.0.0.1:8443/acme/directory"
    )
    assert mine.custom
    assert not sandbox.custom


def test_custom_ca_without_staging_refuses_staging() -> None:
    mine = custom_profile("mine", "https://ca.example.net/dir")
    with pytest.raises(InvalidInput, match="no staging directory"):
        mine.directory_url(staging=True)


@pytest.mark.parametrize(
    "settings",
    [
        {"identifier_encoding": "base64"},
        {"tkauth_field": "token"},
        {"fingerprint_algorithm": "sha1"},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        custom_profile("mine", "https://ca.example.net/dir", **settings)


def test_directory_must_be_a_url() -> None:
    with pytest.raises(InvalidInput, match="http"):
        custom_profile("mine", "ca.example.net/dir")


@pytest.mark.parametrize(
    ("encoding", "value"),
    [("padded", "MAigBhYEMTIzNA=="), ("base64url", "MAigBhYEMTIzNA")],
)
def test_identifier_encoding_of_a_profile(encoding: str, value: str) -> None:
    profile = custom_profile("mine", "https://ca.example.net/dir", identifier_encoding=encoding)
    tnauthlist = TNAuthList.for_spc("1234")
    assert tnauthlist.to_acme_value(padded=profile.padded_identifiers) == value
