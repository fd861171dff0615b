"""The operator's day in the web UI (issue 18): errors by field and in plain words, HTML
for 404/405, confirmation steps, defaults, the status line, entries that wait for a
request, https-only webhooks, the STI-PA portal's fingerprint, the favicon."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from opensti.lifecycle.reconcile import WAITING, reconciler_for
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.store import Role, active_certificate, create_api_token, get_entry, list_api_tokens
from tests.lifecycle.acquire_support import World, world
from tests.sandbox.conftest import clock, sandbox_factory
from tests.web.conftest import SignIn, csrf, sign_in
from tests.web.test_pages import post, ui

__all__ = ["clock", "sandbox_factory", "ui", "world"]


def _alert(page: str) -> str:
    match = re.search(r'<div class="error" role="alert"[^>]*>(.*?)</div>', page, re.S)
    assert match, "no error in the page"
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(1)))


# -- pages without the sandbox -----------------------------------------------------------


async def test_reloading_a_form_url_goes_back_to_its_page(signed_in: SignIn) -> None:
    client = await signed_in(Role.ADMIN)
    for path, page in (
        ("/settings/mail", "/settings#mail"),
        ("/stipa/test", "/stipa#test"),
        ("/certificates/east/tasks", "/certificates/east#tasks"),
        ("/users/1", "/users#1"),
    ):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == page
    missing = await client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "Method Not Allowed" not in missing.text
    assert "<h1>Not found</h1>" in missing.text
    wrong = await client.put("/settings")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"].startswith("text/html")


async def test_favicon_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/favicon.ico", follow_redirects=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")


async def test_read_only_users_see_no_admin_links_and_a_plain_403(signed_in: SignIn) -> None:
    client = await signed_in(Role.READ_ONLY)
    page = (await client.get("/")).text
    assert 'href="/settings"' not in page
    assert 'href="/users"' not in page
    assert 'href="/certificates/new"' not in page
    refused = await client.get("/settings")
    assert refused.status_code == 403
    assert "it this" not in refused.text
    assert "Your role cannot do this: this needs the admin role." in refused.text


async def test_with_no_entries_the_status_line_is_not_green(signed_in: SignIn) -> None:
    page = (await signed_in(Role.OPERATOR)).get("/")
    html = (await page).text
    assert 'class="health start"' in html
    assert "Getting started: no certificate entries yet." in html


async def test_sign_in_error_is_not_a_save_error(client: httpx.AsyncClient) -> None:
    refused = await sign_in(client, "alice", "not it")
    assert refused.status_code == 400
    assert _alert(refused.text).strip() == "Wrong user name or password."


async def test_errors_do_not_quote_cli_flags(signed_in: SignIn) -> None:
    client = await signed_in(Role.ADMIN)
    token = await csrf(client, "/settings")
    await client.post("/settings/mail/test", data={"csrf_token": token})
    page = (await client.get("/settings")).text
    assert "Test email not sent: no SMTP server configured (Settings, Email notifications)" in page
    assert "opensti notify" not in page


async def test_deleting_a_task_and_revoking_a_token_ask_first(
    signed_in: SignIn, web_app: object
) -> None:
    client = await signed_in(Role.ADMIN)
    app = web_app
    with app.database.session() as session:  # type: ignore[attr-defined]
        create_api_token(session, name="sbc", role=Role.SIGNER)
    settings = (await client.get("/settings")).text
    assert 'href="/settings/tokens/sbc/revoke"' in settings
    assert 'action="/settings/tokens/sbc/revoke"' not in settings
    confirm = await client.get("/settings/tokens/sbc/revoke")
    assert confirm.status_code == 200
    assert "Revoke API token sbc?" in confirm.text
    assert 'action="/settings/tokens/sbc/revoke"' in confirm.text
    with app.database.read_session() as session:  # type: ignore[attr-defined]
        assert not next(t for t in list_api_tokens(session) if t.name == "sbc").revoked
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text)
    assert token
    done = await client.post("/settings/tokens/sbc/revoke", data={"csrf_token": token.group(1)})
    assert done.status_code == 303
    with app.database.read_session() as session:  # type: ignore[attr-defined]
        assert next(t for t in list_api_tokens(session) if t.name == "sbc").revoked
    assert (await client.get("/settings/tokens/sbc/revoke")).status_code == 404


# -- pages over the sandbox --------------------------------------------------------------


@pytest.mark.integration
async def test_entry_form_lists_every_error_with_its_field(
    ui: httpx.AsyncClient, world: World
) -> None:
    account = world.ready()
    response = await post(
        ui,
        "/certificates/new",
        "/certificates/new",
        name="bad name!",
        spc="TOOLONG1",
        acme_account=account,
        renew_before="soon",
        prefixes="1215",
    )
    assert response.status_code == 400
    alert = _alert(response.text)
    for message in ("bad name!", "SPC 'TOOLONG1' is not valid", "choose an STI-PA account"):
        assert message in alert
    assert "'soon' is not a duration" in alert
    for field in ("name", "spc", "stipa_account_id", "renew_before"):
        assert re.search(
            rf'id="f-{field}"[^>]*aria-invalid="true"[^>]*aria-describedby="e-{field}',
            response.text,
        ), field
        assert f'id="e-{field}"' in response.text
    assert 'value="TOOLONG1"' in response.text  # the input is kept
    assert 'value="1215"' in response.text
    assert "--stipa" not in response.text


@pytest.mark.integration
async def test_the_one_stipa_account_is_the_default(ui: httpx.AsyncClient, world: World) -> None:
    world.ready()
    page = (await ui.get("/certificates/new")).text
    assert re.search(r'<option value="123H"[^>]*selected', page)


@pytest.mark.integration
async def test_an_entry_added_without_request_now_waits(
    ui: httpx.AsyncClient, world: World
) -> None:
    """Unticked, nothing is requested: the loop's plan leaves the entry alone until
    Renew now asks; then it is an ordinary entry."""
    account = world.ready()
    entry = {"name": "east", "spc": "123H", "acme_account": account, "stipa_account_id": "123H"}
    added = await post(ui, "/certificates/new", "/certificates/new", **entry)  # no request_now
    assert added.status_code == 303
    loop = reconciler_for(world.app)
    [plan] = loop.plans()
    assert (plan.due, plan.reason) == (False, WAITING)
    assert await loop.pass_once() == []
    page = (await ui.get("/")).text
    assert '<span class="badge pending">waiting</span>' in page
    assert "waiting: Renew now requests its first certificate" in page
    await post(ui, "/certificates/east", "/certificates/east/renew")
    with world.app.database.read_session() as session:
        assert active_certificate(session, get_entry(session, "east").id) is not None
    [plan] = loop.plans()
    assert plan.reason == "up to date"


@pytest.mark.integration
async def test_webhook_tasks_take_https_only(ui: httpx.AsyncClient, world: World) -> None:
    world.app.certificates.add_entry(
        name="east", spc="123H", acme_account=world.ready(), stipa_account_id="123H"
    )
    entry = "/certificates/east"
    refused = await post(
        ui, entry, f"{entry}/tasks", task_name="hook", kind="webhook", target="http://h.example/x"
    )
    assert refused.status_code == 400
    assert "must start with https://" in _alert(refused.text)
    assert re.search(r'id="f-target"[^>]*aria-invalid="true"', refused.text)
    added = await post(
        ui, entry, f"{entry}/tasks", task_name="hook", kind="webhook", target="https://h.example/x"
    )
    assert added.status_code == 303
    confirm = await ui.get(f"{entry}/tasks/hook/delete")
    assert confirm.status_code == 200
    assert "Delete deployment task hook?" in confirm.text


@pytest.mark.integration
async def test_stipa_credentials_are_tried_when_saved(ui: httpx.AsyncClient, world: World) -> None:
    data = {"account_id": "123H", "user_id": "demo", "base_url": world.sandbox.stipa_base_url}
    wrong = await post(ui, "/stipa", "/stipa", **data, password="wrong-password")
    assert wrong.status_code == 303
    page = (await ui.get("/stipa")).text
    failed = r'class="flash error"[^>]*>STI-PA credentials for 123H \(production\) saved, but'
    assert re.search(failed, page)
    assert "flash ok" not in page
    right = await post(ui, "/stipa", "/stipa", **data, password=DEMO_PASSWORD)
    assert right.status_code == 303
    assert "saved; signed in at" in (await ui.get("/stipa")).text


@pytest.mark.integration
async def test_account_page_puts_the_portals_fingerprint_first(
    ui: httpx.AsyncClient, world: World
) -> None:
    world.add_sandbox_ca()
    name = world.account()
    info = world.app.accounts.show_account(name)
    page = (await ui.get(f"/accounts/{name}")).text
    assert page.index(info.fingerprint) < page.index(info.thumbprint)
    assert "SPC token fingerprint (paste this)" in page
    assert 'aria-label="Copy SPC token fingerprint (paste this)"' in page
    assert 'aria-label="Copy JWK thumbprint (RFC 7638, base64url)"' in page
    listed = (await ui.get("/accounts")).text
    assert info.fingerprint in listed
    assert "SHA-256 JWK thumbprint of the account key (RFC 9448)" in listed  # the CA's method


@pytest.mark.integration
async def test_eab_fields_are_not_folded(ui: httpx.AsyncClient, world: World) -> None:
    world.add_sandbox_ca()
    page = (await ui.get("/accounts/new")).text
    advanced = page.index("<summary>Advanced</summary>")
    assert page.index('id="f-eab_kid"') < advanced
    assert re.search(r'id="f-email"[^>]*required', page)
    refused = await post(
        ui, "/accounts/new", "/accounts/new", ca="sandbox", email="ops@example.net", agree_tos="on"
    )
    assert refused.status_code == 400
    assert "sandbox requires External Account Binding" in _alert(refused.text)
    assert re.search(r'id="f-eab_kid"[^>]*aria-invalid="true"', refused.text)


@pytest.mark.integration
async def test_a_ca_that_asks_for_eab_marks_the_eab_fields(
    ui: httpx.AsyncClient, world: World
) -> None:
    """A custom CA not listed as needing EAB that answers externalAccountRequired: the
    error points at the EAB fields (which the page's script then shows)."""
    world.app.accounts.add_ca("plain", world.sandbox.ca_directory_url, needs_eab=False)
    refused = await post(
        ui, "/accounts/new", "/accounts/new", ca="plain", email="ops@example.net", agree_tos="on"
    )
    assert refused.status_code >= 400
    assert "requires External Account Binding" in _alert(refused.text)
    assert re.search(r'id="f-eab_kid"[^>]*aria-invalid="true"', refused.text)
