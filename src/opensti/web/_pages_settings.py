"""Settings: SMTP and the technical contact (with a test email), the notification
policy, the repository base URL, API tokens (create shows the value once; revoke), who
may use the STIR API, and ending a user's web sessions."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import InvalidInput, OpenSTIError
from opensti.lifecycle.notify import (
    Notifier,
    NotifyPolicy,
    SMTPSecurity,
    SMTPSettings,
    SummaryPeriod,
    get_contacts,
    get_policy,
    load_smtp_settings,
    save_smtp_settings,
    set_contacts,
    set_policy,
)
from opensti.lifecycle.reconcile import get_renew_before, set_renew_before
from opensti.store import (
    Role,
    Secret,
    create_api_token,
    end_user_sessions,
    get_user,
    list_api_tokens,
    revoke_api_token,
)
from opensti.web._deps import Admin, backend
from opensti.web._forms import duration, duration_text, optional, text
from opensti.web._render import flash, form_failed, redirect, render

router = APIRouter()
_E = TypeVar("_E", bound=StrEnum)


def _context(request: Request) -> dict[str, Any]:
    app = backend(request)
    with app.database.read_session() as session:
        smtp = load_smtp_settings(session, app.box)
        values: dict[str, Any] = {} if smtp is None else dict(smtp.public())
        values["contacts"] = ", ".join(get_contacts(session))
        policy = get_policy(session)
        tokens = list(list_api_tokens(session))
        signers = sum(1 for t in tokens if t.role is Role.SIGNER and not t.revoked)
        renew_before = get_renew_before(session)
    values.update(
        at_risk_hours=f"{policy.at_risk_hours:g}",
        summary=str(policy.summary),
        renew_before=duration_text(renew_before),
    )
    return {
        "title": "Settings",
        "values": {k: "" if v is None else str(v) for k, v in values.items()},
        "has_password": smtp is not None and smtp.password is not None,
        "tokens": tokens,
        "public_base_url": app.settings.public_base_url,
        "roles": [role.value for role in Role],
        "verification": _verification(request),
        "stir": _stir_access(app.settings, signers),
    }


def _verification(request: Request) -> dict[str, Any]:
    """The STI-VS's trust list (loaded / skipped and why) and its x5u and RSA policies."""
    settings = backend(request).settings
    verifier = getattr(request.app.state, "verifier", None)
    trust = verifier.trust if verifier is not None else None
    return {
        "enabled": trust is not None,
        "source": str(trust.source or "") if trust else "",
        "loaded": trust.anchors_loaded if trust else 0,
        "skipped": [s.describe() for s in trust.anchors_skipped] if trust else [],
        "allow_http": settings.x5u_allow_http,
        "private_hosts": ", ".join(settings.x5u_private_hosts),
        "deny_hosts": ", ".join(settings.x5u_deny_hosts),
        "rsa_ca": settings.verify_rsa_ca,
    }


def _stir_access(settings: Any, signer_tokens: int) -> dict[str, Any]:
    """Who may use the STIR API, as the server's configuration says (read-only here)."""
    return {
        "signer_tokens": signer_tokens,
        "allow": settings.stir_allow_networks,
        "client_ca": settings.stir_client_ca_file,
        "sti_cr_listen": settings.sti_cr_listen,
        "proxies": settings.trusted_proxies,
    }


@router.get("/settings")
async def settings_page(request: Request, user: Admin) -> Response:
    return render(request, "settings.html", _context(request))


def _number(form: FormData, name: str, what: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text(form, name))
    except ValueError:
        raise InvalidInput(f"{what} must be a number") from None


