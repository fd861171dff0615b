"""Seeing, on every node, that the set of active certificates changed.

A signer keeps its keys in memory; when the reconcile loop on any node activates (or
revokes) a certificate, every node must reload within seconds. On PostgreSQL the
writing transaction sends ``NOTIFY opensti_certificates`` (delivered at commit, never
for a rollback) and each watcher holds a ``LISTEN`` connection; on SQLite, which has
no such thing and only one node, the watcher polls. Either way a change is confirmed
against the active certificates' ids before the callback runs, so bursts and stray
notifications cost one small query, not a reload each.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from opensti.store._database import Database
from opensti.store._models import Certificate, CertificateState

__all__ = [
    "CERTIFICATES_CHANNEL",
    "active_certificate_ids",
    "notify_active_certificates_changed",
    "watch_active_certificates",
]

CERTIFICATES_CHANNEL = "opensti_certificates"
#: Longest wait before retrying a lost database connection.
MAX_RETRY_SECONDS = 30.0

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[object] | object]


def notify_active_certificates_changed(session: Session, entry_id: int) -> None:
    """Tell other nodes, when this transaction commits, that ``entry_id``'s active
    certificate changed; on SQLite nothing to do (watchers poll)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CERTIFICATES_CHANNEL, str(entry_id))))


def active_certificate_ids(session: Session) -> tuple[int, ...]:
    """What a watcher compares: changes exactly when a certificate becomes or stops
    being active (one row per entry, so the query stays small)."""
    query = (
        select(Certificate.id)
        .where(Certificate.state == CertificateState.ACTIVE)
        .order_by(Certificate.id)
    )
    return tuple(session.scalars(query))


async def watch_active_certificates(
    db: Database,
    callback: Callback,
    *,
    poll_interval: float = 2.0,
    resync_interval: float = 60.0,
) -> None:
    """Run until cancelled: call ``callback`` once the watch is in place, then after each
    change of the active certificates (made by any process on this database).

    The first call closes the gap between the caller's own first load and the watch.
    SQLite is polled every ``poll_interval`` seconds; PostgreSQL is woken by NOTIFY and
    also checked every ``resync_interval`` seconds. A lost connection is retried with
    backoff and followed by a check, so changes made meanwhile are not missed. The
    callback may be a coroutine function; an exception from it is logged, not raised.
    """
    seen: tuple[int, ...] | None = None
    retry = poll_interval
    while True:
        try:
            async with aclosing(_wakeups(db, poll_interval, resync_interval)) as wakeups:
                async for _ in wakeups:
                    current = await asyncio.to_thread(_read_active_ids, db)
                    retry = poll_interval
                    if current != seen:
                        seen = current
                        await _run(callback)
        except _transient_errors() as exc:
            log.warning("certificate watch lost the database (%s); retrying", type(exc).__name__)
            await asyncio.sleep(retry)
            retry = min(retry * 2, MAX_RETRY_SECONDS)


def _read_active_ids(db: Database) -> tuple[int, ...]:
    with db.read_session() as session:
        return active_certificate_ids(session)


async def _run(callback: Callback) -> None:
    try:
        result = callback()
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("certificate watch callback failed")


def _wakeups(db: Database, poll_interval: float, resync_interval: float) -> AsyncGenerator[None]:
    if db.engine.dialect.name == "postgresql":
        return _notifications(db, resync_interval)
    return _ticks(poll_interval)


async def _ticks(interval: float) -> AsyncGenerator[None]:
    while True:
        yield
        await asyncio.sleep(interval)


async def _notifications(db: Database, resync_interval: float) -> AsyncGenerator[None]:
    """Once LISTEN is in place, then after each notification or ``resync_interval``."""
    import psycopg

    args, kwargs = db.engine.dialect.create_connect_args(db.url)
    kwargs.pop("context", None)  # the sync engine's adapters; the defaults suit us
    connection = await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True)
    async with connection:
        await connection.execute(f"LISTEN {CERTIFICATES_CHANNEL}")
        while True:
            yield
            async for _ in connection.notifies(timeout=resync_interval, stop_after=1):
                pass


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (DBAPIError, OSError)
    try:
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.Error)
