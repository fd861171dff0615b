"""The seed workflows in a browser against a real ``opensti serve``: sign in, add the
CA and an ACME account with EAB and copy its thumbprint, set STI-PA credentials, add
two entries and watch the server's own renewal loop make them active, renew one now,
sign a call through the server's REST API and see which certificate signed it; and
the errors shown in the forms."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from opensti.sandbox.config import DEMO_PASSWORD
from tests.e2e.conftest import ADMIN, PASSWORD, SCREENSHOTS, Served

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


# Every form control must have a name a screen reader can say: a <label for>, or
# aria-label for the icon-like buttons; every button must say what it does.
_UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button')).filter(el => {
  if (el.tagName === 'BUTTON') return !(el.textContent.trim() || el.getAttribute('aria-label'));
  return !(el.labels && el.labels.length) && !el.getAttribute('aria-label');
}).map(el => el.outerHTML.slice(0, 160))"""


def assert_labelled(page: Any) -> None:
    assert page.evaluate(_UNLABELLED) == [], page.url


def shot(page: Any, name: str) -> None:
    """A screenshot of the page, after checking its form controls are labelled."""
    assert_labelled(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


PORTAL_FINGERPRINT = "SPC token fingerprint (paste this)"
THUMBPRINT = "JWK thumbprint (RFC 7638, base64url)"


def sign_in(page: Any, server: str, password: str = PASSWORD) -> None:
    page.goto(f"{server}/")
    assert page.url.startswith(f"{server}/login")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def reload_until(page: Any, ready: Callable[[], bool], what: str, timeout: float = 90) -> None:
    """Reload the page until ``ready()``: the server works on its own schedule."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
        page.reload()


def cli_json(served: Served, *args: str) -> Any:
    done = served.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_wrong_password_is_shown(served_with_admin: Served, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, served_with_admin.url, password="not it")
    assert page.get_by_role("alert").inner_text().endswith("Wrong user name or password.")
    assert page.get_by_label("User name").input_value() == ADMIN
    shot(page, "sign-in")


def _add_ca_and_account(page: Any, served: Served) -> None:
    page.get_by_role("link", name="Certificate Authorities").click()
    page.get_by_text("Add a custom CA").click()
    assert_labelled(page)
    page.get_by_label("CA name").fill("sandbox")
    page.get_by_label("ACME directory URL").fill(served.sandbox.ca_directory_url)
    page.get_by_label("The CA requires External Account Binding (EAB)").check()
    page.get_by_role("button", name="Add CA").click()
    assert "CA sandbox added" in page.locator(".flash").inner_text()

    kid, hmac_key = served.sandbox.state.add_eab()
    page.get_by_role("link", name="Add account").click()
    assert_labelled(page)
    page.get_by_label("Certificate Authority").select_option("sandbox")
    page.get_by_label("Contact email").fill("ops@example.net")
    page.get_by_label("I agree to the CA's terms of service").check()
    # The CA requires EAB: its fields are in view, not folded under Advanced.
    page.get_by_label("EAB key id").fill(kid)
    page.get_by_label("EAB HMAC key").fill(hmac_key)
    page.get_by_text("Advanced").click()
    page.get_by_label("Account name").fill("main")
    page.get_by_role("button", name="Add account").click()
    assert page.url == f"{served.url}/accounts/main"
    shown = cli_json(served, "account", "show", "main")
    assert page.get_by_label(PORTAL_FINGERPRINT, exact=True).input_value() == shown["fingerprint"]
    assert page.get_by_label(THUMBPRINT, exact=True).input_value() == shown["thumbprint"]


def _set_stipa(page: Any, served: Served) -> None:
    page.get_by_role("link", name="STI-PA").click()
    page.get_by_label("Account id (primary OCN)").fill("123H")
    page.get_by_label("API user id").fill("demo")
    page.get_by_label("API password").fill("p" * 190)
    page.get_by_text("Advanced").click()
    page.get_by_label("Base URL").fill(served.sandbox.stipa_base_url)
    page.get_by_role("button", name="Save").click()
    assert "password has 190 characters: at most 189" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("API user id").input_value() == "demo"
    page.get_by_label("API user id").fill("u" * 256)
    page.get_by_label("API password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Save").click()
    assert "STI-PA user id has 256 characters" in page.get_by_role("alert").inner_text()
    page.get_by_label("API user id").fill("demo")
    page.get_by_label("API password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Test connection").click()
    assert "signed in at" in page.locator(".flash").inner_text()


def _add_entries_and_wait(page: Any) -> None:
    """Two entries added without "request now": they wait, the server's loop leaves
    them alone, until Renew now on the Certificates page requests each one's first
    certificate. West is given its own calls (prefix 1301, attestation B) in the Add form."""
    for name, spc, prefixes in (("east", "123H", ""), ("west", "456J", "1301")):
        page.get_by_role("link", name="Certificates").first.click()
        page.get_by_role("link", name="Add entry").click()
        assert_labelled(page)
        page.locator("#f-name").fill(name)
        page.get_by_label("SPC (SPID / OCN)").fill(spc)
        page.get_by_label("STI-PA account").select_option("123H")
        page.get_by_label("Calling-number prefixes").fill(prefixes)
        if prefixes:
            page.get_by_label("Attestation when the caller gives none").select_option("B")
        page.get_by_label("Request the certificate now").uncheck()
        page.get_by_role("button", name="Add entry").click()
        assert f"Entry {name} added" in page.locator(".flash").inner_text()
    assert "it signs calls from numbers starting 1301" in page.locator(".flash").inner_text()
    assert "B when the caller gives none" in page.locator("main").inner_text()
    page.get_by_role("link", name="Certificates").first.click()
    for _ in range(3):  # a few passes of the server's loop (--tick=0.3): still waiting
        time.sleep(0.5)
        page.reload()
        assert page.locator("table .badge.pending").all_inner_texts() == ["waiting", "waiting"]
    for name in ("east", "west"):
        page.get_by_role("link", name="Certificates").first.click()
        page.get_by_role("button", name=f"Renew {name} now").click()
        notice = " ".join(page.locator(".flash").all_inner_texts())
        assert f"New certificate for {name} is active" in notice
    page.get_by_role("link", name="Certificates").first.click()
    reload_until(page, lambda: page.locator("table .badge.active").count() == 2, "two certs")
    assert "All 2 certificate entries are healthy" in page.locator("#health").inner_text()
    shot(page, "certificates")


def _sign_a_call(page: Any, served: Served, call_id: str) -> str:
    """An operator API token made in Settings signs a call through ``/api/v1/sign``;
    the x5u it was signed with."""
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("New token name").fill("sbc")
    page.get_by_label("Role").select_option("operator")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("Bearer token", exact=True).input_value()
    body = {"orig": "12025550100", "dest": "12025550199", "entry": "east", "call_id": call_id}
    response = httpx.post(
        f"{served.url}/api/v1/sign",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        trust_env=False,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["entry"] == "east"
    return str(response.json()["x5u"])


def _first_run(page: Any, served: Served) -> None:
    """The setup link ``opensti serve`` printed makes the first admin, once."""
    link = served.setup_link()
    assert link is not None, served.output
    assert link.startswith(f"{served.url}/setup?token=")
    page.goto(link)
    page.get_by_label("User name").fill(ADMIN)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    shot(page, "setup")
    page.get_by_role("button", name="Create admin and sign in").click()
    assert f"{ADMIN} (admin)" in page.locator("header").inner_text()
    page.goto(link)
    assert "expired or used" in page.locator("main").inner_text()
    page.goto(f"{served.url}/")


def test_seed_workflows(served: Served, browser_page: Any) -> None:
    page = browser_page
    _first_run(page, served)
    assert "Getting started: no certificate entries yet" in page.locator("#health").inner_text()
    _add_ca_and_account(page, served)
    fingerprint = page.get_by_label(PORTAL_FINGERPRINT, exact=True).input_value()
    page.get_by_role("button", name=f"Copy {PORTAL_FINGERPRINT}").click()
    assert page.evaluate("navigator.clipboard.readText()") == fingerprint
    shot(page, "account")
    _set_stipa(page, served)
    shot(page, "stipa")
    _add_entries_and_wait(page)

    # Renew now: a new active certificate, the old one superseded.
    page.get_by_role("link", name="east", exact=True).click()
    page.get_by_role("button", name="Renew now").click()
    assert "New certificate for east is active" in page.locator("main").inner_text()
    assert page.locator("td .badge.superseded").count() == 1
    shot(page, "entry")

    # A call signed by the server shows up with the certificate that signed it.
    x5u = _sign_a_call(page, served, "e2e-call-1@example.net")
    page.get_by_role("link", name="SIP Messages").click()
    show = page.get_by_role("link", name="Show the certificate of call e2e-call-1@example.net")
    reload_until(page, lambda: show.count() == 1, "the call in the log")
    shot(page, "sip-messages")
    show.click()
    certificate = page.locator("#certificate").inner_text()
    assert "123H" in certificate
    # The signer is the certificate behind the x5u the call carried (the renewed one,
    # or the one before it if the server's keyring had not switched yet).
    [signer] = [
        c for c in cli_json(served, "cert", "show", "east")["certificates"] if c["x5u"] == x5u
    ]
    fingerprint = page.get_by_label("SHA-256 fingerprint", exact=True).input_value()
    assert fingerprint == signer["fingerprint"]
    assert "BEGIN CERTIFICATE" in page.locator("pre.pem").inner_text()
    shot(page, "call-certificate")

    page.get_by_role("link", name="Settings").click()
    shot(page, "settings")
    _search_and_pictures(page)


def _search_and_pictures(page: Any) -> None:
    """The logged call found by the start of its number and part of its Call-ID; the
    call chart and the certificate timeline drawn, and kept within a 390 px screen."""
    page.get_by_role("link", name="SIP Messages").click()
    page.get_by_label("Number (from or to)").fill("+1 202")
    page.get_by_role("button", name="Filter").click()
    assert "e2e-call-1@example.net" in page.locator("main table").inner_text()
    page.get_by_label("Number (from or to)").fill("")
    page.get_by_label("Call-ID").fill("call-1@")
    page.get_by_role("button", name="Filter").click()
    assert "e2e-call-1@example.net" in page.locator("main table").inner_text()

    page.get_by_role("link", name="Certificates").first.click()
    signed = page.get_by_role("img", name="Signed calls, last 24 hours")
    assert signed.locator("rect.bar").count() >= 1
    assert page.get_by_role("img", name="Verified calls, last 24 hours").count() == 1
    page.get_by_role("link", name="east", exact=True).click()
    chart = page.get_by_role("img", name="Certificate validity")
    assert chart.locator("rect.bar").count() == 2
    assert chart.locator("path.renewal").count() == 1
    shot(page, "entry-timeline")
    page.set_viewport_size({"width": 390, "height": 844})
    box = chart.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= 390
    shot(page, "entry-390")
    page.get_by_role("link", name="Certificates").first.click()
    shot(page, "certificates-390")
    page.set_viewport_size({"width": 1280, "height": 860})
    shot(page, "dashboard")


def test_core_flows_work_without_javascript(served_with_admin: Served, no_script_page: Any) -> None:
    """Sign in with the keyboard only, then add an entry and get its certificate, in a
    browser with JavaScript switched off: every core form is a plain HTML form."""
    served, page = served_with_admin, no_script_page
    page.goto(f"{served.url}/")
    page.get_by_label("User name").focus()
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{served.url}/")
    assert f"{ADMIN} (admin)" in page.locator("header").inner_text()
    _add_ca_and_account(page, served)
    _set_stipa(page, served)
    page.get_by_role("link", name="Certificates").first.click()
    page.get_by_role("link", name="Add entry").click()
    page.locator("#f-name").fill("east")
    page.get_by_label("SPC (SPID / OCN)").fill("123H")
    page.get_by_label("STI-PA account").select_option("123H")
    assert page.get_by_label("Request the certificate now").is_checked()
    page.get_by_role("button", name="Add entry").press("Enter")
    # Got here, or by the server's loop if it took the entry first: either way, active.
    notice = " ".join(page.locator(".flash").all_inner_texts())
    assert "New certificate for east is active" in notice or "being obtained" in notice
    if "being obtained" not in notice:  # the first entry with a certificate: it says so
        assert "Entry 'east' is the default signer" in notice
    reload_until(page, lambda: page.locator("td .badge.active").count() == 1, "the certificate")
    assert_labelled(page)  # the DOM query runs in Playwright's own context


def _entries_from_the_cli(served: Served) -> None:
    """CA, account, STI-PA and two active entries by the CLI: east first, so that it
    becomes the default signer (the first entry with a certificate)."""
    cli_json(served, "ca", "add", "sandbox", "--directory-url", served.sandbox.ca_directory_url,
             "--honours-validity")  # fmt: skip
    kid, key = served.sandbox.state.add_eab()
    cli_json(served, "account", "add", "--ca", "sandbox", "--email", "ops@example.net",
             "--agree-tos", "--eab-kid", kid, "--eab-hmac-key", key)  # fmt: skip
    done = served.cli("stipa", "set", "--account-id", "123H", "--user-id", "demo",
                      "--password-stdin", "--base-url", served.sandbox.stipa_base_url,
                      stdin=DEMO_PASSWORD)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name, spc in (("east", "123H"), ("west", "456J")):
        cli_json(served, "cert", "add", "--name", name, "--spc", spc, "--stipa", "123H",
                 "--account", "sandbox")  # fmt: skip
        deadline = time.monotonic() + 90
        while not {e["name"]: e["active"] for e in cli_json(served, "cert", "list")}[name]:
            assert time.monotonic() < deadline, f"timed out waiting for {name}'s certificate"
            time.sleep(0.5)
    cli_json(served, "cert", "set", "east", "--prefix", "1215")


def _save_signing(page: Any, prefixes: str) -> None:
    page.get_by_label("Calling-number prefixes").fill(prefixes)
    page.get_by_role("button", name="Save signing").click()


def test_edit_disable_and_remove_an_entry(served_with_admin: Served, browser_page: Any) -> None:
    served, page = served_with_admin, browser_page
    _entries_from_the_cli(served)
    sign_in(page, served.url)
    assert "default signer" in page.locator("#entries").inner_text()
    page.get_by_role("link", name="west", exact=True).click()
    assert page.locator("#signs").inner_text() == "no calls: no prefixes and not the default signer"

    # Bad input is refused in the form, which keeps what was typed; nothing changes.
    _save_signing(page, "1202 12a")
    assert "prefix '12a' is not valid" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Calling-number prefixes").input_value() == "1202 12a"
    _save_signing(page, "1215")
    assert "prefix 1215 already belongs to entry 'east'" in page.get_by_role("alert").inner_text()
    assert cli_json(served, "cert", "show", "west")["prefixes"] == []

    # Edit: west signs 1202 with attestation B, and takes over as default signer.
    page.get_by_label("Attestation when the caller gives none").select_option("B")
    page.get_by_label("Default signer: signs every call no entry's prefix claims").check()
    _save_signing(page, "1202")
    flashes = page.locator(".flash").all_inner_texts()
    assert "Entry 'east' is no longer the default signer." in flashes
    signs = page.locator("#signs").inner_text()
    assert signs.startswith("calls from numbers starting 1202 and every call")
    shot(page, "entry-signing")
    west = cli_json(served, "cert", "show", "west")
    assert (west["prefixes"], west["attest"], west["default_signer"]) == (["1202"], "B", True)

    # Disable: refused while west is the default signer; allowed once it is not.
    page.get_by_label("Enabled (renews and signs)").uncheck()
    _save_signing(page, "1202")
    assert "cannot be disabled" in page.get_by_role("alert").inner_text()
    page.get_by_label("Default signer: signs every call no entry's prefix claims").uncheck()
    page.get_by_label("Enabled (renews and signs)").uncheck()
    _save_signing(page, "1202")
    assert page.locator("#signs").inner_text() == "no calls: the entry is disabled"
    assert cli_json(served, "cert", "show", "west")["enabled"] is False

    # Remove, with a confirmation step that says what stays published.
    page.get_by_role("link", name="Remove entry").click()
    assert "stay on the STI-CR until they expire" in page.locator("main").inner_text()
    shot(page, "entry-remove")
    page.get_by_role("button", name="Remove entry west").click()
    assert "Entry west removed; 1 chain(s) stay published" in page.locator(".flash").inner_text()
    assert [e["name"] for e in cli_json(served, "cert", "list")] == ["east"]
