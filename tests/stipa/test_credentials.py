"""STI-PA credentials: the documented length limits, and no password in any repr."""

from __future__ import annotations

import pytest

from opensti.core.errors import InvalidInput
from opensti.stipa import StiPaClient, StiPaCredentials, stipa_base_url


def test_limits_are_the_documented_ones() -> None:
    assert StiPaCredentials("123H", "u" * 255, "p" * 189).user_id == "u" * 255
    with pytest.raises(InvalidInput, match="user id has 256 characters; the limit is 255"):
        StiPaCredentials("123H", "u" * 256, "secret")
    with pytest.raises(InvalidInput, match="password has 190 characters; the limit is 189"):
        StiPaCredentials("123H", "user", "p" * 190)


def test_printable_special_characters_are_allowed() -> None:
    password = "\"p@ss w0rd'\\;&<>{}%é"
    assert StiPaCredentials("123H", "api-user@example.net", password).password == password


@pytest.mark.parametrize(
    ("account", "user", "password", "message"),
    [
        ("123H", "", "pw", "user id is empty"),
        ("123H", "user", "", "password is empty"),
        ("123H", "us\ner", "pw", "control characters"),
        ("123H", "user", "p\x00w", "control characters"),
        ("12 3", "user", "pw", "account id"),
        ("../x", "user", "pw", "account id"),
    ],
)
def test_bad_credentials(account: str, user: str, password: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        StiPaCredentials(account, user, password)


def test_password_is_not_in_reprs() -> None:
    credentials = StiPaCredentials("123H", "user", "s3cret-value")
    client = StiPaClient(credentials, base_url="https://sti-pa.example.net")
    assert "s3cret-value" not in repr(credentials)
    assert "s3cret-value" not in repr(client)
    client.close()


def test_base_url_must_be_https_unless_allowed() -> None:
    credentials = StiPaCredentials("123H", "user", "pw")
    with pytest.raises(InvalidInput, match="https"):
        StiPaClient(credentials, base_url="http://127.0.0.1:8080")
    StiPaClient(credentials, base_url="http://127.0.0.1:8080", allow_http=True).close()


def test_environments() -> None:
    assert stipa_base_url() == "https://authenticate-api.iconectiv.com"
    assert stipa_base_url(staging=True) == "https://authenticate-api-stg.iconectiv.com"
