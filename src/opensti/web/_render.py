"""Templates and what every page gets: the user, the CSRF token, the dashboard line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from opensti.core.errors import OpenSTIError, http_status
from opensti.web._auth import CSRF_FIELD, SignedIn, csrf_token
from opensti.web._forms import values_of
from opensti.web._health import health_summary

__all__ = ["NAV", "flash", "form_failed", "redirect", "render", "templates_env"]

TEMPLATE_DIR = Path(__file__).parent / "templates"

#: (path, label) of the main navigation, in order.
NAV = (
    ("/", "Certificates"),
    ("/accounts", "Certificate Authorities"),
    ("/stipa", "STI-PA"),
    ("/calls", "SIP Messages"),
    ("/settings", "Settings"),
)


def _when(value: dt.datetime | None) -> str:
    return "—" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _left(value: dt.datetime | None, now: dt.datetime) -> str:
    """Human-sized remaining time ("3 d 4 h", "expired")."""
    if value is None:
        return ""
    seconds = int((value - now).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def templates_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.globals["left"] = _left
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    return env


def flash(request: Request, message: str, kind: str = "ok") -> None:
    """A one-time notice shown on the next page (after a POST-redirect-GET)."""
    request.session.setdefault("flash", []).append([kind, message])


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    state = request.app.state
    user: SignedIn | None = getattr(request.state, "user", None)
    now = state.clock()
    health = None
    if user is not None:
        with state.database.read_session() as session:
            health = health_summary(session, now, state.policy)
    values = {
        "request": request,
        "user": user,
        "csrf_token": csrf_token(request),
        "health": health,
        "nav": NAV,
        "now": now,
        "flashes": request.session.pop("flash", []),
        "path": request.url.path,
        **(context or {}),
    }
    body = state.templates.get_template(template).render(values)
    return HTMLResponse(body, status_code=status_code)


def form_failed(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    exc: OpenSTIError,
    form: FormData,
    *secret_fields: str,
    error_key: str = "error",
) -> HTMLResponse:
    """The same form again with the service's message and the user's input (not secrets).

    ``error_key`` names the message for a page with several forms, so it shows by the
    form that was sent."""
    # The form's input over the page's stored values, so other forms stay filled.
    values = {**context.get("values", {}), **values_of(form, *secret_fields)}
    return render(
        request,
        template,
        {**context, "values": values, error_key: str(exc)},
        status_code=http_status(exc),
    )
