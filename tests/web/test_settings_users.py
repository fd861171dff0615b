"""Settings (admin only: mail, policy, API tokens) and ``opensti user add``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from opensti.api import create_api
from opensti.app import App
from opensti.config import load_settings
from opensti.lifecycle.reconcile import get_renew_before
from opensti.store import (
    Role,
    Secret,
    authenticate_api_token,
    create_api_token,
    create_user,
    verify_user_password,
)
from opensti.web import create_web
from tests.web.conftest import PASSWORD, SignIn, csrf, sign_in


async def test_settings_are_for_admins(signed_in: SignIn) -> None:
    client = await signed_in(Role.OPERATOR)
    assert (await client.get("/settings")).status_code == 403


async def test_mail_settings_error_keeps_input(signed_in: SignIn, web_app: App) -> None:
    client = await signed_in(Role.ADMIN)
    data = {
        "host": "smtp.example.net",
        "port": "587",
        "security": "none",
        "username": "mailer",
        "smtp_password": "hunter22",
        "from_address": "opensti@example.net",
        "contacts": "noc@example.net",
        "at_risk_hours": "24",
        "summary": "off",
    }
    token = await csrf(client, "/settings")
    refused = await client.post("/settings/mail", data={**data, "csrf_token": token})
    assert refused.status_code == 400
    assert "SMTP authentication needs starttls or ssl" in refused.text
    assert 'value="mailer"' in refused.text
    assert "hunter22" not in refused.text
    saved = await client.post(
        "/settings/mail", data={**data, "security": "starttls", "csrf_token": token}
    )
    assert saved.status_code == 303
    page = await client.get("/settings")
    assert 'value="noc@example.net"' in page.text
    assert "Set; leave empty to keep it." in page.text


async def test_api_token_is_shown_once_and_revoked(
    signed_in: SignIn, web_app: App, client: httpx.AsyncClient
) -> None:
    await signed_in(Role.ADMIN)
    token = await csrf(client, "/settings")
    created = await client.post(
        "/settings/tokens", data={"token_name": "ci", "role": "operator", "csrf_token": token}
    )
    value = created.text.split('id="new-token" type="text" readonly value="')[1].split('"')[0]
    now = web_app.certificates.clock()
    with web_app.database.read_session() as session:
        row = authenticate_api_token(session, Secret.from_text(value), now=now)
        assert row is not None
        assert row.role is Role.OPERATOR
    assert value not in (await client.get("/settings")).text
    revoked = await client.post("/settings/tokens/ci/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    with web_app.database.read_session() as session:
        assert authenticate_api_token(session, Secret.from_text(value), now=now) is None


@pytest.mark.integration
def test_user_add_cli(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    opensti = Path(sys.executable).with_name("opensti")
    command = [str(opensti), "--data-dir", str(data_dir), "user", "add"]
    done = subprocess.run(
        [*command, "--role", "admin", "--password-stdin", "root"],
        input=b"a long password\n",
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    refused = subprocess.run(
        [*command, "--role", "boss", "--password-stdin", "other"],
        input=b"a long password\n",
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert b"role 'boss' is not one of" in refused.stderr
    with (
        App.from_settings(load_settings(data_dir=data_dir)) as app,
        app.database.read_session() as session,
    ):
        user = verify_user_password(session, "root", Secret.from_text("a long password"))
        assert user is not None
        assert user.role is Role.ADMIN


async def test_renewal_policy_is_checked_and_saved(signed_in: SignIn, web_app: App) -> None:
    client = await signed_in(Role.ADMIN)
    token = await csrf(client, "/settings")

    async def save(value: str) -> httpx.Response:
        return await client.post(
            "/settings/renewal", data={"renew_before": value, "csrf_token": token}
        )

    for bad, message in (
        ("soon", "&#39;soon&#39; is not a duration: write e.g. 30d, 36h, 90m or 45s"),
        ("400d", "at least 1 second and at most 365 days"),
        ("0s", "at least 1 second and at most 365 days"),
    ):
        refused = await save(bad)
        assert refused.status_code == 400
        assert message in refused.text
        assert f'value="{bad}"' in refused.text  # the input is kept
        with web_app.database.read_session() as session:
            assert get_renew_before(session) is None
    saved = await save("36h")
    assert saved.status_code == 303
    with web_app.database.read_session() as session:
        assert get_renew_before(session) == 36 * 3600
    page = await client.get("/settings")
    assert "certificates renew 36h before expiry" in page.text
    assert 'id="f-renew_before" name="renew_before" type="text" value="36h"' in page.text
    assert (await save("")).status_code == 303
    with web_app.database.read_session() as session:
        assert get_renew_before(session) is None


async def test_the_api_setting_goes_through_the_same_check(web_app: App) -> None:
    with web_app.database.session() as session:
        _, value = create_api_token(session, name="admin-api", role=Role.ADMIN)
    headers = {"authorization": f"Bearer {value.reveal_text()}"}
    transport = httpx.ASGITransport(app=create_api(web_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        url = "/api/v1/settings/lifecycle.renew_before"
        refused = await api.put(url, json={"value": -5}, headers=headers)
        assert refused.status_code == 400
        assert "at least 1 second" in refused.text
        words = await api.put(url, json={"value": "two days"}, headers=headers)
        assert words.status_code == 400
        saved = await api.put(url, json={"value": 7200}, headers=headers)
        assert saved.json()["value"] == 7200
    with web_app.database.read_session() as session:
        assert get_renew_before(session) == 7200


async def test_repository_base_url_says_where_it_comes_from(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, public_base_url="https://cr.example.net/")
    with App.from_settings(settings) as app:
        with app.database.session() as session:
            create_user(session, name="root", password=Secret.from_text(PASSWORD), role=Role.ADMIN)
        transport = httpx.ASGITransport(app=create_web(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            assert (await sign_in(client, "root")).status_code == 303
            page = (await client.get("/settings")).text
    assert '<span class="mono">https://cr.example.net/sti-cr/</span>' in page
    assert "<code>OPENSTI_PUBLIC_BASE_URL</code>" in page
