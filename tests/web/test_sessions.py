"""Web sessions live in the store: signing out, a new password or an admin ends them
(a saved cookie is then worthless), and parallel wrong passwords meet the sign-in limit
one after another, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from opensti.app import App
from opensti.config import load_settings
from opensti.store import Role, Secret, create_user, set_user_password
from opensti.web import create_web
from tests.web.conftest import PASSWORD, USERS, csrf, sign_in

ALICE, OSCAR = USERS[Role.ADMIN], USERS[Role.OPERATOR]


def _client(web_app: App) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_web(web_app))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def _signed_in(web_app: App, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(web_app) as client:
        assert (await sign_in(client, name)).status_code == 303
        yield client


async def _can_see_settings(client: httpx.AsyncClient, cookie: str) -> bool:
    client.cookies.set("opensti_session", cookie)
    response = await client.get("/settings")
    return response.status_code == 200


async def test_sign_out_ends_the_session_for_a_saved_cookie(web_app: App) -> None:
    async with _signed_in(web_app, ALICE) as browser:
        saved = browser.cookies["opensti_session"]
        token = await csrf(browser, "/settings")
        assert (await browser.post("/logout", data={"csrf_token": token})).status_code == 303
        async with _client(web_app) as attacker:
            assert not await _can_see_settings(attacker, saved)
            # Nor can the saved cookie make an API token after sign-out.
            response = await attacker.post(
                "/settings/tokens",
                data={"csrf_token": token, "token_name": "stolen", "role": "admin"},
            )
            assert response.status_code in (303, 403)
            assert "stolen" not in response.text


async def test_a_new_password_ends_every_session(web_app: App) -> None:
    async with _signed_in(web_app, ALICE) as one, _signed_in(web_app, ALICE) as two:
        cookies = [one.cookies["opensti_session"], two.cookies["opensti_session"]]
        with web_app.database.session() as session:
            set_user_password(session, ALICE, Secret.from_text("a brand new password"))
        async with _client(web_app) as replay:
            for cookie in cookies:
                assert not await _can_see_settings(replay, cookie)


async def test_an_admin_ends_another_users_sessions(web_app: App) -> None:
    async with _signed_in(web_app, OSCAR) as operator:
        assert (await operator.get("/calls")).status_code == 200
        async with _signed_in(web_app, ALICE) as admin:
            token = await csrf(admin, "/settings")
            response = await admin.post(
                "/settings/sessions/end", data={"csrf_token": token, "session_user": OSCAR}
            )
            assert response.status_code == 303
            assert "1 web session(s) of oscar ended" in (await admin.get("/settings")).text
            # The admin's own session is untouched.
            assert (await admin.get("/settings")).status_code == 200
        refused = await operator.get("/calls")
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/login")


def test_the_cli_ends_sessions_and_changes_passwords(web_app: App, tmp_path: Path) -> None:
    async def signed_in_cookie() -> str:
        async with _signed_in(web_app, OSCAR) as browser:
            return browser.cookies["opensti_session"]

    async def works(cookie: str) -> bool:
        async with _client(web_app) as replay:
            replay.cookies.set("opensti_session", cookie)
            return (await replay.get("/calls")).status_code == 200

    settings = web_app.settings
    base = [str(Path(sys.executable).with_name("opensti")), "--data-dir", str(settings.data_dir)]
    env = {"OPENSTI_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    cookie = asyncio.run(signed_in_cookie())
    assert asyncio.run(works(cookie))
    done = subprocess.run(
        [*base, "user", "sign-out", OSCAR], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "1 web session(s) of oscar ended" in done.stderr
    assert not asyncio.run(works(cookie))
    cookie = asyncio.run(signed_in_cookie())
    done = subprocess.run(
        [*base, "user", "password", OSCAR, "--password-stdin"],
        env=env,
        input="another good password\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not asyncio.run(works(cookie))


@pytest.fixture(params=["sqlite", "postgresql"])
def throttled_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    """An App on SQLite and on PostgreSQL (skipped when PostgreSQL is missing)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'opensti.db'}"
        yield from _app(tmp_path, url)
        return
    server = request.getfixturevalue("postgres_server")
    with server.database() as url:
        yield from _app(tmp_path, url)


def _app(tmp_path: Path, url: str) -> Iterator[App]:
    settings = load_settings(data_dir=tmp_path / "data", database_url=url)
    with App.from_settings(settings, migrate=True) as application:
        with application.database.session() as session:
            create_user(session, name=ALICE, password=Secret.from_text(PASSWORD), role=Role.ADMIN)
        yield application


async def test_parallel_wrong_passwords_meet_the_limit(throttled_app: App) -> None:
    """Twenty guesses at once: only the free attempts are checked, the rest get 429.
    Two apps on one store stand for two nodes."""
    with App.from_settings(throttled_app.settings) as second_node:
        webs = [create_web(throttled_app), create_web(second_node)]
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=web, client=("192.0.2.50", 40000)),
                base_url="http://testserver",
            )
            for web in webs
        ]
        tokens = [await csrf(client, "/login") for client in clients]

        async def guess(i: int) -> int:
            client, token = clients[i % 2], tokens[i % 2]
            data = {"username": ALICE, "password": f"wrong {i}", "csrf_token": token}
            return (await client.post("/login", data=data)).status_code

        statuses = await asyncio.gather(*(guess(i) for i in range(20)))
        for client in clients:
            await client.aclose()
    assert sorted(set(statuses)) == [400, 429]
    assert statuses.count(400) == 5  # the free attempts of ThrottlePolicy
    assert statuses.count(429) == 15
