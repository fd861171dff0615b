"""Users in the web UI: an admin lists, adds, changes roles and disables users (never
the last admin); every user changes their own password, which signs out their other
sessions. The store's user functions do the work, as for ``opensti user ...``."""

from __future__ import annotations

import re

import httpx
import pytest

from opensti.app import App
from opensti.store import Role, get_user, list_users
from opensti.web import create_web
from tests.web.conftest import PASSWORD, SignIn, csrf, csrf_of, sign_in

# Users are listed and changed by store functions only these tests reach (tests/README.md).
pytestmark = pytest.mark.db_dialect


def _users(app: App) -> dict[str, tuple[str, bool]]:
    with app.database.read_session() as session:
        return {u.name: (u.role.value, u.enabled) for u in list_users(session)}


def _id(app: App, name: str) -> int:
    with app.database.read_session() as session:
        return get_user(session, name).id


async def test_an_admin_adds_a_user_with_every_error_at_once(
    signed_in: SignIn, web_app: App
) -> None:
    client = await signed_in(Role.ADMIN)
    page = (await client.get("/users")).text
    for name in ("alice", "oscar", "rita"):
        assert f'<th scope="row">{name}' in page
    token = csrf_of(page)
    bad = {"username": "no spaces", "role": "signer", "password": "short", "password2": "other"}
    refused = await client.post("/users", data={**bad, "csrf_token": token})
    assert refused.status_code == 400
    for field in ("username", "role", "password", "password2"):
        assert re.search(rf'id="f-{field}"[^>]*aria-invalid="true"', refused.text), field
    assert 'value="no spaces"' in refused.text
    assert 'value="short"' not in refused.text  # passwords are never sent back
    added = await client.post(
        "/users",
        data={
            "username": "olga",
            "role": "operator",
            "password": PASSWORD,
            "password2": PASSWORD,
            "csrf_token": token,
        },
    )
    assert added.status_code == 303
    assert _users(web_app)["olga"] == ("operator", True)
    transport = httpx.ASGITransport(app=create_web(web_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as olga:
        assert (await sign_in(olga, "olga")).status_code == 303


async def test_roles_change_and_the_last_admin_stays(signed_in: SignIn, web_app: App) -> None:
    client = await signed_in(Role.ADMIN)
    token = await csrf(client, "/users")
    rita = f"/users/{_id(web_app, 'rita')}"
    done = await client.post(rita, data={"role": "operator", "enabled": "on", "csrf_token": token})
    assert done.status_code == 303
    assert _users(web_app)["rita"] == ("operator", True)
    await client.post(rita, data={"role": "operator", "csrf_token": token})  # unticked: disabled
    assert _users(web_app)["rita"] == ("operator", False)
    alice = f"/users/{_id(web_app, 'alice')}"
    await client.post(alice, data={"role": "operator", "enabled": "on", "csrf_token": token})
    assert _users(web_app)["alice"] == ("admin", True)
    page = (await client.get("/users")).text
    assert "alice is the last enabled admin" in page


async def test_a_disabled_user_is_signed_out(signed_in: SignIn, web_app: App) -> None:
    transport = httpx.ASGITransport(app=create_web(web_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as rita:
        assert (await sign_in(rita, "rita")).status_code == 303
        assert (await rita.get("/")).status_code == 200
        admin = await signed_in(Role.ADMIN)
        token = await csrf(admin, "/users")
        await admin.post(
            f"/users/{_id(web_app, 'rita')}", data={"role": "read-only", "csrf_token": token}
        )
        assert (await rita.get("/")).status_code == 303


async def test_users_page_is_for_admins(signed_in: SignIn) -> None:
    client = await signed_in(Role.OPERATOR)
    assert (await client.get("/users")).status_code == 403
    assert 'href="/users"' not in (await client.get("/")).text


async def test_change_my_password_ends_my_other_sessions(web_app: App) -> None:
    web = create_web(web_app)

    def browser() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=web)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with browser() as laptop, browser() as phone:
        for client in (laptop, phone):
            assert (await sign_in(client, "rita")).status_code == 303
        token = await csrf(laptop, "/account/password")
        wrong = await laptop.post(
            "/account/password",
            data={
                "current": "not it",
                "password": "a new password",
                "password2": "a new password",
                "csrf_token": token,
            },
        )
        assert wrong.status_code == 400
        assert re.search(r'id="f-current"[^>]*aria-invalid="true"', wrong.text)
        changed = await laptop.post(
            "/account/password",
            data={
                "current": PASSWORD,
                "password": "a new password",
                "password2": "a new password",
                "csrf_token": token,
            },
        )
        assert changed.status_code == 303
        assert (await laptop.get("/")).status_code == 200  # this browser stays signed in
        assert (await phone.get("/")).status_code == 303  # the other one is signed out
    async with browser() as again:
        assert (await sign_in(again, "rita", "a new password")).status_code == 303
