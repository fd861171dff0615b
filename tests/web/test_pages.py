"""The pages over the real services and a real sandbox (STI-PA + STI-CA on 127.0.0.1):
forms, the service's errors in the form with the input kept, limits, the main flows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from opensti.lifecycle.reconcile import default_holder, set_renew_before
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.store import (
    Role,
    Secret,
    SipAction,
    SipDirection,
    SipMessage,
    SipRecord,
    acquire_lease,
    active_certificate,
    append_sip_messages,
    create_user,
    get_entry,
    list_entries,
)
from opensti.web import create_web
from tests.lifecycle.acquire_support import World, world
from tests.sandbox.conftest import clock, sandbox_factory
from tests.web.conftest import PASSWORD, csrf, sign_in

__all__ = ["clock", "sandbox_factory", "world"]

pytestmark = pytest.mark.integration


@pytest.fixture
async def ui(world: World) -> AsyncIterator[httpx.AsyncClient]:
    with world.app.database.session() as session:
        create_user(session, name="oscar", password=Secret.from_text(PASSWORD), role=Role.OPERATOR)
    transport = httpx.ASGITransport(app=create_web(world.app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await sign_in(http, "oscar")).status_code == 303
        yield http


async def post(ui: httpx.AsyncClient, page: str, action: str, **data: str) -> httpx.Response:
    return await ui.post(action, data={**data, "csrf_token": await csrf(ui, page)})


async def test_add_account_with_eab_shows_the_thumbprint(
    ui: httpx.AsyncClient, world: World
) -> None:
    world.add_sandbox_ca()
    kid, key = world.eab()
    response = await post(
        ui,
        "/accounts/new",
        "/accounts/new",
        ca="sandbox",
        email="ops@example.net",
        agree_tos="on",
        eab_kid=kid,
        eab_hmac_key=key.reveal_text(),
        name="main",
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/accounts/main"
    page = await ui.get("/accounts/main")
    info = world.app.accounts.show_account("main")
    assert f'value="{info.thumbprint}"' in page.text
    assert f'value="{info.account_url}"' in page.text
    assert key.reveal_text() not in page.text


async def test_account_refusals_are_shown_in_the_form(ui: httpx.AsyncClient, world: World) -> None:
    world.add_sandbox_ca()
    before = world.snapshot()
    no_tos = await post(ui, "/accounts/new", "/accounts/new", ca="sandbox", email="ops@example.net")
    assert no_tos.status_code == 400
    assert "agree to the CA&#39;s terms" in no_tos.text
    bad_key = await post(
        ui,
        "/accounts/new",
        "/accounts/new",
        ca="sandbox",
        email="ops@example.net",
        agree_tos="on",
        eab_kid="kid-1",
        eab_hmac_key="not base64url!",
    )
    assert bad_key.status_code == 400
    assert "not base64url" in bad_key.text
    assert 'value="kid-1"' in bad_key.text  # the input is kept
    assert "not base64url!" not in bad_key.text.replace("not base64url text", "")  # not the key
    assert world.snapshot() == before


@pytest.mark.parametrize(
    ("field", "length", "message"),
    [("user_id", 256, "STI-PA user id has 256 characters"), ("password", 190, "password has 190")],
)
async def test_stipa_limits(
    ui: httpx.AsyncClient, world: World, field: str, length: int, message: str
) -> None:
    data = {"account_id": "123H", "user_id": "demo", "password": DEMO_PASSWORD, field: "x" * length}
    before = world.snapshot()
    response = await post(ui, "/stipa", "/stipa", **data)
    assert response.status_code == 400
    assert message in response.text
    assert 'role="alert"' in response.text
    assert world.snapshot() == before


async def test_stipa_set_and_test_connection(ui: httpx.AsyncClient, world: World) -> None:
    saved = await post(
        ui,
        "/stipa",
        "/stipa",
        account_id="123h",
        user_id="demo",
        password=DEMO_PASSWORD,
        base_url=world.sandbox.stipa_base_url,
    )
    assert saved.status_code == 303
    page = await ui.get("/stipa")
    assert "123H" in page.text
    assert DEMO_PASSWORD not in page.text
    tested = await post(ui, "/stipa", "/stipa/test", account_id="123H", environment="production")
    assert tested.status_code == 303
    assert "signed in at" in (await ui.get("/stipa")).text


async def test_wrong_stipa_password_fails_the_test(ui: httpx.AsyncClient, world: World) -> None:
    world.stipa(password="wrong-password")
    await post(ui, "/stipa", "/stipa/test", account_id="123H", environment="production")
    assert "connection failed" in (await ui.get("/stipa")).text


async def test_entries_become_active_and_renew(ui: httpx.AsyncClient, world: World) -> None:
    account = world.ready()
    for name, spc in (("east", "123H"), ("west", "456J")):
        response = await post(
            ui,
            "/certificates/new",
            "/certificates/new",
            name=name,
            spc=spc,
            acme_account=account,
            stipa_account_id="123H",
            request_now="on",
        )
        assert response.status_code == 303
    main = await ui.get("/")
    assert main.text.count('class="badge active"') == 2
    assert "All 2 certificate entries are healthy." in main.text
    with world.app.database.read_session() as session:
        first = active_certificate(session, get_entry(session, "east").id)
    assert first is not None
    await post(ui, "/certificates/east", "/certificates/east/renew")
    with world.app.database.read_session() as session:
        second = active_certificate(session, get_entry(session, "east").id)
    assert second is not None
    assert second.id != first.id
    detail = await ui.get("/certificates/east")
    assert "superseded" in detail.text
    # The timeline: a bar per certificate, the second one a renewal, now and the
    # renewal point of the active one.
    [svg] = re.findall(r'<svg class="chart timeline".*?</svg>', detail.text, re.DOTALL)
    assert re.findall(r'<rect class="bar (\w+)"', svg) == ["active", "superseded"]
    assert svg.count('class="renewal"') == 1
    assert 'class="marker now"' in svg
    assert 'class="marker renews"' in svg
    assert "<title>Certificate validity</title>" in svg
    chain = await ui.get("/certificates/east/chain.pem")
    assert chain.text == second.chain_pem


async def test_entry_form_keeps_input_on_error(ui: httpx.AsyncClient, world: World) -> None:
    account = world.ready()
    response = await post(
        ui,
        "/certificates/new",
        "/certificates/new",
        name="bad",
        spc="TOOLONG1",
        acme_account=account,
        stipa_account_id="123H",
    )
    assert response.status_code == 400
    assert "is not valid: expected an OCN" in response.text
    assert 'value="TOOLONG1"' in response.text


async def test_add_form_sets_the_routing_with_the_signing_forms_checks(
    ui: httpx.AsyncClient, world: World
) -> None:
    account = world.ready()
    fields = {"spc": "123H", "acme_account": account, "stipa_account_id": "123H"}

    async def add(name: str, **routing: str) -> httpx.Response:
        return await post(
            ui, "/certificates/new", "/certificates/new", name=name, **fields, **routing
        )

    blank = await ui.get("/certificates/new")
    assert '<option value="C" selected>' in blank.text
    added = await add("east", default_signer="on", prefixes="1215, +1301", attest="A")
    assert added.status_code == 303
    with world.app.database.read_session() as session:
        east = get_entry(session, "east")
        assert (east.is_default_signer, east.orig_prefixes, east.default_attest) == (
            True,
            ["1215", "1301"],
            "A",
        )
    shown = await ui.get("/certificates/east")
    assert "Entry east added: it signs calls from numbers starting 1215, 1301 and" in shown.text

    taken = await add("west", default_signer="on", prefixes="1202 1215", attest="B")
    assert taken.status_code == 409
    assert "prefix 1215 already belongs to entry &#39;east&#39;" in taken.text
    assert 'value="west"' in taken.text
    assert 'value="1202 1215"' in taken.text
    assert '<option value="B" selected>' in taken.text
    assert 'name="default_signer" type="checkbox" checked' in taken.text
    letters = await add("west", prefixes="12a")
    assert letters.status_code == 400
    assert "prefix &#39;12a&#39; is not valid: use 1 to 15 digits" in letters.text
    with world.app.database.read_session() as session:  # nothing half-made
        assert [e.name for e in list_entries(session)] == ["east"]

    moved = await add("west", default_signer="on", prefixes="1202")
    assert moved.status_code == 303
    assert (
        "Entry &#39;east&#39; is no longer the default signer."
        in (await ui.get("/certificates/west")).text
    )
    with world.app.database.read_session() as session:
        assert not get_entry(session, "east").is_default_signer
        west = get_entry(session, "west")
        assert (west.is_default_signer, west.orig_prefixes, west.default_attest) == (
            True,
            ["1202"],
            None,  # none given: the entry signs with C, as with the CLI and the API
        )


async def test_entry_without_certificate_is_at_risk(ui: httpx.AsyncClient, world: World) -> None:
    account = world.ready()
    world.app.certificates.add_entry(
        name="pending", spc="123H", acme_account=account, stipa_account_id="123H"
    )
    page = await ui.get("/stipa")
    assert "At risk:" in page.text
    assert "pending</a> (no active certificate)" in page.text


async def test_calls_page_shows_the_signing_certificate(
    ui: httpx.AsyncClient, world: World
) -> None:
    account = world.ready()
    world.app.certificates.add_entry(
        name="east", spc="123H", acme_account=account, stipa_account_id="123H"
    )
    result = world.app.certificates.request_certificate("east")
    at = dt.datetime.now(dt.UTC)
    with world.app.database.session() as session:
        append_sip_messages(
            session,
            [
                SipRecord(
                    at=at - dt.timedelta(seconds=i),
                    direction=SipDirection.OUTBOUND,
                    action=SipAction.SIGNED,
                    call_id=f"call-{i}@example.net",
                    from_tn="12025550100",
                    to_tn="12025550199",
                    attest="A",
                    certificate_id=result.certificate.id,
                )
                for i in range(60)
            ],
        )
    first = await ui.get("/calls")
    assert first.text.count(">Show</a>") == 50
    assert "Older calls" in first.text
    filtered = await ui.get("/calls", params={"call_id": "call-7@example.net"})
    assert filtered.text.count(">Show</a>") == 1
    with world.app.database.read_session() as session:
        message_id = session.query(SipMessage.id).filter_by(call_id="call-7@example.net").scalar()
    shown = await ui.get(f"/calls/{message_id}")
    assert "123H" in shown.text
    assert result.certificate.fingerprint in shown.text
    assert "BEGIN CERTIFICATE" in shown.text
    bad = await ui.get("/calls", params={"since": "yesterday"})
    assert bad.status_code == 400
    assert "is not a date" in bad.text


async def test_renew_now_leaves_the_loops_lease_alone(ui: httpx.AsyncClient, world: World) -> None:
    """In ``opensti serve`` the loop works under this process's name: Renew now must
    not take the entry from it, only say the certificate is on its way."""
    account = world.ready()
    world.app.certificates.add_entry(
        name="east", spc="123H", acme_account=account, stipa_account_id="123H"
    )
    with world.app.database.session() as session:
        entry_id = get_entry(session, "east").id
        lease = acquire_lease(
            session,
            entry_id,
            default_holder(),
            now=dt.datetime.now(dt.UTC),
            ttl=dt.timedelta(minutes=5),
        )
    assert lease is not None
    await post(ui, "/certificates/east", "/certificates/east/renew")
    assert "being obtained already" in (await ui.get("/certificates/east")).text
    with world.app.database.read_session() as session:
        entry = get_entry(session, "east")
        assert (entry.lease_holder, entry.lease_epoch) == (default_holder(), lease.epoch)
        assert active_certificate(session, entry_id) is None


async def test_entry_renewal_margin_own_then_global_then_default(
    ui: httpx.AsyncClient, world: World
) -> None:
    account = world.ready()
    fields = {"name": "east", "spc": "123H", "acme_account": account, "stipa_account_id": "123H"}
    refused = await post(ui, "/certificates/new", "/certificates/new", **fields, renew_before="2x")
    assert refused.status_code == 400
    assert "&#39;2x&#39; is not a duration: write e.g. 30d" in refused.text
    assert 'value="2x"' in refused.text
    added = await post(
        ui, "/certificates/new", "/certificates/new", **fields, renew_before="2d", request_now="on"
    )
    assert added.status_code == 303
    with world.app.database.read_session() as session:
        entry = get_entry(session, "east")
        cert = active_certificate(session, entry.id)
        assert entry.renew_before == 2 * 86400
    assert cert is not None
    assert cert.not_before is not None
    assert cert.not_after is not None
    page = await ui.get("/certificates/east")
    assert '2d before expiry <span class="help">(from this entry&#39;s own setting)' in page.text
    assert 'id="f-renew_before" name="renew_before" type="text" value="2d"' in page.text
    applied = min(dt.timedelta(days=2), (cert.not_after - cert.not_before) / 2)
    assert f"at {cert.not_after - applied:%Y-%m-%d %H:%M:%S} UTC" in page.text

    async def save(value: str) -> httpx.Response:
        return await post(
            ui, "/certificates/east", "/certificates/east/renewal", renew_before=value
        )

    too_long = await save("400d")
    assert too_long.status_code == 400
    assert "at least 1 second and at most 365 days" in too_long.text
    assert 'value="400d"' in too_long.text
    assert (await save("")).status_code == 303
    with world.app.database.session() as session:
        assert get_entry(session, "east").renew_before is None
        set_renew_before(session, dt.timedelta(hours=36))
    page = await ui.get("/certificates/east")
    assert '36h before expiry <span class="help">(from the global setting' in page.text
    with world.app.database.session() as session:
        set_renew_before(session, None)
    page = await ui.get("/certificates/east")
    assert (
        'a third of each certificate&#39;s life <span class="help">(from the default' in page.text
    )
    assert (await save("90m")).status_code == 303
    with world.app.database.read_session() as session:
        assert get_entry(session, "east").renew_before == 90 * 60
