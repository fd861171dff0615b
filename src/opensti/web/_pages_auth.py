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
from opensti.web._throttle import SignInThrottle

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


def _refused(request: Request, target: str, name: str, error: str, status: int) -> Response:
    context = {"next": target, "values": {"username": name}, "error": error}
    return render(request, "login.html", context, status_code=status)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    name, password = text(form, "username"), text(form, "password")
    target = safe_next(text(form, "next"))
    throttle: SignInThrottle = request.app.state.throttle
    address = request.client.host if request.client else None
    clock = request.app.state.clock
    wait = await run_in_threadpool(throttle.begin, name, address, clock)
    if wait:
        error = f"Too many failed sign-ins: wait {wait} s, then try again."
        return _refused(request, target, name, error, 429)
    user = None
    if name and password and len(password) <= _MAX_PASSWORD:
        user = await run_in_threadpool(_check_password, request, name, password)
    if user is None:
        await run_in_threadpool(throttle.failed, clock())
        return _refused(request, target, name, "Wrong user name or password.", 400)
    await run_in_threadpool(throttle.succeeded, name, address)
    await run_in_threadpool(sign_in, request, user)
    return redirect(target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await run_in_threadpool(sign_out, request)
    return redirect("/login")
