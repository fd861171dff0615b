"""The operator's day in a real Chromium against a real ``opensti serve`` (issue 18):
a form's error comes into view on a 900 px screen (with and without JavaScript), a
reload of a form's URL goes back to its page, Renew now shows its progress, and every
main page fits a 390 px phone screen even with 255-character values."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import Served
from tests.e2e.test_browser import _entries_from_the_cli, assert_labelled, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

#: The error summary's box lies within the viewport.
_IN_VIEW = """() => {
  const box = document.getElementById("form-error").getBoundingClientRect();
  return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
}"""
#: Record the Renew now button's state whenever the page's script changes it.
_WATCH_BUSY = """() => {
  const button = document.querySelector("form[data-busy] button");
  new MutationObserver(() => sessionStorage.setItem("busy", JSON.stringify(
    [button.disabled, button.textContent, button.getAttribute("aria-busy")]
  ))).observe(button, {attributes: true, childList: true, subtree: true, characterData: true});
}"""
#: The innermost elements reaching past the screen's right edge (the failure's cause).
_TOO_WIDE = """() => Array.from(document.querySelectorAll("body *")).filter(el =>
  el.getBoundingClientRect().right > window.innerWidth + 1 &&
  !Array.from(el.children).some(c => c.getBoundingClientRect().right > window.innerWidth + 1)
).slice(0, 5).map(el => el.outerHTML.slice(0, 120))"""
LONG_NAME = "e" * 64
LONG_USER = "u" * 255


def _task_error_in_view(page: Any, served: Served) -> None:
    """The deployment-task form sits at the bottom of a long entry page; a refused
    task must not leave its error 1,900 px below the screen."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{served.url}/certificates/east")
    page.get_by_text("Add a deployment task").click()
    page.get_by_label("Task name").fill("hook")
    page.get_by_label("Kind").select_option("webhook")
    page.get_by_label("Directory, command or URL").fill("http://hooks.example.net/cert")
    page.get_by_role("button", name="Add task").click()
    assert page.evaluate("document.documentElement.scrollHeight") > 1200  # a long page
    alert = page.get_by_role("alert")
    assert "must start with https://" in alert.inner_text()
    # Chromium focuses an ``autofocus`` element at its next rendering update, which
    # may come after the load event Playwright waited for: poll, do not read once.
    try:
        page.wait_for_function(_IN_VIEW, polling=100, timeout=5_000)
    except PlaywrightTimeout:
        pytest.fail("the error is out of view")
    target = page.get_by_label("Directory, command or URL")
    assert target.get_attribute("aria-invalid") == "true"
    assert target.input_value() == "http://hooks.example.net/cert"
    # Reloading the form's URL (GET after the POST) goes back to its page, not JSON.
    page.goto(f"{served.url}/certificates/east/tasks")
    assert page.url == f"{served.url}/certificates/east#tasks"
    assert "Method Not Allowed" not in page.content()


def test_errors_in_view_progress_and_a_phone_screen(
    served_with_admin: Served, browser_page: Any
) -> None:
    served, page = served_with_admin, browser_page
    _entries_from_the_cli(served)
    done = served.cli("cert", "add", "--name", LONG_NAME, "--spc", "789K", "--stipa", "123H",
                      "--account", "sandbox")  # fmt: skip
    assert done.returncode == 0, done.stderr
    sign_in(page, served.url)
    _task_error_in_view(page, served)

    # Renew now: while the request runs, the button is disabled and says so. What
    # the button showed before the next page replaced it is kept in sessionStorage
    # (it survives the navigation), so nothing here depends on timing.
    page.goto(f"{served.url}/certificates/east")
    page.evaluate(_WATCH_BUSY)
    with page.expect_navigation():
        page.locator("form[data-busy] button").click()
    busy = page.evaluate("JSON.parse(sessionStorage.getItem('busy'))")
    assert busy == [True, "Requesting…", "true"]
    assert "New certificate for east is active" in page.locator("main").inner_text()

    # A 255-character STI-PA user id (the most it takes): saved, its login refused.
    page.get_by_role("link", name="STI-PA").click()
    page.get_by_label("Account id (primary OCN)").fill("456J")
    page.get_by_label("API user id").fill(LONG_USER)
    page.get_by_label("API password").fill("not the password")
    page.get_by_role("button", name="Save").click()
    assert "saved, but signing in" in page.locator(".flash.error").inner_text()

    page.set_viewport_size({"width": 390, "height": 844})
    pages = ("/", "/certificates/east", f"/certificates/{LONG_NAME}", "/certificates/new",
             "/accounts", "/accounts/sandbox", "/accounts/new", "/stipa", "/calls",
             "/settings", "/users", "/account/password")  # fmt: skip
    for path in pages:
        page.goto(f"{served.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width, page.evaluate(_TOO_WIDE))
        assert_labelled(page)


def test_errors_in_view_without_javascript(served_with_admin: Served, no_script_page: Any) -> None:
    """The error summary is focused by ``autofocus``: no script needed."""
    served, page = served_with_admin, no_script_page
    _entries_from_the_cli(served)
    sign_in(page, served.url)
    _task_error_in_view(page, served)
