"""With 10,000 calls in the log, the SIP Messages page reads one page through an index:
a bounded number of statements, none of which scans the whole table or sorts it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

from opensti.app import App
from opensti.store import Role, SipAction, SipDirection, SipRecord, append_sip_messages
from tests.web.conftest import SignIn

pytestmark = pytest.mark.db_dialect

CALLS = 10_000


@pytest.fixture
def many_calls(web_app: App) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    records = [
        SipRecord(
            at=start + dt.timedelta(seconds=i),
            direction=SipDirection.INBOUND,
            action=SipAction.VERIFIED,
            call_id=f"c{i}@example.net",
            from_tn=f"1202555{i % 10_000:04d}",
            to_tn="12025550199",
            verstat="TN-Validation-Passed",
            sip_code=302,
        )
        for i in range(CALLS)
    ]
    with web_app.database.session() as session:
        assert append_sip_messages(session, records) == CALLS


@pytest.fixture
def statements(web_app: App) -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, sql: str, params: object, *_: object) -> None:
        seen.append((sql, params))

    engine = web_app.database.engine
    event.listen(engine, "before_cursor_execute", capture)
    yield seen
    event.remove(engine, "before_cursor_execute", capture)


def _plans(web_app: App, seen: list[tuple[str, object]]) -> list[str]:
    """The database's plan of every statement that read the call log, one line each."""
    postgresql = web_app.database.engine.dialect.name == "postgresql"
    explain = "EXPLAIN" if postgresql else "EXPLAIN QUERY PLAN"
    plans = []
    with web_app.database.engine.connect() as conn:
        if postgresql:
            conn.exec_driver_sql("ANALYZE sip_message")  # plans from real statistics
        for sql, params in list(seen):
            if re.search(r"FROM sip_message\b", sql) and not sql.startswith("EXPLAIN"):
                rows = conn.exec_driver_sql(f"{explain} {sql}", params).all()  # type: ignore[arg-type]
                plans.append(" | ".join(str(row[-1]) for row in rows))
    return plans


def _check_sqlite_plan(plan: str) -> None:
    # A number filter looks the number up in the from_tn and to_tn indexes and sorts
    # only the rows they find, as a whole Call-ID does in its index; anything else walks
    # the time index newest first and never sorts the table.
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert not re.search(r"SCAN sip_message(?! USING)", plan), plan
    if "MULTI-INDEX OR" not in plan and "(call_id=?)" not in plan:
        assert "TEMP B-TREE FOR ORDER BY" not in plan, plan


def _check_postgresql_plan(plan: str) -> None:
    # The same on PostgreSQL: an index (or a bitmap of the two number indexes), never
    # a sequential scan of the log; a sort only of what a number lookup found.
    assert "Seq Scan on sip_message" not in plan, plan
    assert "Index" in plan, plan
    if "BitmapOr" not in plan and "Bitmap Index Scan" not in plan and "call_id" not in plan:
        assert "Sort" not in plan, plan


@pytest.mark.usefixtures("many_calls")
@pytest.mark.parametrize(
    "query",
    [
        "",
        "tn=12025550042",
        "tn=1202555004",  # a prefix matching 1% of the log: the number indexes
        "tn=1202",  # a prefix matching every call: the time index, no sort
        "call_id=c42%40example.net",  # a whole Call-ID: its index
        "call_id=42%40",  # a part: the time index, newest first
        "since=2026-01-01&until=2026-01-02",
    ],
)
async def test_calls_page_reads_one_page_by_index(
    web_app: App, signed_in: SignIn, statements: list[tuple[str, object]], query: str
) -> None:
    client = await signed_in(Role.READ_ONLY)
    statements.clear()
    first = await client.get(f"/calls?{query}")
    assert first.status_code == 200
    cursor = re.search(r"cursor=([0-9.]+)", first.text)
    if cursor:
        statements.clear()
        deeper = await client.get(f"/calls?{query}&cursor={cursor.group(1)}")
        assert deeper.status_code == 200
    count = len(statements)
    plans = _plans(web_app, statements)
    assert plans, "the page did not read the call log"
    # A search adds at most two small reads: the count of a number prefix through the
    # indexes, or the whole-Call-ID lookup and the bound of the newest calls.
    assert count <= 8, [sql.split("FROM")[-1][:60] for sql, _ in statements[:count]]
    check = (
        _check_postgresql_plan
        if web_app.database.engine.dialect.name == "postgresql"
        else _check_sqlite_plan
    )
    for plan in plans:
        check(plan)
    with web_app.database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sip_message")).scalar() == CALLS
