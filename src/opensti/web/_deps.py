"""FastAPI dependencies of the pages: the signed-in user at a minimum role, the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Path
from starlette.requests import Request

from opensti.store import Role, web_session_user
from opensti.web._auth import Forbidden, SignedIn, SignInRequired

__all__ = ["Admin", "Operator", "RowID", "Viewer", "backend", "need", "signed_in"]


def backend(request: Request) -> Any:
    """The :class:`opensti.app.App` the web UI was built on."""
    return request.app.state.backend


def signed_in(request: Request) -> SignedIn | None:
    """The user of the cookie's server-side session, if it is live and the user enabled."""
    session_id = request.session.get("sid")
    if not isinstance(session_id, str):
        return None
    state = request.app.state
    with state.database.read_session() as session:
        user = web_session_user(session, session_id, now=state.clock())
        return None if user is None else SignedIn(user.id, user.name, user.role)


def need(role: Role) -> Callable[[Request], Awaitable[SignedIn]]:
    async def dependency(request: Request) -> SignedIn:
        user = signed_in(request)
        if user is None:
            request.session.pop("sid", None)
            raise SignInRequired()
        request.state.user = user
        if not user.can(role):
            raise Forbidden(role)
        return user

    dependency.__name__ = f"need_{role.value.replace('-', '_')}"
    return dependency


Viewer = Annotated[SignedIn, Depends(need(Role.READ_ONLY))]
Operator = Annotated[SignedIn, Depends(need(Role.OPERATOR))]
Admin = Annotated[SignedIn, Depends(need(Role.ADMIN))]
#: A row id in a path, bounded like the BIGINT it names (no OverflowError).
RowID = Annotated[int, Path(ge=1, le=2**63 - 1)]