def _choice(cls: type[_E], value: str, what: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(member.value for member in cls)
        raise InvalidInput(f"{what} {value!r} is not one of {choices}") from None


def _smtp(form: FormData, previous: SMTPSettings | None) -> SMTPSettings:
    password = optional(form, "smtp_password")
    username = optional(form, "username")
    kept = previous.password if previous is not None and username else None
    return SMTPSettings(
        host=text(form, "host"),
        from_address=text(form, "from_address"),
        port=_number(form, "port", "the SMTP port", int),
        security=_choice(SMTPSecurity, text(form, "security") or "starttls", "SMTP security"),
        username=username,
        password=Secret.from_text(password) if password else kept,
    )


@router.post("/settings/mail")
async def save_mail(request: Request, user: Admin) -> Response:
    app = backend(request)
    form = await request.form()
    try:
        with app.database.session() as session:
            smtp = _smtp(form, load_smtp_settings(session, app.box))
            contacts = [a.strip() for a in text(form, "contacts").split(",") if a.strip()]
            save_smtp_settings(session, app.box, smtp)
            set_contacts(session, contacts)
            set_policy(
                session,
                NotifyPolicy(
                    at_risk_hours=_number(form, "at_risk_hours", "the at-risk threshold", float),
                    summary=_choice(SummaryPeriod, text(form, "summary") or "off", "summary"),
                ),
            )
    except (OpenSTIError, ValueError) as exc:
        error = exc if isinstance(exc, OpenSTIError) else InvalidInput(str(exc))
        return form_failed(
            request, "settings.html", _context(request), error, form, "smtp_password"
        )
    flash(request, "Mail and notification settings saved.")
    return redirect("/settings")


@router.post("/settings/renewal")
async def save_renewal(request: Request, user: Admin) -> Response:
    """The global renewal margin, through the same check as the API's setting."""
    app = backend(request)
    form = await request.form()
    try:
        margin = duration(form, "renew_before", "the renewal margin")
        with app.database.session() as session:
            set_renew_before(session, margin)
    except OpenSTIError as exc:
        return form_failed(request, "settings.html", _context(request), exc, form)
    if margin is None:
        flash(
            request, "Renewal policy saved: each certificate renews with a third of its life left."
        )
    else:
        margin_text = duration_text(margin.total_seconds())
        flash(request, f"Renewal policy saved: certificates renew {margin_text} before expiry.")
    return redirect("/settings#renewal")


@router.post("/settings/mail/test")
async def test_mail(request: Request, user: Admin) -> Response:
    app = backend(request)
    try:
        sent = await Notifier(app.database, app.box).send_test(now=request.app.state.clock())
    except OpenSTIError as exc:
        flash(request, f"Test email not sent: {exc}", "error")
    else:
        flash(request, f"Test email sent to {', '.join(sent)}.")
    return redirect("/settings")


@router.post("/settings/tokens")
async def create_token(request: Request, user: Admin) -> Response:
    app = backend(request)
    form = await request.form()
    try:
        role = _choice(Role, text(form, "role"), "role")
        with app.database.session() as session:
            _, value = create_api_token(
                session, name=text(form, "token_name"), role=role, user_id=user.id
            )
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        error = InvalidInput(f"role {text(form, 'role')!r} is not one of {roles}")
        return form_failed(request, "settings.html", _context(request), error, form)
    except OpenSTIError as exc:
        return form_failed(request, "settings.html", _context(request), exc, form)
    context = {**_context(request), "new_token": value.reveal_text()}
    context["new_token_name"] = text(form, "token_name")
    return render(request, "settings.html", context)


@router.get("/settings/tokens/{name}/revoke")
async def revoke_token_page(request: Request, name: str, user: Admin) -> Response:
    """The confirmation step: what revoking means for whoever uses the token."""
    with backend(request).database.read_session() as session:
        token = next((t for t in list_api_tokens(session) if t.name == name), None)
        if token is None or token.revoked:
            context = {"title": "Not found", "message": f"no active API token {name!r}"}
            return render(request, "error.html", context, status_code=404)
        role = token.role.value
    context = {
        "title": f"Revoke API token {name}",
        "message": f"Every client using this {role} token is refused from now on "
        "(an SBC signing with it stops getting Identity headers). This cannot be undone.",
        "action": f"/settings/tokens/{name}/revoke",
        "button": f"Revoke token {name}",
        "cancel": "/settings#tokens",
    }
    return render(request, "confirm.html", context)


@router.post("/settings/tokens/{name}/revoke")
async def revoke_token(request: Request, name: str, user: Admin) -> Response:
    app = backend(request)
    try:
        with app.database.session() as session:
            revoke_api_token(session, name)
    except OpenSTIError as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, f"API token {name} revoked.")
    return redirect("/settings#tokens")


@router.post("/settings/sessions/end")
async def end_sessions(request: Request, user: Admin) -> Response:
    """An admin signs a user out everywhere (every node: the sessions are in the store)."""
    app = backend(request)
    form = await request.form()
    name = text(form, "session_user")
    try:
        with app.database.session() as session:
            ended = end_user_sessions(session, get_user(session, name).id)
    except OpenSTIError as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, f"{ended} web session(s) of {name} ended.")
    return redirect("/settings#sessions")
