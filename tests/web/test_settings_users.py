"""Settings (admin only: mail, policy, API tokens) and ``opensti user add``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from opensti.app import App
from opensti.config import load_settings
from opensti.store import Role, Secret, authenticate_api_token, verify_user_password
from tests.web.conftest import SignIn, csrf


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
