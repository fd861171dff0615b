"""The SIP message log at volume: bulk inserts, and every query of the log on an index.

The plans are the databases' own (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN
after ANALYZE), for the exact statements the store functions send. No timings here:
rates belong in bench/.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from opensti.calls import list_calls
from opensti.store import (
    Database,
    SipAction,
    SipDirection,
    SipMessage,
    SipRecord,
    append_sip_messages,
    delete_sip_messages_before,
)

from .conftest import NOW

pytestmark = pytest.mark.db_dialect

ROWS = 10_000
CALL_ID, FROM_TN, TO_TN = (f"ix_sip_message_{c}" for c in ("call_id", "from_tn", "to_tn"))
AT = "ix_sip_message_at_id"  # the page order (at, id)


def _tn(n: int) -> str:
    return f"1215555{n % 1000:04d}"


def _records() -> Iterator[SipRecord]:
    """One call a second; each number calls ten times and is called ten times."""
    for i in range(ROWS):
        yield SipRecord(
            at=NOW + dt.timedelta(seconds=i),
            direction=SipDirection.OUTBOUND,
            action=SipAction.SIGNED,
            call_id=f"call-{i}@pbx.example",
            from_tn=_tn(i),
            to_tn=_tn(i * 7 + 3),
            attest="A",
            sip_code=302,
        )


@pytest.fixture
def log(db: Database) -> Database:
    with db.session() as session:
        assert append_sip_messages(session, _records()) == ROWS
    if not db.is_sqlite:
        with db.engine.begin() as connection:  # what autovacuum does on a live server
            connection.exec_driver_sql("ANALYZE sip_message")
    return db


def indexes_used(db: Database, query: Callable[[Session], object]) -> set[str]:
    """The indexes the database plans to use for the statements ``query`` sends; fails
    if one of them would scan the whole log."""
    sent: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if statement.lstrip().upper().startswith(("SELECT", "DELETE")):
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with Session(db.engine) as session:  # rolled back: a DELETE leaves the rows
            query(session)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    return {name for statement, parameters in sent for name in _plan(db, statement, parameters)}


def _plan(db: Database, statement: str, parameters: Any) -> set[str]:
    with db.engine.connect() as connection:
        if db.is_sqlite:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plan = " ".join(str(row[-1]) for row in rows)
            assert not re.search(r"\bSCAN sip_message\b(?! USING)", plan), plan
            return set(re.findall(r"INDEX (\w+)", plan))
        (plan,) = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).one()
    return set(_pg_index_names(plan[0]["Plan"]))


def _pg_index_names(node: dict[str, Any]) -> Iterator[str]:
    assert not (node["Node Type"] == "Seq Scan" and node["Relation Name"] == "sip_message"), node
    if "Index Name" in node:
        yield node["Index Name"]
    for child in node.get("Plans", ()):
        yield from _pg_index_names(child)


def test_bulk_insert_writes_every_row(log: Database) -> None:
    with log.read_session() as session:
        assert session.scalar(select(func.count()).select_from(SipMessage)) == ROWS
        newest = list_calls(session, limit=1).calls[0]
        assert newest.call_id == f"call-{ROWS - 1}@pbx.example"


def test_time_range_and_newest_page_use_the_time_index(log: Database) -> None:
    window = {"since": NOW + dt.timedelta(seconds=5000), "until": NOW + dt.timedelta(seconds=5050)}
    with log.read_session() as session:
        assert len(list_calls(session, **window).calls) == 50
    assert AT in indexes_used(log, lambda s: list_calls(s, **window))
    assert AT in indexes_used(log, lambda s: list_calls(s, limit=100))


def test_keyset_pages_use_the_time_index(log: Database) -> None:
    with log.read_session() as session:
        first = list_calls(session, limit=100)
        second = list_calls(session, limit=100, cursor=first.next_cursor)
        assert first.next_cursor is not None
        assert second.calls[0].id == first.calls[-1].id - 1
    used = indexes_used(log, lambda s: list_calls(s, limit=100, cursor=first.next_cursor))
    assert AT in used


def test_call_id_lookup_uses_its_index(log: Database) -> None:
    with log.read_session() as session:
        (call,) = list_calls(session, call_id="call-4242@pbx.example").calls
        assert call.at == NOW + dt.timedelta(seconds=4242)
    used = indexes_used(log, lambda s: list_calls(s, call_id="call-4242@pbx.example"))
    assert CALL_ID in used


def test_number_search_uses_both_number_indexes(log: Database) -> None:
    with log.read_session() as session:
        found = list_calls(session, tn=_tn(42), limit=100).calls
        assert len(found) == 20  # ten calls from it, ten to it
    assert {FROM_TN, TO_TN} <= indexes_used(log, lambda s: list_calls(s, tn=_tn(42)))


def test_retention_deletes_the_oldest_in_index_ranges(log: Database) -> None:
    cutoff = NOW + dt.timedelta(seconds=1200)
    assert AT in indexes_used(log, lambda s: delete_sip_messages_before(s, cutoff, limit=500))
    batches = []
    while not batches or batches[-1] == 500:
        with log.session() as session:
            batches.append(delete_sip_messages_before(session, cutoff, limit=500))
    assert batches == [500, 500, 200]
    with log.read_session() as session:
        oldest = session.scalar(select(func.min(SipMessage.at)))
        assert oldest == cutoff
        assert session.scalar(select(func.count()).select_from(SipMessage)) == ROWS - 1200
