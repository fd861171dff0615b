"""Users (admin): list, add with a role and password, change a role, disable or enable;
and for every signed-in user, changing their own password. The store's user functions
do the work (the same as ``opensti user ...``): the last enabled admin stays one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import OpenSTIError
from opensti.store import (
    Role,
    Secret,
    change_user,
    create_user,
    list_users,
    set_user_password,
    verify_user_password,
)
from opensti.store._auth import check_password
from opensti.store._validate import check_email, check_name
from opensti.web._auth import sign_in
from opensti.web._deps import Admin, RowID, Viewer, backend
from opensti.web._forms import FormCheck, checkbox, optional, text
from opensti.web._render import flash, form_failed, redirect, render

router = APIRouter()

_SECRETS = ("password", "password2", "current")
#: The roles a user can have (signer is for API tokens).
ROLES = tuple(role.value for role in Role if role is not Role.SIGNER)


def _context(request: Request) -> dict[str, Any]:
    with backend(request).database.read_session() as session:
        users = [
            {
                "id": u.id,
                "name": u.name,
                "email": u.email,
                "role": u.role.value,
                "enabled": u.enabled,
            }
            for u in list_users(session)
        ]
    return {
        "title": "Users",
        "users": users,
        "roles": ROLES,
        "role_options": [(role, role) for role in ROLES],
        "values": {"role": "operator"},
    }


@router.get("/users")
async def users_page(request: Request, user: Admin) -> Response:
    return render(request, "users.html", _context(request))


def _role(check: FormCheck, value: str) -> Role | None:
    if value not in ROLES:
        check.fail("role", f"role {value!r} is not one of {', '.join(ROLES)}")
        return None
    return Role(value)


def _new_password(check: FormCheck, form: Any) -> Secret:
    """The new password, typed twice alike and of the store's length."""
    password = Secret.from_text(str(form.get("password", "")))
    check.field("password", check_password, password)
    if str(form.get("password", "")) != str(form.get("password2", "")):
        check.fail("password2", "the two passwords differ")
    return password


def _add(request: Request, form: Any) -> str:
    check = FormCheck()
    name = text(form, "username")
    check.field("username", check_name, name, "user")
    email = optional(form, "email")
    if email is not None:
        check.field("email", check_email, email)
    role = _role(check, text(form, "role"))
    password = _new_password(check, form)
    check.done()
    assert role is not None
    with backend(request).database.session() as session:
        create_user(session, name=name, password=password, role=role, email=email)
    return f"User {name} ({role.value}) added: they can sign in now."


@router.post("/users")
async def add_user(request: Request, user: Admin) -> Response:
    form = await request.form()
    try:
        done = await run_in_threadpool(_add, request, form)
    except OpenSTIError as exc:
        return form_failed(request, "users.html", _context(request), exc, form, *_SECRETS)
    flash(request, done)
    return redirect("/users")


def _user_name(request: Request, user_id: int) -> str:
    with backend(request).database.read_session() as session:
        return next((u.name for u in list_users(session) if u.id == user_id), "")


@router.post("/users/{user_id}")
async def change(request: Request, user_id: RowID, user: Admin) -> Response:
    """A new role and enabled state from the user's row."""
    form = await request.form()
    name = _user_name(request, user_id)
    check = FormCheck()
    role = _role(check, text(form, "role"))
    try:
        check.done()
        with backend(request).database.session() as session:
            changed = change_user(session, name, role=role, enabled=checkbox(form, "enabled"))
            state = "enabled" if changed.enabled else "disabled, signed out everywhere"
            flash(request, f"User {name}: {changed.role.value}, {state}.")
    except OpenSTIError as exc:
        flash(request, f"User {name or user_id} not changed: {exc}", "error")
    return redirect("/users")


@router.get("/account/password")
async def password_page(request: Request, user: Viewer) -> Response:
    context = {"title": "Change my password", "values": {}}
    return render(request, "password.html", context)


def _change_password(request: Request, name: str, form: Any) -> None:
    check = FormCheck()
    current = Secret.from_text(str(form.get("current", "")))
    with backend(request).database.read_session() as session:
        if verify_user_password(session, name, current) is None:
            check.fail("current", "the current password is not right")
    password = _new_password(check, form)
    check.done()
    with backend(request).database.session() as session:
        user = set_user_password(session, name, password)  # ends every session of the user
    sign_in(request, user)  # a fresh one for this browser


@router.post("/account/password")
async def change_password(request: Request, user: Viewer) -> Response:
    """Needs the current password; every other session of the user ends."""
    form = await request.form()
    try:
        await run_in_threadpool(_change_password, request, user.name, form)
    except OpenSTIError as exc:
        context = {"title": "Change my password"}
        return form_failed(request, "password.html", context, exc, form, *_SECRETS)
    flash(request, "Password changed; your other sessions are signed out.")
    return redirect("/")
