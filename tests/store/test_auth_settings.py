"""API tokens, users and run-time settings."""

from __future__ import annotations

import datetime as dt

import pytest

from opensti.core.errors import Conflict, InvalidInput, NotFound
from opensti.store import (
    ApiToken,
    Role,
    Secret,
    authenticate_api_token,
    create_api_token,
    create_user,
    delete_setting,
    get_secret_setting,
    get_setting,
    get_user,
    list_api_tokens,
    put_secret_setting,
    put_setting,
    revoke_api_token,
    verify_user_password,
)

from .conftest import NOW, db_bytes, row_counts

pytestmark = pytest.mark.db_dialect


def test_api_token_is_shown_once_and_stored_hashed(db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        _, token = create_api_token(session, name="ci", role=Role.OPERATOR)
        create_api_token(
            session, name="short", role=Role.READ_ONLY, expires_at=NOW + dt.timedelta(hours=1)
        )
    assert token.reveal_text().startswith("osti_")
    assert "osti_" not in repr(token)
    db.dispose()
    assert token.reveal() not in db_bytes(db)
    with db.session() as session:
        found = authenticate_api_token(session, token, now=NOW)
        assert isinstance(found, ApiToken)
        assert (found.name, found.role) == ("ci", "operator")
        assert authenticate_api_token(session, Secret(b"osti_wrong"), now=NOW) is None
        assert [t.name for t in list_api_tokens(session)] == ["ci", "short"]
        revoke_api_token(session, "ci")
        assert authenticate_api_token(session, token, now=NOW) is None
        with pytest.raises(NotFound):
            revoke_api_token(session, "nope")
    with pytest.raises(Conflict), db.session() as session:
        create_api_token(session, name="ci", role=Role.ADMIN)


def test_expired_token_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        _, token = create_api_token(
            session, name="t", role=Role.ADMIN, expires_at=NOW + dt.timedelta(hours=1)
        )
        assert authenticate_api_token(session, token, now=NOW) is not None
        assert authenticate_api_token(session, token, now=NOW + dt.timedelta(hours=1)) is None


def test_users_and_passwords(db) -> None:  # type: ignore[no-untyped-def]
    password = Secret.from_text("correct horse battery")
    with db.session() as session:
        create_user(session, name="alice", password=password, role=Role.ADMIN, email="a@x.example")
    with db.session() as session:
        assert get_user(session, "alice").password_hash.startswith("scrypt$")
        assert "correct" not in get_user(session, "alice").password_hash
        user = verify_user_password(session, "alice", password)
        assert user is not None
        assert user.role == "admin"
        assert verify_user_password(session, "alice", Secret.from_text("wrong password")) is None
        assert verify_user_password(session, "bob", password) is None
        get_user(session, "alice").enabled = False
    with db.session() as session:
        assert verify_user_password(session, "alice", password) is None
    before = row_counts(db)
    with pytest.raises(InvalidInput, match="8 to 1024"), db.session() as session:
        create_user(session, name="bob", password=Secret(b"short"), role=Role.READ_ONLY)
    with pytest.raises(Conflict), db.session() as session:
        create_user(session, name="alice", password=password, role=Role.READ_ONLY)
    assert row_counts(db) == before


def test_settings_plain_and_secret(db, box) -> None:  # type: ignore[no-untyped-def]
    smtp = {"host": "127.0.0.1", "port": 2525, "starttls": True}
    with db.session() as session:
        put_setting(session, "smtp", smtp)
        put_setting(session, "notify.contact", "noc@carrier.example")
        put_secret_setting(session, box, "smtp.password", Secret(b"mail-pass-123"))
    with db.session() as session:
        assert get_setting(session, "smtp") == smtp
        assert get_setting(session, "missing", default=7) == 7
        assert get_secret_setting(session, box, "smtp.password") == Secret(b"mail-pass-123")
        assert get_secret_setting(session, box, "smtp") is None
        put_setting(session, "notify.contact", "other@carrier.example")
        assert delete_setting(session, "smtp") is True
        assert delete_setting(session, "smtp") is False
        with pytest.raises(InvalidInput, match="setting key"):
            put_setting(session, "bad key!", 1)
    with db.read_session() as session:
        assert get_setting(session, "notify.contact") == "other@carrier.example"
        assert get_setting(session, "smtp") is None
    db.dispose()
    assert b"mail-pass-123" not in db_bytes(db)
