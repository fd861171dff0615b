"""CAs, ACME accounts and STI-PA credentials against a real sandbox; every bad input of
issue 5 gets its message and leaves the store as it was."""

from __future__ import annotations

import base64

import pytest

from opensti.acme import key_fingerprint
from opensti.core.errors import (
    AcmeProblem,
    Conflict,
    InvalidInput,
    NotFound,
    ServiceUnreachable,
    StiPaRefused,
)
from opensti.core.passport import load_private_key
from opensti.sandbox.config import APIUserConfig, ProviderConfig
from opensti.sandbox.server import bind_socket
from opensti.store import Secret, acme_account_key, get_acme_account, get_stipa_account
from tests.lifecycle.acquire_support import World, world
from tests.sandbox.conftest import clock, sandbox_factory

__all__ = ["clock", "sandbox_factory", "world"]

pytestmark = pytest.mark.integration


def test_account_with_eab_shows_url_thumbprint_and_fingerprint(world: World) -> None:
    world.add_sandbox_ca()
    name = world.account()
    info = world.app.accounts.show_account(name)
    assert info.account_url is not None
    assert info.account_url.startswith(world.sandbox.base_url + "/acme/account/")
    assert info.status == "valid"
    assert info.origin == "created"
    with world.app.database.read_session() as session:
        row = get_acme_account(session, name)
        key = load_private_key(acme_account_key(world.app.box, row).reveal())
    assert info.fingerprint == key_fingerprint(key)
    digest = bytes.fromhex(info.fingerprint.removeprefix("SHA256 ").replace(":", ""))
    assert info.thumbprint == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert [a.name for a in world.app.accounts.list_accounts()] == [name]


def test_import_finds_the_account_by_its_key(world: World) -> None:
    world.add_sandbox_ca()
    created = world.app.accounts.show_account(world.account("first"))
    with world.app.database.read_session() as session:
        key_pem = acme_account_key(world.app.box, get_acme_account(session, "first"))
    # The same account cannot be stored twice: the account URL is unique.
    with pytest.raises(Conflict, match="already exists"):
        world.app.accounts.import_account("sandbox", key_pem, name="again")
    other = World(
        world.sandbox,
        world.data_dir,
        {**world.env, "OPENSTI_DATA_DIR": str(world.data_dir / "other")},
    )
    try:
        other.add_sandbox_ca()
        imported = other.app.accounts.import_account(
            "sandbox", key_pem, account_url=created.account_url
        )
    finally:
        other.app.close()
    assert imported.account_url == created.account_url
    assert imported.thumbprint == created.thumbprint
    assert imported.origin == "imported"


def test_known_cas_are_listed_and_custom_ones_added(world: World) -> None:
    names = [ca.name for ca in world.app.accounts.list_cas()]
    assert names[:2] == ["martini", "peeringhub"]
    world.add_sandbox_ca()
    sandbox_ca = world.app.accounts.list_cas()[-1]
    assert (sandbox_ca.name, sandbox_ca.kind) == ("sandbox", "custom")
    with pytest.raises(Conflict, match="built in"):
        world.app.accounts.add_ca("martini", "https://127.0.0.1/x")


LONG_USER = "u" * 256
LONG_PASSWORD = "p" * 190


@pytest.mark.parametrize(
    ("user", "password", "message"),
    [
        (LONG_USER, "secret", "STI-PA user id has 256 characters: at most 255"),
        ("demo", LONG_PASSWORD, "STI-PA password has 190 characters: at most 189"),
        ("demo", "tab\there", "control character"),
    ],
)
def test_stipa_limits_refused_and_nothing_stored(
    world: World, user: str, password: str, message: str
) -> None:
    before = world.snapshot()
    with pytest.raises(InvalidInput, match=message) as raised:
        world.stipa(user, password)
    assert password not in str(raised.value)
    assert world.snapshot() == before


def test_stipa_at_the_limits_with_any_printable_characters_logs_in(world: World) -> None:
    """Quotes, backslash and non-ASCII reach the STI-PA exactly (JSON-escaped)."""
    password = "q\"uo'te \\back\\slash é€ 日本 " + "x" * 163
    user = 'user"\\é' + "u" * 248
    assert (len(user), len(password)) == (255, 189)
    world.sandbox.state.add_provider(
        ProviderConfig("789K", ("789K",), (APIUserConfig(user, password),))
    )
    world.app.accounts.set_stipa(
        account_id="789k",
        user_id=user,
        password=Secret.from_text(password),
        base_url=world.sandbox.stipa_base_url,
    )
    assert world.app.accounts.test_stipa("789K").user_id == user
    with world.app.database.read_session() as session:
        row = get_stipa_account(session, "789K")
        assert password.encode() not in row.password_ciphertext


def test_stipa_refusal_is_shown_and_changes_nothing(world: World) -> None:
    world.stipa("demo", "wrong-password")
    before = world.snapshot()
    with pytest.raises(StiPaRefused, match="STI-PA refused the login of user 'demo': HTTP 401"):
        world.app.accounts.test_stipa()
    assert world.snapshot() == before


def test_eab_hmac_key_not_base64url(world: World) -> None:
    world.add_sandbox_ca()
    before = world.snapshot()
    kid, _ = world.eab()
    with pytest.raises(InvalidInput, match="EAB HMAC key is not base64url"):
        world.app.accounts.add_account(
            "sandbox",
            email="ops@example.net",
            agree_tos=True,
            eab_kid=kid,
            eab_hmac_key=Secret.from_text("not+base64/url="),
        )
    assert world.snapshot() == before


def test_unknown_ca(world: World) -> None:
    before = world.snapshot()
    with pytest.raises(NotFound, match=r"unknown CA 'nosuch' \(known: martini, peeringhub\)"):
        world.app.accounts.add_account("nosuch", email="ops@example.net", agree_tos=True)
    assert world.snapshot() == before


def test_unreachable_ca(world: World) -> None:
    closed = bind_socket("127.0.0.1", 0)
    port = closed.getsockname()[1]
    closed.close()
    world.add_sandbox_ca("gone", f"https://127.0.0.1:{port}/acme/directory")
    before = world.snapshot()
    with pytest.raises(
        ServiceUnreachable, match=f"cannot reach the CA at https://127.0.0.1:{port}"
    ):
        world.app.accounts.add_account("gone", email="ops@example.net", agree_tos=True)
    assert world.snapshot() == before


def test_ca_refusal_shows_the_problem_document(world: World) -> None:
    world.add_sandbox_ca()
    before = world.snapshot()
    unknown = base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
    with pytest.raises(AcmeProblem, match=r"CA refused: urn:ietf:params:acme:error:\w+: .*kid"):
        world.app.accounts.add_account(
            "sandbox",
            email="ops@example.net",
            agree_tos=True,
            eab_kid="kid-unknown",
            eab_hmac_key=Secret.from_text(unknown),
        )
    assert world.snapshot() == before


def test_terms_must_be_agreed_when_the_ca_has_them(world: World) -> None:
    world.app.accounts.add_ca(
        "sandbox",
        world.sandbox.ca_directory_url,
        needs_eab=True,
        terms_url="https://127.0.0.1/terms",
    )
    before = world.snapshot()
    kid, key = world.eab()
    with pytest.raises(InvalidInput, match="terms of service must be agreed"):
        world.app.accounts.add_account(
            "sandbox", email="ops@example.net", agree_tos=False, eab_kid=kid, eab_hmac_key=key
        )
    assert world.snapshot() == before
