"""First run: the one-time setup link creates the first admin, then signs them in."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import InvalidInput, NotAuthenticated, OpenSTIError
from opensti.store import Secret, User, create_first_admin, setup_token_valid
from opensti.web._auth import sign_in
from opensti.web._forms import optional, text
from opensti.web._render import form_failed, redirect, render

router = APIRouter()

_SECRETS = ("password", "password2")


def _expired(request: Request) -> Response:
    message = (
        "This setup link is expired or used, or a user exists already. Sign in, or on "
        "the server run `opensti user setup-link` for a new link while no user exists."
    )
    context = {"title": "Setup link not valid", "message": message}
    return render(request, "error.html", context, status_code=404)


def _valid(request: Request, token: str) -> bool:
    with request.app.state.database.read_session() as session:
        return setup_token_valid(session, Secret.from_text(token), now=request.app.state.clock())


@router.get("/setup")
async def setup_page(request: Request, token: str = "") -> Response:
    if not token or not _valid(request, token):
        return _expired(request)
    context = {"title": "Create the first admin", "token": token, "values": {}}
    return render(request, "setup.html", context)


def _create(request: Request, token: str, form: FormData) -> User:
    name, password = text(form, "username"), str(form.get("password", ""))
    if password != str(form.get("password2", "")):
        raise InvalidInput("the two passwords differ")
    with request.app.state.database.session() as session:
        return create_first_admin(
            session,
            Secret.from_text(token),
            name=name,
            password=Secret.from_text(password),
            email=optional(form, "email"),
            now=request.app.state.clock(),
        )


@router.post("/setup")
async def setup(request: Request) -> Response:
    form = await request.form()
    token = text(form, "token")
    try:
        user = await run_in_threadpool(_create, request, token, form)
    except NotAuthenticated:
        return _expired(request)
    except OpenSTIError as exc:
        context = {"title": "Create the first admin", "token": token}
        return form_failed(request, "setup.html", context, exc, form, *_SECRETS, "token")
    await run_in_threadpool(sign_in, request, user)
    return redirect("/")
