"""The Settings page shows the STI-VS's trust list (anchors loaded, skipped and why)
and the x5u and RSA CA policies in force (issue 13)."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import httpx
import pytest

from opensti.app import App
from opensti.sandbox.pki import DemoPKI
from opensti.store import Role
from opensti.verification import TrustStore, VerificationService, X5UFetcher
from opensti.web import create_web
from tests._sti_ca_chains import NullParamPKI
from tests.web.conftest import USERS, sign_in

BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB!!not base64\n-----END CERTIFICATE-----\n"


@pytest.fixture(autouse=True)
def _policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read by the ``web_app`` fixture's settings, as ``opensti serve`` reads them."""
    monkeypatch.setenv("OPENSTI_X5U_PRIVATE_HOSTS", "sti-cr.lab,10.0.0.0/8")
    monkeypatch.setenv("OPENSTI_X5U_DENY_HOSTS", "*.bad.example")
    monkeypatch.setenv("OPENSTI_VERIFY_RSA_CA", "false")


async def _settings_page(web_app: App, verifier: VerificationService | None) -> str:
    transport = httpx.ASGITransport(app=create_web(web_app, verifier=verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await sign_in(client, USERS[Role.ADMIN])).status_code == 303
        page = await client.get("/settings")
    assert page.status_code == 200
    return html.unescape(page.text)


async def test_settings_show_the_trust_list_and_the_policies(web_app: App, tmp_path: Path) -> None:
    bundle = tmp_path / "sti-ca-roots.pem"
    ordinary = DemoPKI(dt.datetime.now(dt.UTC))
    bundle.write_bytes(NullParamPKI.create().root_pem + BROKEN_PEM + ordinary.root.pem)
    async with X5UFetcher() as fetcher:
        verifier = VerificationService(fetcher, TrustStore(source=bundle))
        page = await _settings_page(web_app, verifier)
    assert '<span id="anchors-loaded">2</span> loaded' in page
    assert '<span id="anchors-skipped">1</span> skipped' in page
    assert f"{bundle}: a PEM block that is not base64" in page
    assert "<dd>sti-cr.lab, 10.0.0.0/8</dd>" in page
    assert "<dd>*.bad.example</dd>" in page
    assert "<dt>http:// x5u</dt><dd>refused</dd>" in page
    assert "<dt>RSA-signed CA certificates</dt><dd>refused</dd>" in page


async def test_settings_without_verification(web_app: App) -> None:
    page = await _settings_page(web_app, None)
    assert "verification is not offered" in page
