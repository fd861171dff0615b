"""Sign in and out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opensti.store import Secret, User, verify_user_password
from opensti.web._auth import safe_next, sign_in, sign_out
from opensti.web._deps import signed_in
from opensti.web._forms import text
from opensti.web._render import redirect, render

router = APIRouter()

_MAX_PASSWORD = 1024


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    if signed_in(request) is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", {"next": safe_next(next), "values": {}})


def _check_password(request: Request, name: str, password: str) -> User | None:
    with request.app.state.database.read_session() as session:
        return verify_user_password(session, name, Secret.from_text(password))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    name, password = text(form, "username"), text(form, "password")
    target = safe_next(text(form, "next"))
    user = None
    if name and password and len(password) <= _MAX_PASSWORD:
        user = await run_in_threadpool(_check_password, request, name, password)
    if user is None:
        return render(
            request,
            "login.html",
            {
                "next": target,
                "values": {"username": name},
                "error": "Wrong user name or password.",
            },
            status_code=400,
        )
    sign_in(request, user)
    return redirect(target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    sign_out(request)
    return redirect("/login")
