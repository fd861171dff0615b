"""Reading the log: filters, keyset pages newest first, and cursors that do not drift."""

from __future__ import annotations

import datetime as dt

import pytest

from opensti.calls import CallLog, find_calls, list_calls
from opensti.core.errors import InvalidInput, NotFound
from opensti.store import SipAction, SipDirection, SipRecord
from tests._site import Site

pytestmark = pytest.mark.db_dialect

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def fill(site: Site) -> None:
    """25 calls a minute apart; every fifth is to 12025550177; 3 share one timestamp."""
    log = CallLog(site.database)
    for n in range(25):
        log.record(
            SipRecord(
                at=NOW + dt.timedelta(minutes=min(n, 22)),
                direction=SipDirection.INBOUND if n % 2 else SipDirection.OUTBOUND,
                action=SipAction.VERIFIED if n % 2 else SipAction.SIGNED,
                call_id=f"c{n:02d}",
                from_tn=f"1202555{n:04d}",
                to_tn="12025550177" if n % 5 == 0 else "12025550199",
            )
        )
    with log:
        assert log.flush()


def test_pages_cover_every_call_once_newest_first(site: Site) -> None:
    fill(site)
    seen: list[str] = []
    cursor = None
    with site.database.read_session() as session:
        while True:
            page = list_calls(session, limit=10, cursor=cursor)
            seen += [m.call_id for m in page.calls]
            cursor = page.next_cursor
            if cursor is None:
                break
    assert sorted(seen) == [f"c{n:02d}" for n in range(25)]
    assert len(seen) == 25
    # Newest first; the three calls at the same minute by insertion order, newest first.
    assert seen[:3] == ["c24", "c23", "c22"]
    assert seen[-1] == "c00"


def test_a_new_call_does_not_shift_the_next_page(site: Site) -> None:
    fill(site)
    with site.database.read_session() as session:
        first = list_calls(session, limit=5)
    log = CallLog(site.database)
    log.record(
        SipRecord(
            at=NOW + dt.timedelta(hours=1),
            direction=SipDirection.INBOUND,
            action=SipAction.VERIFIED,
            call_id="late",
        )
    )
    with log:
        assert log.flush()
    with site.database.read_session() as session:
        second = list_calls(session, limit=5, cursor=first.next_cursor)
    assert [m.call_id for m in second.calls] == ["c19", "c18", "c17", "c16", "c15"]


def test_filters_by_tn_time_and_call_id(site: Site) -> None:
    fill(site)
    with site.database.read_session() as session:
        to_tn = list_calls(session, tn="(202) 555-0177")
        assert sorted(m.call_id for m in to_tn.calls) == ["c00", "c05", "c10", "c15", "c20"]
        from_tn = list_calls(session, tn="+1 202 555 0007")
        assert [m.call_id for m in from_tn.calls] == ["c07"]
        window = list_calls(
            session, since=NOW + dt.timedelta(minutes=3), until=NOW + dt.timedelta(minutes=6)
        )
        assert [m.call_id for m in window.calls] == ["c05", "c04", "c03"]
        assert [m.call_id for m in list_calls(session, call_id="c11").calls] == ["c11"]
        assert list_calls(session, call_id="nope").calls == []
        with pytest.raises(NotFound, match="nope"):
            find_calls(session, "nope")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"cursor": "x.y"}, "cursor")],
)
def test_bad_queries_are_refused(site: Site, options: dict[str, object], message: str) -> None:
    with site.database.read_session() as session, pytest.raises(InvalidInput, match=message):
        list_calls(session, **options)  # type: ignore[arg-type]
