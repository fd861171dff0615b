"""A real App (SQLite in a temp dir) with one user per role, and an httpx client on the
web UI through ASGITransport (no socket). ``signed_in(role)`` returns a client with a
session; ``csrf(client, path)`` reads the token from a page's form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from opensti.app import App
from opensti.config import load_settings
from opensti.store import Role, Secret, create_user
from opensti.web import create_web

PASSWORD = "correct horse battery"
USERS = {Role.ADMIN: "alice", Role.OPERATOR: "oscar", Role.READ_ONLY: "rita"}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web_app(tmp_path: Path, database_url: str) -> Iterator[App]:
    settings = load_settings(data_dir=tmp_path / "data", database_url=database_url)
    with App.from_settings(settings, migrate=True) as application:
        with application.database.session() as session:
            for role, name in USERS.items():
                create_user(session, name=name, password=Secret.from_text(PASSWORD), role=role)
        yield application


@pytest.fixture
async def client(web_app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_web(web_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    token = await csrf(client, "/login")
    return await client.post(
        "/login", data={"username": name, "password": password, "csrf_token": token, "next": "/"}
    )


SignIn = Callable[[Role], Awaitable[httpx.AsyncClient]]


@pytest.fixture
def signed_in(client: httpx.AsyncClient) -> SignIn:
    async def as_role(role: Role) -> httpx.AsyncClient:
        response = await sign_in(client, USERS[role])
        assert response.status_code == 303, response.text
        return client

    return as_role
