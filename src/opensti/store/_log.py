"""The two append-mostly logs: lifecycle events (audit trail) and SIP messages (calls),
with the other providers' certificates that verified calls reference."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from opensti.core.errors import InvalidInput
from opensti.store._common import add
from opensti.store._models import (
    EventOutcome,
    LifecycleEvent,
    RemoteCertificate,
    SipAction,
    SipDirection,
    SipMessage,
)

__all__ = [
    "RemoteCertificateRecord",
    "SipRecord",
    "append_sip_messages",
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


_SIP_FIELDS = tuple(field.name for field in dataclasses.fields(SipRecord))


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


#: The call log's table, for Core inserts.
_SIP_TABLE: Table = SipMessage.__table__  # type: ignore[assignment]


def append_sip_messages(session: Session, records: Iterable[SipRecord]) -> int:
    """Insert a batch in one executemany; returns how many rows were written."""
    rows = [{name: getattr(record, name) for name in _SIP_FIELDS} for record in records]
    if rows:
        # The table, not the mapped class: a Core executemany skips the ORM's per-row
        # bookkeeping, which cost more CPU than the insert itself under call load.
        session.execute(insert(_SIP_TABLE), rows)
    return len(rows)


def delete_sip_messages_before(
    session: Session, cutoff: dt.datetime, *, limit: int | None = None
) -> int:
    """Retention: drop calls logged before ``cutoff``, at most ``limit`` of the oldest
    (an index range on ``at``); returns how many.

    Call it with a limit in a loop of short transactions until it returns less than the
    limit, so a large purge never holds the write lock (SQLite) or one huge transaction.
    """
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
