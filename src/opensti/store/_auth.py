"""Users and API bearer tokens: only hashes are stored."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.core.errors import Conflict, InvalidInput
from opensti.store._common import add, ensure_absent, get_by
from opensti.store._models import ApiToken, Role, User
from opensti.store._secrets import Secret
from opensti.store._validate import check_email, check_name

__all__ = [
    "TOKEN_PREFIX",
    "authenticate_api_token",
    "change_user",
    "check_password",
    "create_api_token",
    "create_user",
    "get_user",
    "list_api_tokens",
    "list_users",
    "revoke_api_token",
    "set_user_password",
    "verify_user_password",
]

TOKEN_PREFIX = "osti_"  # noqa: S105  (makes leaked tokens easy to spot)
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_MIN_PASSWORD = 8
_MAX_PASSWORD = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: Secret) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password.reveal(), salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _password_matches(password: Secret, stored: str) -> bool:
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    computed = _scrypt(password.reveal(), _unb64(salt), int(n), int(r), int(p))
    return hmac.compare_digest(computed, _unb64(digest))


def create_user(
    session: Session, *, name: str, password: Secret, role: Role, email: str | None = None
) -> User:
    check_name(name, "user")
    if role is Role.SIGNER:
        raise InvalidInput("the signer role is for API tokens (SBCs), not for users")
    check_password(password)
    user = User(
        name=name,
        email=email and check_email(email),
        password_hash=hash_password(password),
        role=role,
    )
    ensure_absent(session, User, "user", name=name)
    return add(session, user, "user")


def check_password(password: Secret) -> None:
    """A user password's length rule (8 to 1024 characters)."""
    if not _MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        raise InvalidInput(f"a password has {_MIN_PASSWORD} to {_MAX_PASSWORD} characters")


def set_user_password(session: Session, name: str, password: Secret) -> User:
    """A new password; every web session of the user ends with the old one."""
    from opensti.store._web_sessions import end_user_sessions

    check_password(password)
    user = get_user(session, name)
    user.password_hash = hash_password(password)
    end_user_sessions(session, user.id)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    return get_by(session, User, "user", name=name)


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.name)).all()


def change_user(
    session: Session, name: str, *, role: Role | None = None, enabled: bool | None = None
) -> User:
    """A new role, or disabled / enabled again; the last enabled admin stays one, so
    someone can always manage the installation. Disabling ends the user's web sessions."""
    from opensti.store._web_sessions import end_user_sessions

    if role is Role.SIGNER:
        raise InvalidInput("the signer role is for API tokens (SBCs), not for users")
    user = get_user(session, name)
    new_role = user.role if role is None else role
    new_enabled = user.enabled if enabled is None else enabled
    stops_admin = new_role is not Role.ADMIN or not new_enabled
    if user.role is Role.ADMIN and user.enabled and stops_admin:
        admins = session.scalars(
            select(User.id).filter_by(role=Role.ADMIN, enabled=True).limit(2)
        ).all()
        if len(admins) < 2:
            raise Conflict(
                f"{name} is the last enabled admin: make another user admin first", value=name
            )
    user.role, user.enabled = new_role, new_enabled
    if not new_enabled:
        end_user_sessions(session, user.id)
    session.flush()
    return user


def verify_user_password(session: Session, name: str, password: Secret) -> User | None:
    """The enabled user with this name and password, else None (no hint which was wrong)."""
    user = session.scalars(select(User).filter_by(name=name)).one_or_none()
    if user is None or not user.enabled or not _password_matches(password, user.password_hash):
        return None
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_api_token(
    session: Session,
    *,
    name: str,
    role: Role,
    user_id: int | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, Secret]:
    """A new bearer token: the value is returned once and never stored."""
    check_name(name, "API token")
    ensure_absent(session, ApiToken, "API token", name=name)
    value = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name, token_hash=_token_hash(value), role=role, user_id=user_id, expires_at=expires_at
    )
    return add(session, row, "API token"), Secret.from_text(value)


def authenticate_api_token(session: Session, token: Secret, *, now: dt.datetime) -> ApiToken | None:
    """The live token with this value, or None (unknown, revoked or expired)."""
    row = session.scalars(
        select(ApiToken).filter_by(token_hash=_token_hash(token.reveal_text()))
    ).one_or_none()
    if row is None or row.revoked or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


def list_api_tokens(session: Session) -> Sequence[ApiToken]:
    return session.scalars(select(ApiToken).order_by(ApiToken.name)).all()


def revoke_api_token(session: Session, name: str) -> ApiToken:
    row = get_by(session, ApiToken, "API token", name=name)
    row.revoked = True
    session.flush()
    return row
