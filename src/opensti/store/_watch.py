"""Seeing, on every node, that what it signs with or publishes changed.

A signer keeps its keys in memory and the STI-CR its chains; when any node activates
a certificate, stores a new chain or edits an entry, every node must reload within
seconds. On PostgreSQL the writing transaction sends a notification at commit (see
:mod:`opensti.store._changes`) and one ``LISTEN`` connection per node wakes the
watches of the kind it names; on SQLite, which has no such thing and only one node,
the watches poll. Either way each :class:`StoreWatch` confirms a change against a
small query (its *snapshot*) before its callback runs, so bursts and stray
notifications cost one query, not a reload each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Sequence
from contextlib import aclosing

from sqlalchemy import and_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from opensti.core.errors import StoreUnavailable
from opensti.store._certificates import published_certificate_ids
from opensti.store._changes import CERTIFICATES_CHANNEL, Change, parse_payload
from opensti.store._database import Database, store_problem
from opensti.store._models import Certificate, CertificateEntry, CertificateState

__all__ = [
    "StoreWatch",
    "follow_store",
    "signing_state",
    "watch_active_certificates",
    "watch_published_certificates",
]

#: Longest wait before retrying a lost database connection.
MAX_RETRY_SECONDS = 30.0

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[object] | object]
Snapshot = Callable[[Session], Hashable]
_NOTHING_SEEN = object()


def signing_state(session: Session) -> tuple[Hashable, ...]:
    """Everything the STI-AS takes from the store, in one small query: each enabled
    entry's signing settings (Rich Call Data included) and active certificate (an
    entry without one still claims its calls)."""
    query = (
        select(
            CertificateEntry.id,
            CertificateEntry.name,
            CertificateEntry.spc,
            CertificateEntry.orig_prefixes,
            CertificateEntry.is_default_signer,
            CertificateEntry.default_attest,
            CertificateEntry.rcd_name,
            CertificateEntry.rcd_icon_url,
            CertificateEntry.rcd_icon_digest,
            Certificate.id,
        )
        .outerjoin(
            Certificate,
            and_(
                Certificate.entry_id == CertificateEntry.id,
                Certificate.state == CertificateState.ACTIVE,
            ),
        )
        .where(CertificateEntry.enabled.is_(True))
        .order_by(CertificateEntry.id)
    )
    return tuple((*row[:3], tuple(row[3] or ()), *row[4:]) for row in session.execute(query))


class StoreWatch:
    """One thing a node holds in memory: the kind of change that concerns it, the
    snapshot that confirms a change, and the callback that reloads it.

    :meth:`check` may also be called by the process itself (e.g. right after its own
    reconcile loop activated a certificate); the watch then does not reload again for
    the notification of that same change. An exception from the callback is logged,
    and the next wake-up tries again.
    """

    def __init__(
        self, database: Database, kind: Change, snapshot: Snapshot, callback: Callback
    ) -> None:
        self.database = database
        self.kind = kind
        self._snapshot = snapshot
        self._callback = callback
        self._seen: object = _NOTHING_SEEN
        self._lock = asyncio.Lock()

    async def check(self) -> bool:
        """Reload if the snapshot changed since the last successful reload; True if so."""
        async with self._lock:
            current = await asyncio.to_thread(self._read)
            if current == self._seen:
                return False
            self._seen = current if await _run(self._callback) else _NOTHING_SEEN
            return True

    def _read(self) -> Hashable:
        with self.database.read_session() as session:
            return self._snapshot(session)


async def follow_store(
    database: Database,
    watches: Sequence[StoreWatch],
    *,
    poll_interval: float = 2.0,
    resync_interval: float = 60.0,
) -> None:
    """Run until cancelled: check every watch once the wake-ups are in place (closing
    the gap between the caller's first load and the watch), then the watches of each
    change made by any process on this database.

    SQLite is polled every ``poll_interval`` seconds; PostgreSQL is woken by NOTIFY on
    one connection and also checked every ``resync_interval`` seconds. A lost
    connection is retried with backoff and followed by a check of every watch, so
    changes made meanwhile are not missed.
    """
    retry = poll_interval
    while True:
        try:
            wakeups = _wakeups(database, poll_interval, resync_interval)
            async with aclosing(wakeups) as kinds_seen:
                async for kinds in kinds_seen:
                    for watch in watches:
                        if watch.kind in kinds:
                            await watch.check()
                    retry = poll_interval
        except _transient_errors() as exc:
            log.warning("store watch lost the database (%s); retrying", store_problem(exc))
            await asyncio.sleep(retry)
            retry = min(retry * 2, MAX_RETRY_SECONDS)


async def watch_active_certificates(
    database: Database,
    callback: Callback,
    *,
    poll_interval: float = 2.0,
    resync_interval: float = 60.0,
) -> None:
    """Run until cancelled: call ``callback`` once the watch is in place, then after
    each change of what signers use (:func:`signing_state`), made by any process."""
    watch = StoreWatch(database, Change.SIGNING, signing_state, callback)
    await follow_store(
        database, [watch], poll_interval=poll_interval, resync_interval=resync_interval
    )


def published_snapshot(clock: Callable[[], dt.datetime]) -> Snapshot:
    """The ids the STI-CR should serve at ``clock()``: what confirms a reload."""

    def snapshot(session: Session) -> tuple[int, ...]:
        return published_certificate_ids(session, now=clock())

    return snapshot


async def watch_published_certificates(
    database: Database,
    callback: Callback,
    *,
    clock: Callable[[], dt.datetime],
    poll_interval: float = 2.0,
    resync_interval: float = 60.0,
) -> None:
    """Run until cancelled: call ``callback`` once the watch is in place, then after
    each change of the published chains, made by any process."""
    watch = StoreWatch(database, Change.PUBLISHED, published_snapshot(clock), callback)
    await follow_store(
        database, [watch], poll_interval=poll_interval, resync_interval=resync_interval
    )


async def _run(callback: Callback) -> bool:
    try:
        result = callback()
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("store watch callback failed")
        return False
    return True


_EVERY_KIND = frozenset(Change)


def _wakeups(
    database: Database, poll_interval: float, resync_interval: float
) -> AsyncGenerator[frozenset[Change]]:
    if database.engine.dialect.name == "postgresql":
        return _notifications(database, resync_interval)
    return _ticks(poll_interval)


async def _ticks(interval: float) -> AsyncGenerator[frozenset[Change]]:
    while True:
        yield _EVERY_KIND
        await asyncio.sleep(interval)


async def _notifications(
    database: Database, resync_interval: float
) -> AsyncGenerator[frozenset[Change]]:
    """Every kind once LISTEN is in place and after ``resync_interval`` without a
    notification; the kind a notification names after each one."""
    import psycopg

    args, kwargs = database.engine.dialect.create_connect_args(database.url)
    kwargs.pop("context", None)  # the sync engine's adapters; the defaults suit us
    connection = await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True)
    async with connection:
        await connection.execute(f"LISTEN {CERTIFICATES_CHANNEL}")
        yield _EVERY_KIND
        while True:
            # Several notifications read at once come out together (stop_after is a
            # lower bound): the kinds of all of them, so a burst costs one check.
            kinds: frozenset[Change] = frozenset()
            async for notification in connection.notifies(timeout=resync_interval, stop_after=1):
                kinds |= parse_payload(notification.payload)
            yield kinds or _EVERY_KIND


def _transient_errors() -> tuple[type[BaseException], ...]:
    # StoreUnavailable: a read the store refused, e.g. SQLite locked past its busy
    # timeout by another process (a worker stopped mid-transaction, a backup). It once
    # ended `opensti serve`; the watch waits and checks again instead.
    errors: tuple[type[BaseException], ...] = (DBAPIError, OSError, StoreUnavailable)
    try:
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.Error)
