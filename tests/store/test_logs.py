"""Lifecycle events and the SIP message log."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from opensti.calls import list_calls
from opensti.core.errors import InvalidInput
from opensti.store import (
    EventOutcome,
    RemoteCertificate,
    RemoteCertificateRecord,
    SipAction,
    SipDirection,
    SipRecord,
    append_sip_messages,
    call_counts,
    delete_sip_messages_before,
    list_events,
    record_event,
    remote_certificate_ids,
)
from opensti.store._log import _SIP_TABLE, _time_conversion

from .conftest import NOW, add_entry

pytestmark = pytest.mark.db_dialect


def _minutes(n: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=n)


def test_events_are_listed_newest_first_per_entry(db, box) -> None:  # type: ignore[no-untyped-def]
    one = add_entry(db, box, "one", "111A")
    two = add_entry(db, box, "two", "222B")
    with db.session() as session:
        record_event(session, one.id, "spc-token", EventOutcome.SUCCEEDED, at=_minutes(0))
        record_event(
            session,
            one.id,
            "order",
            EventOutcome.FAILED,
            at=_minutes(2),
            error="CA refused: urn:ietf:params:acme:error:unauthorized",
            detail={"attempt": 1},
        )
        record_event(session, two.id, "order", EventOutcome.STARTED, at=_minutes(1))
    with db.read_session() as session:
        events = list_events(session, one.id)
        assert [(e.step, e.outcome) for e in events] == [
            ("order", "failed"),
            ("spc-token", "succeeded"),
        ]
        assert events[0].detail == {"attempt": 1}
        assert events[0].at == _minutes(2)
        assert [e.step for e in list_events(session, since=_minutes(1))] == ["order", "order"]
        assert len(list_events(session, limit=1)) == 1
        with pytest.raises(InvalidInput, match="limit"):
            list_events(session, limit=0)
    with pytest.raises(InvalidInput, match="1 to 32 characters"), db.session() as session:
        record_event(session, one.id, "", EventOutcome.FAILED, at=NOW)


def _record(minute: int, call_id: str, orig: str = "12155550100", **extra: object) -> SipRecord:
    return SipRecord(
        at=_minutes(minute),
        direction=SipDirection.OUTBOUND,
        action=SipAction.SIGNED,
        call_id=call_id,
        from_tn=orig,
        to_tn="12155550199",
        **extra,  # type: ignore[arg-type]
    )


def test_sip_messages_in_bulk_and_queried(db) -> None:  # type: ignore[no-untyped-def]
    records = [_record(i, f"call-{i}@host", attest="A", sip_code=302) for i in range(500)]
    records.append(
        SipRecord(
            at=_minutes(1000),
            direction=SipDirection.INBOUND,
            action=SipAction.VERIFIED,
            call_id="inbound-1",
            from_tn="13015550100",
            to_tn="12155550100",
            verstat="TN-Validation-Passed",
            sip_code=302,
            x5u="https://cr.example.test/a.pem",
        )
    )
    with db.session() as session:
        assert append_sip_messages(session, records) == 501
        assert append_sip_messages(session, []) == 0
    with db.read_session() as session:
        (one,) = list_calls(session, call_id="call-7@host").calls
        assert (one.at, one.attest, one.direction) == (_minutes(7), "A", "outbound")
        newest = list_calls(session, limit=3).calls
        assert [m.call_id for m in newest] == ["inbound-1", "call-499@host", "call-498@host"]
        window = list_calls(session, since=_minutes(10), until=_minutes(13), limit=100).calls
        assert [m.call_id for m in window] == ["call-12@host", "call-11@host", "call-10@host"]
        # tn matches either side: 12155550100 is the orig of 500 calls and the dest of one.
        assert len(list_calls(session, tn="12155550100", limit=1000).calls) == 501
        assert [m.call_id for m in list_calls(session, tn="13015550100").calls] == ["inbound-1"]
    with db.session() as session:
        assert delete_sip_messages_before(session, _minutes(400)) == 400
    with db.read_session() as session:
        assert len(list_calls(session, limit=1000).calls) == 101


def test_naive_datetimes_are_refused(db) -> None:  # type: ignore[no-untyped-def]
    naive = SipRecord(
        at=dt.datetime(2026, 1, 1),  # naive on purpose
        direction=SipDirection.INBOUND,
        action=SipAction.VERIFIED,
        call_id="x",
    )
    with pytest.raises(ValueError, match="naive datetime"), db.session() as session:
        append_sip_messages(session, [naive])


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5))]),
    )
)
def test_the_call_log_writes_the_time_as_its_column_type_does(at: dt.datetime) -> None:
    """The SQLite text is made in one call for a UTC time: it must be the type's own."""
    dialect = sqlite.dialect()
    generic = _SIP_TABLE.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    assert generic is not None
    assert _time_conversion(dialect)(at) == generic(at)


