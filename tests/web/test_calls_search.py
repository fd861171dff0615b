"""SIP Messages search by the start of a number and by part of a Call-ID, and the main
page's call charts, over a real store (SQLite, or PostgreSQL with --db-url)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from opensti.app import App
from opensti.calls import _search
from opensti.store import Role, SipAction, SipDirection, SipRecord, append_sip_messages
from tests.web.conftest import SignIn

# The prefix search is a range query whose plan differs by database (tests/README.md).
pytestmark = pytest.mark.db_dialect

NOW = dt.datetime.now(dt.UTC)


def _call(
    index: int, from_tn: str, *, action: SipAction = SipAction.SIGNED, **fields: object
) -> SipRecord:
    return SipRecord(
        at=NOW - dt.timedelta(minutes=index),
        direction=SipDirection.OUTBOUND if action is SipAction.SIGNED else SipDirection.INBOUND,
        action=action,
        call_id=f"Call-{index}@pbx.example.net",
        from_tn=from_tn,
        to_tn="12025550199",
        **{"sip_code": 302, **fields},  # type: ignore[arg-type]
    )


@pytest.fixture
def logged(web_app: App) -> None:
    records = [
        _call(0, "14155550100", attest="A"),
        _call(1, "14155550101", attest="A"),
        _call(2, "14165550100", attest="B"),
        _call(3, "442071838750", attest="C"),
        _call(4, "14155550100", action=SipAction.VERIFIED, verstat="TN-Validation-Passed"),
        _call(
            5,
            "19995550100",
            action=SipAction.VERIFIED,
            verstat="No-TN-Validation",
            sip_code=438,
            reason="Invalid Identity Header",
        ),
        # Two days ago: listed, not charted.
        _call(2 * 24 * 60, "14155550102", attest="A"),
    ]
    with web_app.database.session() as session:
        append_sip_messages(session, records)


def _call_ids(html: str) -> list[str]:
    return re.findall(r'<td class="mono">(Call-\d+@pbx\.example\.net)</td>', html)


_ALL = [0, 1, 2, 3, 4, 5, 2880]


@pytest.mark.usefixtures("logged")
@pytest.mark.parametrize(
    ("field", "typed", "expected"),
    [
        # A number by its first digits, calling or called, however it is written.
        ("tn", "1415", [0, 1, 4, 2880]),
        ("tn", "+1 415", [0, 1, 4, 2880]),
        ("tn", "+1 (415) 555-0100", [0, 4]),
        ("tn", "4155550100", [0, 4]),  # ten-digit NANP, as the log stores it: 1 first
        ("tn", "141", [0, 1, 2, 4, 2880]),
        ("tn", "44", [3]),
        ("tn", "1202555019", _ALL),  # the called number
        ("tn", "99", []),
        # A Call-ID whole, or a part of one.
        ("call_id", "Call-3@pbx.example.net", [3]),
        ("call_id", "-3@", [3]),
        ("call_id", "pbx.example", _ALL),
        ("call_id", "call-3@", []),  # Call-IDs compare case-sensitively (RFC 3261)
        ("call_id", "%", []),  # no wildcard
    ],
)
async def test_calls_are_found_by_a_number_prefix_or_a_call_id_part(
    signed_in: SignIn, field: str, typed: str, expected: list[int]
) -> None:
    client = await signed_in(Role.READ_ONLY)
    page = await client.get("/calls", params={field: typed})
    assert page.status_code == 200
    assert _call_ids(page.text) == [f"Call-{i}@pbx.example.net" for i in expected]


@pytest.mark.usefixtures("logged")
async def test_a_number_that_is_not_one_is_refused_in_the_page(signed_in: SignIn) -> None:
    client = await signed_in(Role.READ_ONLY)
    page = await client.get("/calls", params={"tn": "14a5"})
    assert page.status_code == 400
    assert "not a number or the start of one" in page.text


@pytest.mark.usefixtures("logged")
async def test_a_part_of_a_call_id_is_looked_for_among_the_newest_calls(
    signed_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_search, "CALL_ID_WINDOW", 3)
    client = await signed_in(Role.READ_ONLY)
    part = await client.get("/calls", params={"call_id": "-4@"})
    assert _call_ids(part.text) == []
    assert "among the newest 3 calls" in part.text
    whole = await client.get("/calls", params={"call_id": "Call-4@pbx.example.net"})
    assert _call_ids(whole.text) == ["Call-4@pbx.example.net"]
    older = await client.get("/calls", params={"call_id": "-4@", "until": NOW.date().isoformat()})
    assert _call_ids(older.text) == []  # only the two-day-old call is before today
    recent = await client.get("/calls", params={"call_id": "-1@"})
    assert _call_ids(recent.text) == ["Call-1@pbx.example.net"]


@pytest.mark.usefixtures("logged")
async def test_the_main_page_charts_the_last_24_hours_of_calls(signed_in: SignIn) -> None:
    client = await signed_in(Role.READ_ONLY)
    page = await client.get("/")
    assert page.status_code == 200
    charts = re.findall(r'<svg class="chart bars".*?</svg>', page.text, re.DOTALL)
    assert len(charts) == 2
    signed, verified = charts
    assert "<title>Signed calls, last 24 hours</title>" in signed
    for label in ("attestation A", "attestation B", "attestation C"):
        assert f">{label}</text>" in signed
    assert ">TN-Validation-Passed</text>" in verified
    assert ">No-TN-Validation (438)</text>" in verified
    # Six calls in the last hour (the two-day-old one is not charted): at most two bars
    # hold them, whichever quarter hours they fall in.
    assert 1 <= len(re.findall(r'<rect class="bar s\d', signed)) <= 6
    totals = re.search(r'<table class="chart-totals">.*?</table>', page.text, re.DOTALL)
    assert totals is not None
    rows = re.findall(r"<tr><td>(\w+)</td><td>([^<]+)</td><td>([\d,]+)</td></tr>", totals[0])
    assert rows == [
        ("signed", "attestation A", "2"),
        ("signed", "attestation B", "1"),
        ("signed", "attestation C", "1"),
        ("verified", "TN-Validation-Passed", "1"),
        ("verified", "No-TN-Validation (438)", "1"),
    ]


async def test_the_main_page_says_when_no_calls_were_logged(signed_in: SignIn) -> None:
    client = await signed_in(Role.READ_ONLY)
    page = await client.get("/")
    assert "No calls signed or verified in these 24 hours." in page.text
    assert page.text.count('<svg class="chart bars"') == 2
