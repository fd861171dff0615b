"""Certificate Authorities and ACME accounts: add (register with EAB) or import one, and
the details to paste into the STI-PA portal (thumbprint, fingerprint, account URL)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import InvalidInput, OpenSTIError
from opensti.store import Secret
from opensti.web._deps import Admin, Operator, Viewer, backend
from opensti.web._forms import checkbox, optional, text, upload
from opensti.web._render import flash, form_failed, redirect, render

router = APIRouter()

_SECRETS = ("eab_hmac_key",)


def _accounts_context(app: Any) -> dict[str, Any]:
    return {
        "title": "Certificate Authorities",
        "cas": app.accounts.list_cas(),
        "accounts": app.accounts.list_accounts(),
    }


@router.get("/accounts")
async def accounts(request: Request, user: Viewer) -> Response:
    context = {**_accounts_context(backend(request)), "values": {}}
    return render(request, "accounts.html", context)


@router.post("/accounts/cas")
async def add_ca(request: Request, user: Admin) -> Response:
    """A custom CA by its ACME directory URL, with the ATIS profile defaults."""
    app = backend(request)
    form = await request.form()
    try:
        info = await run_in_threadpool(
            lambda: app.accounts.add_ca(
                text(form, "ca_name"),
                text(form, "directory_url"),
                staging_directory_url=optional(form, "staging_directory_url"),
                needs_eab=checkbox(form, "needs_eab"),
                terms_url=optional(form, "terms_url"),
                identifier_encoding=text(form, "identifier_encoding") or "padded",
                tkauth_field=text(form, "tkauth_field") or "atc",
                fingerprint_algorithm=text(form, "fingerprint_algorithm") or "jwk_thumbprint",
            )
        )
    except OpenSTIError as exc:
        context = _accounts_context(app)
        return form_failed(request, "accounts.html", context, exc, form)
    flash(request, f"CA {info.name} added: accounts can now be registered there.")
    return redirect("/accounts")


def _form_context(app: Any) -> dict[str, Any]:
    return {"title": "Add ACME account", "cas": app.accounts.list_cas()}


@router.get("/accounts/new")
async def new_account_page(request: Request, user: Operator) -> Response:
    app = backend(request)
    return render(request, "account_new.html", {**_form_context(app), "values": {}})


async def _create(app: Any, form: Any) -> Any:
    """Register a new account, or import one when a key file is given."""
    key_pem = await upload(form, "key_file", "account key file")
    staging = checkbox(form, "staging")
    if key_pem is not None:
        return await run_in_threadpool(
            lambda: app.accounts.import_account(
                text(form, "ca"),
                Secret(key_pem),
                account_url=optional(form, "account_url"),
                staging=staging,
                name=optional(form, "name"),
            )
        )
    if not checkbox(form, "agree_tos"):
        raise InvalidInput("agree to the CA's terms of service to register an account")
    hmac_key = optional(form, "eab_hmac_key")
    return await run_in_threadpool(
        lambda: app.accounts.add_account(
            text(form, "ca"),
            email=text(form, "email"),
            agree_tos=True,
            staging=staging,
            eab_kid=optional(form, "eab_kid"),
            eab_hmac_key=None if hmac_key is None else Secret.from_text(hmac_key),
            name=optional(form, "name"),
        )
    )


@router.post("/accounts/new")
async def add_account(request: Request, user: Operator) -> Response:
    app = backend(request)
    form = await request.form()
    try:
        info = await _create(app, form)
    except OpenSTIError as exc:
        return form_failed(request, "account_new.html", _form_context(app), exc, form, *_SECRETS)
    flash(request, f"ACME account {info.name} is ready ({info.status}) at {info.ca}.")
    return redirect(f"/accounts/{info.name}")


@router.get("/accounts/{name}")
async def account_page(request: Request, name: str, user: Viewer) -> Response:
    try:
        info = backend(request).accounts.show_account(name)
    except OpenSTIError as exc:
        context = {"title": "Not found", "message": str(exc)}
        return render(request, "error.html", context, status_code=404)
    return render(request, "account.html", {"title": f"Account {name}", "account": info})
