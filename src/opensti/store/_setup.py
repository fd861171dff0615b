"""First run: a one-time setup link that lets its holder create the first admin.

While no user exists, ``opensti serve`` (at start) and ``opensti user setup-link``
make a random token and store only its SHA-256 with an expiry; a newer link replaces
the older one. Creating the admin uses the token up in the same transaction, under a
lock on its row, so two visitors with the link cannot both make an admin.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from opensti.core.errors import Conflict, NotAuthenticated
from opensti.store._auth import create_user
from opensti.store._models import Role, Setting, User
from opensti.store._secrets import Secret
from opensti.store._settings import put_setting

__all__ = [
    "SETUP_TOKEN_TTL",
    "create_first_admin",
    "create_setup_token",
    "has_users",
    "setup_token_valid",
]

SETUP_TOKEN_KEY = "web.setup_token"  # noqa: S105  (a setting's name, not a secret)
#: How long a setup link works.
SETUP_TOKEN_TTL = dt.timedelta(hours=1)


def has_users(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(User.id.is_not(None)))))


def _digest(token: Secret) -> str:
    return hashlib.sha256(token.reveal()).hexdigest()


def create_setup_token(
    session: Session, *, now: dt.datetime, ttl: dt.timedelta = SETUP_TOKEN_TTL
) -> tuple[Secret, dt.datetime]:
    """A new one-time token (replacing any earlier one) and when it expires."""
    if has_users(session):
        raise Conflict("a user exists already: sign in, or add users with `opensti user add`")
    token = Secret.from_text(secrets.token_urlsafe(32))
    expires = now + ttl
    put_setting(
        session, SETUP_TOKEN_KEY, {"sha256": _digest(token), "expires": expires.isoformat()}
    )
    return token, expires


def _matches(row: Setting | None, token: Secret, now: dt.datetime) -> bool:
    if row is None or not isinstance(row.value, dict):
        return False
    stored, expires = row.value.get("sha256"), row.value.get("expires")
    if not isinstance(stored, str) or not isinstance(expires, str):
        return False
    fresh = now < dt.datetime.fromisoformat(expires)
    return hmac.compare_digest(stored, _digest(token)) and fresh


def setup_token_valid(session: Session, token: Secret, *, now: dt.datetime) -> bool:
    """Whether the link still works: no user yet, the token matches, not expired."""
    return not has_users(session) and _matches(session.get(Setting, SETUP_TOKEN_KEY), token, now)


def create_first_admin(
    session: Session,
    token: Secret,
    *,
    name: str,
    password: Secret,
    email: str | None = None,
    now: dt.datetime,
) -> User:
    """The first admin, for the holder of a valid setup token, which is used up."""
    row = session.get(Setting, SETUP_TOKEN_KEY, with_for_update=True)
    if has_users(session) or not _matches(row, token, now):
        raise NotAuthenticated(
            "this setup link is expired or used: run `opensti user setup-link` for a new one"
        )
    user = create_user(session, name=name, password=password, role=Role.ADMIN, email=email)
    session.delete(row)
    session.flush()
    return user
