"""First run: the one-time setup link creates the first admin, once, before it expires;
``opensti user setup-link`` prints one while no user exists."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from opensti.app import App
from opensti.cli.serve import browser_url
from opensti.config import load_settings
from opensti.core.errors import Conflict, NotFound
from opensti.store import (
    SETUP_TOKEN_TTL,
    Role,
    Secret,
    create_setup_token,
    get_user,
    verify_user_password,
)
from opensti.web import create_web
from tests.web.conftest import csrf


class _Clock:
    now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def empty_app(tmp_path: Path, database_url: str) -> Iterator[App]:
    settings = load_settings(data_dir=tmp_path / "data", database_url=database_url)
    with App.from_settings(settings, migrate=True) as application:
        yield application


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
async def browser(empty_app: App, clock: _Clock) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_web(empty_app, clock=clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def _token(app: App, now: dt.datetime) -> str:
    with app.database.session() as session:
        token, expires = create_setup_token(session, now=now)
    assert expires == now + SETUP_TOKEN_TTL
    return token.reveal_text()


async def _submit(client: httpx.AsyncClient, token: str, **fields: str) -> httpx.Response:
    data = {"username": "root", "password": "first admin pw", "password2": "first admin pw"}
    data.update(fields)
    form_token = await csrf(client, f"/setup?token={token}")
    return await client.post("/setup", data={**data, "token": token, "csrf_token": form_token})


@pytest.mark.db_dialect
async def test_the_link_creates_the_first_admin_once(
    browser: httpx.AsyncClient, empty_app: App, clock: _Clock
) -> None:
    token = _token(empty_app, clock.now)
    assert (await browser.get("/setup?token=not-the-token")).status_code == 404
    assert (await browser.get("/setup")).status_code == 404
    differ = await _submit(browser, token, password2="something else")
    assert differ.status_code == 400
    assert "the two passwords differ" in differ.text
    assert 'value="root"' in differ.text
    assert "first admin pw" not in differ.text
    made = await _submit(browser, token)
    assert made.status_code == 303
    assert "root (admin)" in (await browser.get("/")).text  # signed in
    with empty_app.database.read_session() as session:
        assert get_user(session, "root").role is Role.ADMIN
        assert verify_user_password(session, "root", Secret.from_text("first admin pw"))
    browser.cookies.clear()
    again = await browser.get(f"/setup?token={token}")
    assert again.status_code == 404
    assert "expired or used" in again.text
    with empty_app.database.session() as session, pytest.raises(Conflict):
        create_setup_token(session, now=clock.now)


@pytest.mark.db_dialect
async def test_an_expired_link_does_nothing(
    browser: httpx.AsyncClient, empty_app: App, clock: _Clock
) -> None:
    token = _token(empty_app, clock.now)
    form_token = await csrf(browser, f"/setup?token={token}")
    clock.now += SETUP_TOKEN_TTL
    assert (await browser.get(f"/setup?token={token}")).status_code == 404
    data = {"username": "late", "password": "a long password", "password2": "a long password"}
    refused = await browser.post("/setup", data={**data, "token": token, "csrf_token": form_token})
    assert refused.status_code == 404
    with empty_app.database.read_session() as session, pytest.raises(NotFound):
        get_user(session, "late")


@pytest.mark.db_dialect
async def test_a_newer_link_replaces_the_older(empty_app: App, clock: _Clock) -> None:
    older = _token(empty_app, clock.now)
    newer = _token(empty_app, clock.now)
    transport = httpx.ASGITransport(app=create_web(empty_app, clock=clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get(f"/setup?token={older}")).status_code == 404
        assert (await _submit(client, newer)).status_code == 303


@pytest.mark.integration
def test_setup_link_cli(tmp_path: Path) -> None:
    opensti = str(Path(sys.executable).with_name("opensti"))
    command = [opensti, "--data-dir", str(tmp_path / "data"), "user", "setup-link"]
    done = subprocess.run(
        [*command, "--url", "http://127.0.0.1:8080"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("http://127.0.0.1:8080/setup?token=")
    assert "works once" in done.stderr
    added = subprocess.run(
        [opensti, "--data-dir", str(tmp_path / "data"), "user", "add", "--password-stdin", "x"],
        input="a long password\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "a user exists already" in refused.stderr


@pytest.mark.parametrize(
    ("host", "public", "expected"),
    [
        ("127.0.0.1", None, "https://127.0.0.1:8443"),
        ("0.0.0.0", None, "https://localhost:8443"),  # noqa: S104 - the wildcard under test
        ("::", "https://sti.example.net/", "https://sti.example.net"),
        ("sti.example.net", None, "https://sti.example.net:8443"),
    ],
)
def test_serve_prints_a_link_a_browser_can_open(
    tmp_path: Path, host: str, public: str | None, expected: str
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", public_base_url=public)
    with App.from_settings(settings, migrate=True) as application:
        url = browser_url(application, "https", host, 8443)
    assert url == expected
