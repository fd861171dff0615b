"""The SIP Messages pages show a verified call's Rich Call Data (RFC 9795) name and logo
URL, and nothing for a call whose rcd did not verify (the log keeps none)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from opensti.store import SipAction, SipDirection, SipMessage, SipRecord, append_sip_messages
from tests.web.test_pages import World, clock, sandbox_factory, ui, world  # noqa: F401

pytestmark = pytest.mark.integration

LOGO = "https://brand.example.com/logo.png"


async def test_calls_pages_show_the_verified_name_and_logo(
    ui: httpx.AsyncClient,  # noqa: F811
    world: World,  # noqa: F811
) -> None:
    world.ready()
    at = dt.datetime.now(dt.UTC)
    records = [
        SipRecord(
            at=at,
            direction=SipDirection.INBOUND,
            action=SipAction.VERIFIED,
            call_id=call_id,
            from_tn="12025550100",
            to_tn="12025550199",
            attest="A",
            verstat="TN-Validation-Passed",
            x5u="https://cr.example.net/1.pem",
            rcd_name=name,
            rcd_icon=icon,
        )
        for call_id, name, icon in (
            ("branded@x", "Example <Bank>", LOGO),
            ("plain@x", None, None),
        )
    ]
    with world.app.database.session() as session:
        append_sip_messages(session, records)
    page = await ui.get("/calls")
    assert "Example &lt;Bank&gt;" in page.text  # escaped, never markup
    with world.app.database.read_session() as session:
        ids = dict(session.query(SipMessage.call_id, SipMessage.id).all())
    branded = await ui.get(f"/calls/{ids['branded@x']}")
    assert 'id="rcd-name">Example &lt;Bank&gt;<' in branded.text
    assert LOGO in branded.text
    assert "<img" not in branded.text.split('id="rcd-icon"')[1].split("</dd>")[0]
    plain = await ui.get(f"/calls/{ids['plain@x']}")
    assert "rcd-name" not in plain.text
