"""STI-PA API credentials (write-only password, the iconectiv limits) and Test connection."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import OpenSTIError
from opensti.store import Secret
from opensti.store._validate import MAX_STIPA_PASSWORD, MAX_STIPA_USER_ID
from opensti.web._deps import Operator, Viewer, backend
from opensti.web._forms import checkbox, optional, text
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


@router.post("/stipa")
async def set_stipa(request: Request, user: Operator) -> Response:
    form = await request.form()
    try:
        info = await run_in_threadpool(
            lambda: backend(request).accounts.set_stipa(
                account_id=text(form, "account_id"),
                user_id=str(form.get("user_id", "")),  # spaces may belong to it: not trimmed
                password=Secret.from_text(str(form.get("password", ""))),
                staging=checkbox(form, "staging"),
                base_url=optional(form, "base_url"),
            )
        )
    except OpenSTIError as exc:
        return form_failed(request, "stipa.html", _context(request), exc, form, "password")
    flash(request, f"STI-PA credentials for {info.account_id} ({info.environment}) saved.")
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
