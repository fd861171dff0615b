"""Templates and what every page gets: the user, the CSRF token, the dashboard line."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from opensti.core.errors import OpenSTIError, http_status
from opensti.web._auth import CSRF_FIELD, SignedIn, csrf_token
from opensti.web._forms import FieldErrors, values_of
from opensti.web._health import health_summary

__all__ = ["NAV", "flash", "form_failed", "redirect", "render", "templates_env", "ui_text"]

TEMPLATE_DIR = Path(__file__).parent / "templates"

#: (path, label, role needed) of the main navigation, in order: a link shows only to
#: a user whose role may open it (no link that answers 403).
NAV = (
    ("/", "Certificates", "read-only"),
    ("/accounts", "Certificate Authorities", "read-only"),
    ("/stipa", "STI-PA", "read-only"),
    ("/calls", "SIP Messages", "read-only"),
    ("/users", "Users", "admin"),
    ("/settings", "Settings", "admin"),
)

#: The services' messages serve the CLI too; in the web UI, the CLI's flags and
#: commands they mention become the page or field that does the same.
_CLI_WORDS = (
    (re.compile(r" \(--stipa\)"), ""),
    (
        re.compile(r"\(--token-file, or --token with --crl-url\)"),
        "(a token file, or the token and its CRL URL)",
    ),
    (re.compile(r" \(--eab-kid\)"), ""),
    (re.compile(r"\(set them with: opensti stipa set\)"), "(set them on the STI-PA page)"),
    (re.compile(r"\(opensti notify set-(smtp|contact)\)"), "(Settings, Email notifications)"),
    (
        re.compile(r"\(opensti cert set \S+ --clear-prefixes \.\.\.\)"),
        "(on that entry's page, Signing)",
    ),
    (re.compile(r"\(opensti cert set OTHER --default-signer\)"), "(on its page, Signing)"),
    (re.compile(r"\(--no-default-signer\)"), "(untick Default signer)"),
    (re.compile(r"\(run: opensti cert request (\S+)\)"), "(Renew now on its page)"),
    (re.compile(r"add users with `opensti user add`"), "an admin adds users on the Users page"),
    # Anything else that still names a command or a flag: dropped, not shown raw.
    (
        re.compile(
            r" ?\((?:run: |set them with: )?`?opensti [^)]*\)|`opensti [^`]*`| ?\(--[^)]*\)"
        ),
        "",
    ),
)


def ui_text(message: str) -> str:
    """A service message in the web UI's words (no CLI flags or commands)."""
    for pattern, words in _CLI_WORDS:
        message = pattern.sub(words, message)
    return message


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
    request.session.setdefault("flash", []).append([kind, ui_text(message)])


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
    errors = (
        {name: ui_text(message) for name, message in exc.errors.items()}
        if isinstance(exc, FieldErrors)
        else {}
    )
    return render(
        request,
        template,
        {**context, "values": values, error_key: ui_text(str(exc)), "errors": errors},
        status_code=http_status(exc),
    )
