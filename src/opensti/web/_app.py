"""``create_web(app)``: the web UI as one ASGI app, mounted at ``/`` beside ``/api/v1``."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

from opensti.core.errors import OpenSTIError, StoreUnavailable, http_status
from opensti.lifecycle.reconcile import ReconcilePolicy
from opensti.web import (
    _pages_accounts,
    _pages_auth,
    _pages_calls,
    _pages_certificates,
    _pages_settings,
    _pages_setup,
    _pages_stipa,
    _pages_users,
)
from opensti.web._auth import CSRFRefused, Forbidden, SignInRequired, csrf_protect
from opensti.web._middleware import SecurityHeadersMiddleware, SessionMiddleware, session_key
from opensti.web._render import redirect, render, templates_env, ui_text
from opensti.web._throttle import SignInThrottle

__all__ = ["create_web", "page_routers"]

STATIC_DIR = Path(__file__).parent / "static"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _secret_key_bytes(app: Any) -> bytes:
    """The installation's secret key, as configured or as kept in the key file."""
    settings = app.settings
    if settings.secret_key is not None:
        text = settings.secret_key.get_secret_value()
    else:
        text = settings.secret_key_file.read_text(encoding="ascii")
    return hashlib.sha256(text.strip().encode("ascii")).digest()


def create_web(
    app: Any,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    policy: ReconcilePolicy | None = None,
    verifier: Any = None,
) -> FastAPI:
    """The web UI over an :class:`opensti.app.App` (its database, box and services).

    ``policy`` is the reconcile loop's, so the pages judge renewals by the same
    schedule and grace as the loop that makes them (default: the loop's defaults)."""
    web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    web.state.policy = policy or ReconcilePolicy()
    web.state.backend = app
    #: The STI-VS of ``opensti serve`` (its trust list shows on the Settings page).
    web.state.verifier = verifier
    web.state.database = app.database
    web.state.clock = clock or getattr(app, "clock", None) or _utc_now
    web.state.templates = templates_env()
    web.state.throttle = SignInThrottle(app.database)
    protected = APIRouter(dependencies=[Depends(csrf_protect)])
    for router in page_routers():
        protected.include_router(router)
    web.include_router(protected)
    web.add_api_route("/favicon.ico", _favicon, methods=["GET"], include_in_schema=False)
    web.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_handlers(web)
    web.add_middleware(SessionMiddleware, key=session_key(_secret_key_bytes(app)))
    web.add_middleware(SecurityHeadersMiddleware)
    return web


_PAGES = (
    _pages_auth,
    _pages_setup,
    _pages_certificates,
    _pages_accounts,
    _pages_stipa,
    _pages_calls,
    _pages_settings,
    _pages_users,
)


def page_routers() -> list[APIRouter]:
    """Every page's router; all are mounted behind the CSRF check."""
    return [module.router for module in _PAGES]


async def _favicon() -> Response:
    """Browsers ask for /favicon.ico on every site: the icon the pages link to."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


def _form_page(web: FastAPI, path: str) -> str | None:
    """The page a POST-only URL's form lives on: the nearest parent path a GET serves,
    with the rest as its anchor (``/certificates/east/tasks`` -> ``/certificates/east#tasks``)."""
    parts = path.rstrip("/").split("/")
    for cut in range(len(parts) - 1, 0, -1):
        candidate = "/".join(parts[:cut]) or "/"
        scope = {"type": "http", "path": candidate, "method": "GET"}
        if any(route.matches(scope)[0] is Match.FULL for route in web.router.routes):
            anchor = parts[cut]
            return f"{candidate}#{anchor}" if anchor else candidate
    return None


def _add_handlers(web: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        """A reload of a POST-only URL (after a form was sent) goes back to its form's
        page; any other 404/405 is a page, not JSON."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405 and request.method == "GET":
            target = _form_page(web, request.url.path)
            if target is not None:
                return redirect(target)
        if exc.status_code not in (404, 405):
            return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
        title = "Not found" if exc.status_code == 404 else "Not available here"
        message = (
            "There is no page at this address."
            if exc.status_code == 404
            else "This address only takes a form's submission."
        )
        context = {"title": title, "message": message}
        return render(request, "error.html", context, status_code=exc.status_code)

    async def sign_in_required(request: Request, _exc: Exception) -> Response:
        target = request.url.path if request.method == "GET" else "/"
        if request.url.query and request.method == "GET":
            target += "?" + request.url.query
        return redirect(f"/login?next={_quote(target)}")

    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        return render(
            request,
            "error.html",
            {"title": "Not allowed", "message": f"Your role cannot do this: {exc}."},
            status_code=403,
        )

    async def csrf_refused(_request: Request, _exc: Exception) -> Response:
        return PlainTextResponse(
            "The form was out of date or came from another site (CSRF check failed). "
            "Go back, reload the page and try again.",
            status_code=403,
        )

    async def opensti_error(request: Request, exc: Exception) -> Response:
        """What a page did not catch itself (a bad form value, a gone object, a
        read-only store): a page with the one-line reason and the status of its class."""
        assert isinstance(exc, OpenSTIError)
        status = http_status(exc)
        unavailable = isinstance(exc, StoreUnavailable)
        title = "Service unavailable" if unavailable else HTTPStatus(status).phrase
        message = f"{exc}: try again later." if unavailable else ui_text(str(exc))
        context = {"title": title, "message": message}
        return render(request, "error.html", context, status_code=status)

    web.add_exception_handler(HTTPException, http_error)
    web.add_exception_handler(OpenSTIError, opensti_error)
    web.add_exception_handler(SignInRequired, sign_in_required)
    web.add_exception_handler(Forbidden, forbidden)
    web.add_exception_handler(CSRFRefused, csrf_refused)


def _quote(path: str) -> str:
    return quote(path, safe="/?=&")
