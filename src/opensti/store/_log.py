"""The two append-mostly logs: lifecycle events (audit trail) and SIP messages (calls),
with the other providers' certificates that verified calls reference."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Integer, Table, cast, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from opensti.core.errors import InvalidInput
from opensti.store._common import add
from opensti.store._models import (
    CallMinute,
    EventOutcome,
    LifecycleEvent,
    RemoteCertificate,
    SipAction,
    SipDirection,
    SipMessage,
)

__all__ = [
    "CallCount",
    "RemoteCertificateRecord",
    "SipRecord",
    "SipRow",
    "append_sip_messages",
    "append_sip_rows",
    "call_counts",
    "delete_sip_messages_before",
    "list_events",
    "record_event",
    "remote_certificate_ids",
]

MAX_PAGE = 10_000


def record_event(
    session: Session,
    entry_id: int,
    step: str,
    outcome: EventOutcome,
    *,
    at: dt.datetime,
    error: str | None = None,
    certificate_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> LifecycleEvent:
    """One step attempted on an entry. ``error`` is shown to operators: no secrets in it."""
    if not 1 <= len(step) <= 32:
        raise InvalidInput(f"lifecycle step {step!r} must have 1 to 32 characters", value=step)
    event = LifecycleEvent(
        entry_id=entry_id,
        at=at,
        step=step,
        outcome=outcome,
        error=error,
        certificate_id=certificate_id,
        detail=detail,
    )
    return add(session, event, "lifecycle event")


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", value=limit)
    return limit


def list_events(
    session: Session,
    entry_id: int | None = None,
    *,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> Sequence[LifecycleEvent]:
    """Newest first."""
    query = select(LifecycleEvent)
    if entry_id is not None:
        query = query.where(LifecycleEvent.entry_id == entry_id)
    if since is not None:
        query = query.where(LifecycleEvent.at >= since)
    order = (LifecycleEvent.at.desc(), LifecycleEvent.id.desc())
    return session.scalars(query.order_by(*order).limit(_check_limit(limit))).all()


@dataclass(frozen=True, slots=True)
class SipRecord:
    """One call as the signing or verification path hands it to the log writer."""

    at: dt.datetime
    direction: SipDirection
    action: SipAction
    call_id: str
    from_tn: str | None = None
    to_tn: str | None = None
    attest: str | None = None
    verstat: str | None = None
    sip_code: int | None = None
    reason: str | None = None
    certificate_id: int | None = None
    x5u: str | None = None
    remote_certificate_id: int | None = None
    rcd_name: str | None = None
    rcd_icon: str | None = None


class SipRow(NamedTuple):
    """One call log row as the log writer builds it: the columns of :class:`SipMessage`
    in order, enums as their stored text, so a batch goes to the driver as it is."""

    at: dt.datetime
    direction: str
    action: str
    call_id: str
    from_tn: str | None
    to_tn: str | None
    attest: str | None
    verstat: str | None
    sip_code: int | None
    reason: str | None
    certificate_id: int | None
    x5u: str | None
    remote_certificate_id: int | None
    rcd_name: str | None
    rcd_icon: str | None

    @classmethod
    def of(cls, record: SipRecord) -> SipRow:
        return cls(
            record.at,
            record.direction.value,
            record.action.value,
            *(getattr(record, name) for name in cls._fields[3:]),
        )


@dataclass(frozen=True, slots=True)
class RemoteCertificateRecord:
    """What the log keeps of another provider's certificate (see :class:`RemoteCertificate`)."""

    fingerprint: str
    subject: str
    issuer: str
    spc: str | None
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    pem: str


