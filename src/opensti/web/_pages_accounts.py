"""Certificate Authorities and ACME accounts: add (register with EAB) or import one, and
the details to paste into the STI-PA portal (thumbprint, fingerprint, account URL)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import OpenSTIError
from opensti.store import Secret
from opensti.store._validate import check_eab_hmac_key, check_email
from opensti.web._deps import Admin, Operator, Viewer, backend
from opensti.web._forms import FieldErrors, FormCheck, checkbox, optional, text, upload
from opensti.web._render import flash, form_failed, redirect, render

router = APIRouter()

_SECRETS = ("eab_hmac_key",)


#: What the fingerprint the STI-PA binds tokens to is a hash of, per CA profile.
FINGERPRINT_OF = {
    "jwk_thumbprint": "SHA-256 JWK thumbprint of the account key (RFC 9448)",
    "spki_sha256": "SHA-256 of the account key's SPKI",
}


def fingerprint_methods(app: Any) -> dict[str, str]:
    """Each CA's fingerprint method in words, by CA name."""
    return {
        ca.name: FINGERPRINT_OF.get(ca.fingerprint_algorithm, ca.fingerprint_algorithm)
        for ca in app.accounts.list_cas()
    }


def _accounts_context(app: Any) -> dict[str, Any]:
    return {
        "title": "Certificate Authorities",
        "cas": app.accounts.list_cas(),
        "accounts": app.accounts.list_accounts(),
        "methods": fingerprint_methods(app),
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


def _check_registration(app: Any, form: Any) -> Secret | None:
    """Every field of the register form through the store's own checks, all at once;
    the EAB HMAC key as a secret."""
    check = FormCheck()
    check.field("email", check_email, text(form, "email"))
    if not checkbox(form, "agree_tos"):
        check.fail("agree_tos", "agree to the CA's terms of service to register an account")
    kid, hmac_text = optional(form, "eab_kid"), optional(form, "eab_hmac_key")
    hmac_key = (
        None
        if hmac_text is None
        else check.field("eab_hmac_key", check_eab_hmac_key, Secret.from_text(hmac_text))
    )
    ca = next((c for c in app.accounts.list_cas() if c.name == text(form, "ca")), None)
    if ca is None:
        check.fail("ca", f"choose a Certificate Authority ({text(form, 'ca')!r} is not one)")
    elif ca.needs_eab and kid is None and hmac_text is None:
        check.fail("eab_kid", f"{ca.name} requires External Account Binding: give the EAB key id")
        check.fail(
            "eab_hmac_key", f"{ca.name} requires External Account Binding: give the EAB HMAC key"
        )
    elif (kid is None) != (hmac_text is None):
        missing = "eab_kid" if kid is None else "eab_hmac_key"
        check.fail(missing, "give both the EAB key id and the EAB HMAC key, or neither")
    check.done()
    return hmac_key


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
    if checkbox(form, "import"):
        raise FieldErrors({"key_file": "choose the account key file (PEM) to import"})
    hmac_key = await run_in_threadpool(_check_registration, app, form)
    return await run_in_threadpool(
        lambda: app.accounts.add_account(
            text(form, "ca"),
            email=text(form, "email"),
            agree_tos=True,
            staging=staging,
            eab_kid=optional(form, "eab_kid"),
            eab_hmac_key=hmac_key,
            name=optional(form, "name"),
        )
    )


def _eab_refusal(exc: OpenSTIError) -> OpenSTIError:
    """A CA that wants EAB (RFC 8555 ``externalAccountRequired``) points at the EAB
    fields, so they are marked and in view even for a CA not listed as needing it."""
    said = str(exc)
    if "externalAccountRequired" in said or "External Account Binding" in said:
        return FieldErrors({"eab_kid": said})
    return exc


@router.post("/accounts/new")
async def add_account(request: Request, user: Operator) -> Response:
    app = backend(request)
    form = await request.form()
    try:
        info = await _create(app, form)
    except OpenSTIError as exc:
        error = _eab_refusal(exc)
        return form_failed(request, "account_new.html", _form_context(app), error, form, *_SECRETS)
    flash(request, f"ACME account {info.name} is ready ({info.status}) at {info.ca}.")
    return redirect(f"/accounts/{info.name}")


@router.get("/accounts/{name}")
async def account_page(request: Request, name: str, user: Viewer) -> Response:
    app = backend(request)
    try:
        info = app.accounts.show_account(name)
    except OpenSTIError as exc:
        context = {"title": "Not found", "message": str(exc)}
        return render(request, "error.html", context, status_code=404)
    method = fingerprint_methods(app).get(info.ca, "")
    context = {"title": f"Account {name}", "account": info, "method": method}
    return render(request, "account.html", context)
