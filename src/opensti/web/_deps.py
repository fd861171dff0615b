"""FastAPI dependencies of the pages: the signed-in user at a minimum role, the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import Request

from opensti.store import Role, User
from opensti.web._auth import Forbidden, SignedIn, SignInRequired, password_tag

__all__ = ["Admin", "Operator", "Viewer", "backend", "need", "signed_in"]


def backend(request: Request) -> Any:
    """The :class:`opensti.app.App` the web UI was built on."""
    return request.app.state.backend


def signed_in(request: Request) -> SignedIn | None:
    """The session's user if it still exists, is enabled and kept its password."""
    uid = request.session.get("uid")
    if not isinstance(uid, int):
        return None
    with request.app.state.database.read_session() as session:
        user = session.get(User, uid)
        if user is None or not user.enabled or request.session.get("pw") != password_tag(user):
            return None
        return SignedIn(user.id, user.name, user.role)


def need(role: Role) -> Callable[[Request], Awaitable[SignedIn]]:
    async def dependency(request: Request) -> SignedIn:
        user = signed_in(request)
        if user is None:
            request.session.pop("uid", None)
            raise SignInRequired()
        request.state.user = user
        if not user.can(role):
            raise Forbidden(role)
        return user

    return dependency


Viewer = Annotated[SignedIn, Depends(need(Role.READ_ONLY))]
Operator = Annotated[SignedIn, Depends(need(Role.OPERATOR))]
Admin = Annotated[SignedIn, Depends(need(Role.ADMIN))]