def _insert_new_certificates(session: Session) -> Any:
    """INSERT that skips a fingerprint already stored (the two dialects we run on)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(RemoteCertificate).on_conflict_do_nothing(
            index_elements=["fingerprint"]
        )
    return sqlite.insert(RemoteCertificate).on_conflict_do_nothing(index_elements=["fingerprint"])


def remote_certificate_ids(
    session: Session, certificates: Iterable[RemoteCertificateRecord]
) -> dict[str, int]:
    """The row id of each certificate by fingerprint, inserting the ones not stored yet.

    Safe against another writer storing the same certificate at the same time (the
    insert skips a fingerprint that exists; the ids are read afterwards).
    """
    by_fingerprint = {certificate.fingerprint: certificate for certificate in certificates}
    if not by_fingerprint:
        return {}
    session.execute(
        _insert_new_certificates(session),
        [dataclasses.asdict(certificate) for certificate in by_fingerprint.values()],
    )
    found = session.execute(
        select(RemoteCertificate.fingerprint, RemoteCertificate.id).where(
            RemoteCertificate.fingerprint.in_(by_fingerprint)
        )
    )
    return {fingerprint: ident for fingerprint, ident in found}


#: The call log's tables.
_SIP_TABLE: Table = SipMessage.__table__  # type: ignore[assignment]
_MINUTE_TABLE: Table = CallMinute.__table__  # type: ignore[assignment]
#: DB-API placeholders by the driver's paramstyle (sqlite3: qmark, psycopg: pyformat).
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_MINUTE_KEY = ("minute", "action", "attest", "verstat", "sip_code")
#: Calls per INSERT statement: the database takes them in one step, not one each (and
#: SQLite's driver lets go of the GIL once, not per row). 50 rows bind 750 values, far
#: below SQLite's and PostgreSQL's limits.
ROWS_PER_INSERT = 50
_Time = Callable[[dt.datetime], Any]


class _Writes(NamedTuple):
    """The call log's statements in the driver's own terms, and the time conversion."""

    insert: str
    #: ROWS_PER_INSERT rows at once.
    insert_many: str
    add_counts: str
    time: _Time


def _time_conversion(dialect: Dialect) -> _Time:
    """What the time columns' type writes for an aware datetime; on SQLite the UTC text
    it writes, made in one call for a UTC time (a test checks the two agree)."""
    generic: _Time = _SIP_TABLE.c.at.type.dialect_impl(dialect).bind_processor(dialect) or (
        lambda at: at
    )
    if dialect.name != "sqlite":
        return generic

    def sqlite_text(at: dt.datetime) -> Any:
        if at.tzinfo is not dt.UTC:
            return generic(at)  # another zone, or naive (refused there)
        return at.replace(tzinfo=None).isoformat(" ", "microseconds")

    return sqlite_text


@functools.lru_cache(maxsize=16)
def _writes(dialect: Dialect) -> _Writes:
    """Built once per dialect: only the tables' own names and placeholders go into the
    SQL text, the values go as parameters."""
    mark = _PLACEHOLDERS[dialect.paramstyle]

    def insert(table: Table, columns: Sequence[str], rows: int = 1) -> str:
        marks = ", ".join([f"({', '.join([mark] * len(columns))})"] * rows)
        return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {marks}"  # noqa: S608

    count = (
        f"{insert(_MINUTE_TABLE, [*_MINUTE_KEY, 'calls'])} "
        f"ON CONFLICT ({', '.join(_MINUTE_KEY)}) DO UPDATE "
        f"SET calls = {_MINUTE_TABLE.name}.calls + excluded.calls"
    )
    return _Writes(
        insert(_SIP_TABLE, SipRow._fields),
        insert(_SIP_TABLE, SipRow._fields, ROWS_PER_INSERT),
        count,
        _time_conversion(dialect),
    )


def append_sip_rows(session: Session, rows: Sequence[SipRow]) -> int:
    """Insert a batch, :data:`ROWS_PER_INSERT` rows per statement (one executemany of
    plain tuples), and add it to the per-minute counts (:class:`CallMinute`); returns
    how many rows were written.

    The driver gets the values as they are (only the time converted): SQLAlchemy's
    per-row work on dictionaries, and its ORM upsert, cost more CPU than the inserts
    themselves under call load. Raises ValueError for a naive time, as the column type
    does.
    """
    if not rows:
        return 0
    writes = _writes(session.get_bind().dialect)
    time = writes.time
    values = [(time(row[0]), *row[1:]) for row in rows]
    whole = len(values) - len(values) % ROWS_PER_INSERT
    connection = session.connection()
    if whole:
        chunks = [
            tuple(value for row in values[start : start + ROWS_PER_INSERT] for value in row)
            for start in range(0, whole, ROWS_PER_INSERT)
        ]
        connection.exec_driver_sql(writes.insert_many, chunks)
    if whole < len(values):
        connection.exec_driver_sql(writes.insert, values[whole:])
    counts = Counter(_minute_key(row) for row in rows)
    # Keys in order, so two writers (several nodes on PostgreSQL) lock the same rows in
    # the same order.
    connection.exec_driver_sql(
        writes.add_counts, [(time(key[0]), *key[1:], counts[key]) for key in sorted(counts)]
    )
    return len(rows)


def append_sip_messages(session: Session, records: Iterable[SipRecord]) -> int:
    """:func:`append_sip_rows` for records."""
    return append_sip_rows(session, [SipRow.of(record) for record in records])


def _minute_key(row: SipRow) -> tuple[dt.datetime, str, str, str, int]:
    at = row.at
    minute = (at if at.tzinfo is dt.UTC else at.astimezone(dt.UTC)).replace(second=0, microsecond=0)
    return (minute, row.action, row.attest or "", row.verstat or "", row.sip_code or 0)


@dataclass(frozen=True, slots=True)
class CallCount:
    """Calls of one outcome in one time bucket (``minute``: the bucket's start)."""

    minute: dt.datetime
    action: SipAction
    attest: str
    verstat: str
    sip_code: int
    calls: int


def call_counts(
    session: Session, since: dt.datetime, bucket: dt.timedelta = dt.timedelta(minutes=1)
) -> list[CallCount]:
    """Calls per ``bucket`` (whole minutes) and outcome from ``since`` on: one grouped
    read of a primary-key range of the per-minute counts, as plain rows (a day of
    minutes as ORM objects took longer than the whole page may)."""
    seconds = int(bucket.total_seconds())
    if session.get_bind().dialect.name == "postgresql":
        epoch: Any = func.floor(func.extract("epoch", CallMinute.minute) / seconds)
    else:
        epoch = cast(func.strftime("%s", CallMinute.minute), Integer) // seconds
    keys = (CallMinute.action, CallMinute.attest, CallMinute.verstat, CallMinute.sip_code)
    rows = session.execute(
        select(epoch.label("bucket"), *keys, func.sum(CallMinute.calls))
        .where(CallMinute.minute >= since)
        .group_by(epoch, *keys)
    )
    return [
        CallCount(
            dt.datetime.fromtimestamp(int(number) * seconds, dt.UTC),
            action,
            attest,
            verstat,
            sip_code,
            int(calls),
        )
        for number, action, attest, verstat, sip_code, calls in rows
    ]


def delete_sip_messages_before(
    session: Session, cutoff: dt.datetime, *, limit: int | None = None
) -> int:
    """Retention: drop calls logged before ``cutoff``, at most ``limit`` of the oldest
    (an index range on ``at``); returns how many.

    Call it with a limit in a loop of short transactions until it returns less than the
    limit, so a large purge never holds the write lock (SQLite) or one huge transaction.
    """
    session.execute(delete(CallMinute).where(CallMinute.minute < cutoff))
    condition = SipMessage.at < cutoff
    if limit is not None:
        # Ids first, then a delete by primary key: as one statement, PostgreSQL plans
        # "id IN (subquery)" as a hash join over the whole table.
        oldest = select(SipMessage.id).where(condition).order_by(SipMessage.at)
        condition = SipMessage.id.in_(session.scalars(oldest.limit(_check_limit(limit))).all())
    result = session.execute(
        delete(SipMessage).where(condition).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
