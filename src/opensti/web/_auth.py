"""Who is signed in, what their role lets them do, and the CSRF check on every POST.

The signed cookie holds the id of a server-side session (store ``web_session``: signing
out, a password change or an admin ends it on every node) and a random CSRF token that
every form echoes back. The token is session-bound and compared in constant time; a POST
without it is refused before any handler runs (a router-wide dependency).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request

from opensti.store import Role, User, create_web_session, end_web_session
from opensti.web._middleware import SESSION_MAX_AGE

__all__ = [
    "CSRF_FIELD",
    "CSRFRefused",
    "Forbidden",
    "SignInRequired",
    "SignedIn",
    "csrf_protect",
    "csrf_token",
    "role_allows",
    "safe_next",
    "sign_in",
    "sign_out",
]

CSRF_FIELD = "csrf_token"
_RANK = {Role.SIGNER: -1, Role.READ_ONLY: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class SignInRequired(Exception):
    """Raised by a page that needs a user; the handler sends the browser to /login."""


class Forbidden(Exception):
    """The signed-in user's role does not allow this."""

    def __init__(self, needed: Role) -> None:
        super().__init__(f"this needs the {needed.value} role")
        self.needed = needed


class CSRFRefused(Exception):
    """A state-changing request without the session's CSRF token."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    id: int
    name: str
    role: Role

    def can(self, needed: Role) -> bool:
        return role_allows(self.role, needed)


def role_allows(role: Role, needed: Role) -> bool:
    return _RANK[role] >= _RANK[needed]


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (also for the sign-in form)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def csrf_protect(request: Request) -> None:
    """Router dependency: refuse any unsafe method whose form lacks the session token."""
    if request.method not in _UNSAFE:
        return
    expected = request.session.get("csrf")
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if (
        not isinstance(expected, str)
        or not isinstance(given, str)
        or not hmac.compare_digest(expected.encode(), given.encode())
    ):
        raise CSRFRefused()


def sign_in(request: Request, user: User) -> None:
    """A fresh session (new CSRF token): a token seen before sign-in is useless after."""
    state = request.app.state
    with state.database.session() as session:
        session_id = create_web_session(
            session, user.id, now=state.clock(), lifetime=dt.timedelta(seconds=SESSION_MAX_AGE)
        )
    request.session.clear()
    request.session.update(sid=session_id, csrf=secrets.token_urlsafe(32))


def sign_out(request: Request) -> None:
    """End the session in the store too: a copy of the cookie is worthless after."""
    session_id = request.session.get("sid")
    if isinstance(session_id, str):
        with request.app.state.database.session() as session:
            end_web_session(session, session_id)
    request.session.clear()


def safe_next(target: str | None) -> str:
    """Only a local path: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
