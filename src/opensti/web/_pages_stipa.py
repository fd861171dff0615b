"""STI-PA API credentials (write-only password, the iconectiv limits) and Test connection."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import OpenSTIError
from opensti.store import Secret
from opensti.store._validate import (
    MAX_STIPA_PASSWORD,
    MAX_STIPA_USER_ID,
    check_spc,
    check_stipa_password,
    check_stipa_user_id,
    check_url,
)
from opensti.web._deps import Operator, Viewer, backend
from opensti.web._forms import FormCheck, checkbox, optional, text
from opensti.web._render import flash, form_failed, redirect, render

router = APIRouter()


def _context(request: Request) -> dict[str, object]:
    return {
        "title": "STI-PA",
        "accounts": backend(request).accounts.list_stipa(),
        "max_user_id": MAX_STIPA_USER_ID,
        "max_password": MAX_STIPA_PASSWORD,
    }


@router.get("/stipa")
async def stipa_page(request: Request, user: Viewer) -> Response:
    return render(request, "stipa.html", {**_context(request), "values": {}})


def _check(request: Request, form: Any) -> None:
    """Every field through the store's own checks, reported together."""
    check = FormCheck()
    spc_pattern = backend(request).settings.spc_pattern
    check.field("account_id", check_spc, text(form, "account_id"), spc_pattern)
    check.field("user_id", check_stipa_user_id, str(form.get("user_id", "")))
    password = Secret.from_text(str(form.get("password", "")))
    check.field("password", check_stipa_password, password)
    base_url = optional(form, "base_url")
    if base_url is not None:
        check.field("base_url", check_url, base_url, "STI-PA base URL")
    check.done()


@router.post("/stipa")
async def set_stipa(request: Request, user: Operator) -> Response:
    """Save, then sign in with them: credentials the STI-PA refuses are saved (so
    they can be corrected or retried when the STI-PA is back) but reported as failing,
    never as a green "saved"."""
    form = await request.form()
    accounts = backend(request).accounts
    try:
        _check(request, form)
        info = await run_in_threadpool(
            lambda: accounts.set_stipa(
                account_id=text(form, "account_id"),
                user_id=str(form.get("user_id", "")),  # spaces may belong to it: not trimmed
                password=Secret.from_text(str(form.get("password", ""))),
                staging=checkbox(form, "staging"),
                base_url=optional(form, "base_url"),
            )
        )
    except OpenSTIError as exc:
        return form_failed(request, "stipa.html", _context(request), exc, form, "password")
    where = f"{info.account_id} ({info.environment})"
    try:
        await run_in_threadpool(
            lambda: accounts.test_stipa(info.account_id, staging=info.environment == "staging")
        )
    except OpenSTIError as exc:
        flash(
            request,
            f"STI-PA credentials for {where} saved, but signing in to {info.base_url} with "
            f"them failed: {exc}. Correct them and save again (certificates cannot be "
            "requested with them).",
            "error",
        )
        return redirect("/stipa")
    flash(request, f"STI-PA credentials for {where} saved; signed in at {info.base_url}.")
    return redirect("/stipa")


@router.post("/stipa/test")
async def test_stipa(request: Request, user: Operator) -> Response:
    form = await request.form()
    account_id = text(form, "account_id")
    staging = text(form, "environment") == "staging"
    try:
        info = await run_in_threadpool(
            lambda: backend(request).accounts.test_stipa(account_id, staging=staging)
        )
    except OpenSTIError as exc:
        flash(request, f"STI-PA {account_id}: connection failed: {exc}", "error")
        return redirect("/stipa")
    flash(request, f"STI-PA {info.account_id} ({info.environment}): signed in at {info.base_url}.")
    return redirect("/stipa")
