"""Sign in, sessions, CSRF and roles."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from opensti.app import App
from opensti.store import Role
from opensti.web import create_web
from opensti.web._app import page_routers
from tests.web.conftest import USERS, SignIn, csrf, sign_in


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/certificates/new?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/certificates/new?x=1"


async def test_sign_in_then_out(client: httpx.AsyncClient) -> None:
    response = await sign_in(client, "alice")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # plain HTTP here; over HTTPS the flag is set
    page = await client.get("/")
    assert page.status_code == 200
    assert "alice (admin)" in page.text
    token = await csrf(client, "/")
    out = await client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert (await client.get("/")).status_code == 303


async def test_wrong_password_is_shown_in_the_form(client: httpx.AsyncClient) -> None:
    response = await sign_in(client, "alice", "not the password")
    assert response.status_code == 400
    assert "Wrong user name or password." in response.text
    assert 'value="alice"' in response.text  # the name is kept, the password is not
    assert "not the password" not in response.text


async def test_cookie_is_secure_over_https(web_app: App) -> None:
    transport = httpx.ASGITransport(app=create_web(web_app))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        response = await sign_in(http, "alice")
    assert "secure" in response.headers["set-cookie"].lower()


async def test_a_forged_cookie_is_ignored(client: httpx.AsyncClient) -> None:
    client.cookies.set("opensti_session", "eyJ1aWQiOjF9.forged.sig")
    assert (await client.get("/")).status_code == 303


async def test_post_without_csrf_token_is_refused(signed_in: SignIn) -> None:
    client = await signed_in(Role.ADMIN)
    response = await client.post("/logout", data={})
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert (await client.get("/")).status_code == 200  # still signed in


async def test_csrf_token_of_another_session_is_refused(web_app: App, signed_in: SignIn) -> None:
    client = await signed_in(Role.ADMIN)
    transport = httpx.ASGITransport(app=create_web(web_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        foreign = await csrf(other, "/login")
    response = await client.post("/logout", data={"csrf_token": foreign})
    assert response.status_code == 403


def _post_paths() -> list[str]:
    return sorted(
        route.path.replace("{name}", "x")
        for router in page_routers()
        for route in router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    )


async def test_every_post_route_checks_csrf(signed_in: SignIn) -> None:
    client = await signed_in(Role.ADMIN)
    paths = _post_paths()
    assert "/login" in paths
    assert "/logout" in paths
    for path in paths:
        response = await client.post(path, data={"csrf_token": "wrong"})
        assert response.status_code == 403, path


async def test_sign_in_session_gets_a_new_csrf_token(client: httpx.AsyncClient) -> None:
    before = await csrf(client, "/login")
    await sign_in(client, "alice")
    assert await csrf(client, "/") != before


@pytest.mark.parametrize(("role", "status"), [(Role.READ_ONLY, 403), (Role.OPERATOR, 200)])
async def test_roles(signed_in: SignIn, role: Role, status: int) -> None:
    client = await signed_in(role)
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/certificates/new")).status_code == status


async def test_open_redirect_refused(client: httpx.AsyncClient) -> None:
    token = await csrf(client, "/login")
    data = {"username": USERS[Role.ADMIN], "password": "correct horse battery"}
    response = await client.post(
        "/login", data={**data, "csrf_token": token, "next": "//evil.example/"}
    )
    assert response.headers["location"] == "/"


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _client(web: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=web, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_failed_sign_ins_are_throttled_per_user_and_address(web_app: App) -> None:
    clock = _Clock()
    web = create_web(web_app, clock=clock)
    async with _client(web, "192.0.2.1") as first, _client(web, "192.0.2.2") as second:
        for _ in range(5):
            assert (await sign_in(first, "alice", "wrong password")).status_code == 400
        # Locked for 2 s: even the right password is not checked.
        locked = await sign_in(first, "alice")
        assert locked.status_code == 429
        assert "Too many failed sign-ins: wait 2 s, then try again." in locked.text
        assert 'role="alert"' in locked.text
        # The user name is locked from another address too.
        assert (await sign_in(second, "alice")).status_code == 429
        # The delay grows: after 2 s one more failure locks for 4 s.
        clock.advance(2)
        assert (await sign_in(first, "alice", "wrong again")).status_code == 400
        clock.advance(3)
        assert "wait 1 s" in (await sign_in(second, "alice")).text
        clock.advance(1)
        # A success clears the counters: five more tries before the next lock.
        assert (await sign_in(second, "alice")).status_code == 303
        second.cookies.clear()
        for _ in range(4):
            assert (await sign_in(second, "alice", "wrong password")).status_code == 400
        assert (await sign_in(second, "alice")).status_code == 303


async def test_many_names_from_one_address_are_throttled(web_app: App) -> None:
    web = create_web(web_app, clock=_Clock())
    async with _client(web, "192.0.2.7") as guesser, _client(web, "192.0.2.8") as other:
        for name in ("a1", "a2", "a3", "a4", "a5"):
            assert (await sign_in(guesser, name, "guess")).status_code == 400
        assert (await sign_in(guesser, "rita")).status_code == 429
        assert (await sign_in(other, "rita")).status_code == 303


async def test_the_limit_holds_across_nodes(web_app: App) -> None:
    """Two nodes (each its own app and connection pool) on one database count together:
    failures spread over both lock the name on both, and a success on one clears it."""
    clock = _Clock()
    with App.from_settings(web_app.settings) as second_app:
        one, two = create_web(web_app, clock=clock), create_web(second_app, clock=clock)
        async with _client(one, "192.0.2.10") as first, _client(two, "192.0.2.11") as second:
            for node in (first, second, first, second, first):
                assert (await sign_in(node, "oscar", "wrong password")).status_code == 400
            refused = await sign_in(second, "oscar")
            assert refused.status_code == 429
            assert "wait 2 s" in refused.text
            clock.advance(2)
            assert (await sign_in(second, "oscar")).status_code == 303
            second.cookies.clear()
            for _ in range(4):
                assert (await sign_in(second, "oscar", "wrong password")).status_code == 400
            assert (await sign_in(second, "oscar")).status_code == 303
            # The first address kept its own three failures: two more lock it.
            for name in ("x1", "x2"):
                assert (await sign_in(first, name, "guess")).status_code == 400
            assert (await sign_in(first, "rita")).status_code == 429
