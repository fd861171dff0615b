"""Signed-cookie sessions and the security headers every web response carries.

The session is a small JSON dict signed (not encrypted: it holds no secrets, only the
user id, a password-hash tag and the CSRF token) with a key derived from the
installation's secret key, so a restart keeps users signed in and another
installation's cookies are worthless. The cookie is HttpOnly and SameSite=Lax always,
and Secure whenever the request came over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SESSION_COOKIE", "SecurityHeadersMiddleware", "SessionMiddleware", "session_key"]

SESSION_COOKIE = "opensti_session"
#: A signed-in session lasts at most this long without a new sign-in.
SESSION_MAX_AGE = 12 * 3600

_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def session_key(secret_key: bytes) -> bytes:
    """A key for signing cookies only, so the secrets-at-rest key is never used twice."""
    return hmac.new(secret_key, b"opensti web session v1", hashlib.sha256).digest()


class SessionMiddleware:
    """Like Starlette's, but the Secure flag follows the request's scheme."""

    def __init__(self, app: ASGIApp, *, key: bytes, max_age: int = SESSION_MAX_AGE) -> None:
        self.app = app
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(key, salt="opensti.web.session")

    def _load(self, cookie: str | None) -> dict[str, Any]:
        if not cookie:
            return {}
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        scope["session"] = self._load(connection.cookies.get(SESSION_COOKIE))
        before = json.dumps(scope["session"], sort_keys=True)
        secure = "; secure" if scope.get("scheme") == "https" else ""

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                session = scope["session"]
                if json.dumps(session, sort_keys=True) != before:
                    headers = MutableHeaders(scope=message)
                    if session:
                        value = self._serializer.dumps(session)
                        age = self.max_age
                    else:
                        value, age = "", 0
                    headers.append(
                        "set-cookie",
                        f"{SESSION_COOKIE}={value}; path=/; max-age={age}; httponly; "
                        f"samesite=lax{secure}",
                    )
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class SecurityHeadersMiddleware:
    """CSP without inline code, no framing, no sniffing; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