def test_other_time_zones_are_stored_as_utc(db) -> None:  # type: ignore[no-untyped-def]
    paris = dt.timezone(dt.timedelta(hours=1))
    with db.session() as session:
        append_sip_messages(session, [replace(_record(0, "tz"), at=NOW.astimezone(paris))])
    with db.read_session() as session:
        (stored,) = list_calls(session, call_id="tz").calls
        assert stored.at == NOW
        assert stored.at.utcoffset() == dt.timedelta(0)


def _remote(fingerprint: str, subject: str = "CN=Peer") -> RemoteCertificateRecord:
    return RemoteCertificateRecord(
        fingerprint=fingerprint,
        subject=subject,
        issuer="CN=Some CA",
        spc="456Z",
        serial="1f",
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=30),
        pem="-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
    )


def test_remote_certificates_are_stored_once_per_fingerprint(db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        first = remote_certificate_ids(session, [_remote("a" * 64), _remote("b" * 64)])
        assert remote_certificate_ids(session, []) == {}
    with db.session() as session:
        # Stored already (say by another writer): the same id, the first details kept.
        again = remote_certificate_ids(session, [_remote("a" * 64, "CN=Other"), _remote("c" * 64)])
        assert again["a" * 64] == first["a" * 64]
        append_sip_messages(session, [_record(0, "in@host", remote_certificate_id=again["c" * 64])])
    with db.read_session() as session:
        rows = session.scalars(select(RemoteCertificate).order_by(RemoteCertificate.id)).all()
        assert [(r.fingerprint[0], r.subject) for r in rows] == [
            ("a", "CN=Peer"),
            ("b", "CN=Peer"),
            ("c", "CN=Peer"),
        ]
        assert rows[0].first_seen is not None
        (call,) = list_calls(session, call_id="in@host").calls
        assert call.remote_certificate_id == again["c" * 64]
    with db.session() as session:  # retention drops calls, never the certificates
        assert delete_sip_messages_before(session, _minutes(10)) == 1
    with db.read_session() as session:
        assert len(session.scalars(select(RemoteCertificate)).all()) == 3


def test_the_log_counts_calls_per_minute_and_outcome(db) -> None:  # type: ignore[no-untyped-def]
    """What the dashboard charts: counts added batch by batch, dropped with the calls."""
    first = [_record(i // 2, f"a-{i}", attest="A", sip_code=302) for i in range(4)]
    second = [
        _record(1, "a-late", attest="A", sip_code=302),
        replace(
            _record(1, "v-1"),
            action=SipAction.VERIFIED,
            verstat="No-TN-Validation",
            sip_code=438,
        ),
    ]
    with db.session() as session:
        append_sip_messages(session, first)
        append_sip_messages(session, second)
    with db.read_session() as session:
        counts = {
            (row.minute, row.action.value, row.attest, row.verstat, row.sip_code): row.calls
            for row in call_counts(session, _minutes(0))
        }
    assert counts == {
        (_minutes(0), "signed", "A", "", 302): 2,
        (_minutes(1), "signed", "A", "", 302): 3,
        (_minutes(1), "verified", "", "No-TN-Validation", 438): 1,
    }
    with db.session() as session:
        delete_sip_messages_before(session, _minutes(1))
    with db.read_session() as session:
        assert {row.minute for row in call_counts(session, _minutes(-60))} == {_minutes(1)}
