"""Bearer tokens and roles: admin > operator > read-only (a signer token, for the STIR
API only, ranks below read-only: the management API refuses it everything).

A token is looked up by its SHA-256 (the store keeps nothing else), and the hash found
is compared again in constant time. ``last_used_at`` is written at most once a minute
per token, so authenticating stays a read on busy endpoints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from opensti.core.errors import NotAuthenticated, PermissionDenied, StoreUnavailable
from opensti.store import ApiToken, Database, Role, Secret, authenticate_api_token

__all__ = ["ROLE_RANK", "Principal", "authenticate", "require"]

ROLE_RANK = {Role.SIGNER: -1, Role.READ_ONLY: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
_MAX_TOKEN = 256

_log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="An API token: opensti token create")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name and role."""

    token: str
    role: Role

    def allows(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def _matches(row: ApiToken, value: str) -> bool:
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return hmac.compare_digest(row.token_hash.encode("ascii"), digest.encode("ascii"))


def _touch(database: Database, token_id: int, now: dt.datetime) -> None:
    """Best effort: a read-only store must not refuse the reads a token may make."""
    try:
        with database.session() as session:
            row = session.get(ApiToken, token_id)
            if row is not None:
                row.last_used_at = now
    except StoreUnavailable as exc:
        _log.warning("cannot record the use of an API token: %s", exc)


def authenticate(database: Database, value: str | None, now: dt.datetime) -> Principal:
    """The principal of a bearer token value, or :class:`NotAuthenticated`."""
    if not value:
        raise NotAuthenticated("this endpoint needs an API token (Authorization: Bearer ...)")
    if len(value) > _MAX_TOKEN:
        raise NotAuthenticated("the API token is not valid")
    with database.read_session() as session:
        row = authenticate_api_token(session, Secret.from_text(value), now=now)
        if row is None or not _matches(row, value):
            raise NotAuthenticated("the API token is unknown, revoked or expired")
        principal = Principal(row.name, row.role)
        stale = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
        token_id = row.id
    if stale:
        _touch(database, token_id, now)
    return principal


def _current(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    state = request.app.state.opensti
    value = None if credentials is None else credentials.credentials
    return authenticate(state.database, value, state.now())


def require(role: Role) -> Callable[..., Principal]:
    """A dependency: the caller, if their role is ``role`` or above; else 401/403."""

    def dependency(principal: Annotated[Principal, Depends(_current)]) -> Principal:
        if not principal.allows(role):
            raise PermissionDenied(
                f"token {principal.token!r} has role {principal.role.value}; "
                f"this needs {role.value} or above"
            )
        return principal

    dependency.__name__ = f"require_{role.value.replace('-', '_')}"
    return dependency
