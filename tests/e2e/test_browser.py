"""The seed workflows in a browser: sign in, add an ACME account with EAB and copy its
thumbprint, set STI-PA credentials, add two entries and watch them become active,
renew one, see which certificate signed a call; and the errors shown in the forms."""

from __future__ import annotations

from typing import Any

import pytest

from opensti.calls import CallLog
from opensti.sandbox.config import DEMO_PASSWORD
from tests.e2e.conftest import ADMIN, PASSWORD, SCREENSHOTS
from tests.lifecycle.acquire_support import World

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def sign_in(page: Any, server: str, password: str = PASSWORD) -> None:
    page.goto(f"{server}/")
    assert page.url.startswith(f"{server}/login")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_wrong_password_is_shown(server: str, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, server, password="not it")
    assert page.get_by_role("alert").inner_text().endswith("Wrong user name or password.")
    assert page.get_by_label("User name").input_value() == ADMIN
    shot(page, "sign-in")


def test_seed_workflows(server: str, browser_page: Any, world: World) -> None:
    page = browser_page
    world.add_sandbox_ca()
    sign_in(page, server)
    assert "No certificate entries yet" in page.locator("#health").inner_text()

    # ACME account with EAB; the thumbprint is copied with the Copy button.
    kid, hmac_key = world.eab()
    page.get_by_role("link", name="Certificate Authorities").click()
    page.get_by_role("link", name="Add account").click()
    page.get_by_label("Certificate Authority").select_option("sandbox")
    page.get_by_label("Contact email").fill("ops@example.net")
    page.get_by_label("I agree to the CA's terms of service").check()
    page.get_by_text("Advanced").click()
    page.get_by_label("Account name").fill("main")
    page.get_by_label("EAB key id").fill(kid)
    page.get_by_label("EAB HMAC key").fill(hmac_key.reveal_text())
    page.get_by_role("button", name="Add account").click()
    assert page.url == f"{server}/accounts/main"
    thumbprint = world.app.accounts.show_account("main").thumbprint
    assert page.get_by_label("JWK thumbprint (RFC 7638)").input_value() == thumbprint
    copy = page.locator("button[data-copy=thumbprint]")
    copy.click()
    assert page.evaluate("navigator.clipboard.readText()") == thumbprint
    shot(page, "account")

    # STI-PA: an over-limit password is refused in the form, then the real one is saved.
    page.get_by_role("link", name="STI-PA").click()
    page.get_by_label("Account id (primary OCN)").fill("123H")
    page.get_by_label("API user id").fill("demo")
    page.get_by_label("API password").fill("p" * 190)
    page.get_by_text("Advanced").click()
    page.get_by_label("Base URL").fill(world.sandbox.stipa_base_url)
    page.get_by_role("button", name="Save").click()
    assert "password has 190 characters: at most 189" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("API user id").input_value() == "demo"
    page.get_by_label("API password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Test connection").click()
    assert "signed in at" in page.locator(".flash").inner_text()
    shot(page, "stipa")

    # Two entries, each requested at once: both become active.
    for name, spc in (("east", "123H"), ("west", "456J")):
        page.get_by_role("link", name="Certificates").first.click()
        page.get_by_role("link", name="Add entry").click()
        page.locator("#f-name").fill(name)
        page.get_by_label("SPC (SPID / OCN)").fill(spc)
        page.get_by_label("STI-PA account").select_option("123H")
        page.get_by_role("button", name="Add entry").click()
        assert f"New certificate for {name} is active" in page.locator("main").inner_text()
    page.get_by_role("link", name="Certificates").first.click()
    assert page.locator("table .badge.active").count() == 2
    assert "All 2 certificate entries are healthy" in page.locator("#health").inner_text()
    shot(page, "certificates")

    # Renew now: a new active certificate, the old one superseded.
    page.get_by_role("button", name="Renew east now").click()
    assert "New certificate for east is active" in page.locator("main").inner_text()
    assert page.locator("td .badge.superseded").count() == 1
    shot(page, "entry")

    # A call signed with the east entry shows its certificate.
    signed = world.app.signing_service().sign("12025550100", "12025550199", entry="east")
    with CallLog(world.app.database) as log:
        log.record_signed(signed, call_id="e2e-call-1@example.net")
        assert log.flush()
    page.get_by_role("link", name="SIP Messages").click()
    shot(page, "sip-messages")
    page.get_by_role("link", name="Show the certificate of call e2e-call-1@example.net").click()
    certificate = page.locator("#certificate").inner_text()
    assert "123H" in certificate
    assert page.get_by_label("SHA-256 fingerprint").input_value() == (
        world.app.certificates.show_entry("east").entry.active.fingerprint  # type: ignore[union-attr]
    )
    assert "BEGIN CERTIFICATE" in page.locator("pre.pem").inner_text()
    shot(page, "call-certificate")

    page.get_by_role("link", name="Settings").click()
    shot(page, "settings")
