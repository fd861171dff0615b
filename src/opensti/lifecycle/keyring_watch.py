"""Keep the signing keyring on the active certificates, whoever activated them.

The reconcile loop in this process tells the watcher at once (:meth:`refresh`); a
worker elsewhere (``opensti worker`` on another node, same database) is noticed by a
cheap poll of the active certificate ids every few seconds, so signing switches to a
new certificate without a restart and without a database read per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from sqlalchemy import select

from opensti.signing import Keyring, SigningEntry
from opensti.store import Certificate, CertificateEntry, CertificateState, Database

__all__ = ["KeyringWatcher"]

_log = logging.getLogger(__name__)

Fingerprint = frozenset[tuple[int, int | None, bool]]


class KeyringWatcher:
    """Replaces ``keyring``'s entries when the set of active certificates changes."""

    def __init__(
        self,
        database: Database,
        keyring: Keyring,
        entries: Callable[[], Iterable[SigningEntry]],
        *,
        interval: float = 3.0,
    ) -> None:
        self.database = database
        self.keyring = keyring
        self._entries = entries
        self.interval = interval
        self._seen: Fingerprint | None = None

    def _fingerprint(self) -> Fingerprint:
        """(entry, active certificate, enabled) for every entry: changes on activation."""
        with self.database.read_session() as session:
            rows = session.execute(
                select(CertificateEntry.id, Certificate.id, CertificateEntry.enabled).outerjoin(
                    Certificate,
                    (Certificate.entry_id == CertificateEntry.id)
                    & (Certificate.state == CertificateState.ACTIVE),
                )
            ).all()
        return frozenset((entry_id, cert_id, enabled) for entry_id, cert_id, enabled in rows)

    def check(self) -> bool:
        """Reload the keyring if the active certificates changed; True if it did."""
        seen = self._fingerprint()
        if seen == self._seen:
            return False
        self.keyring.replace(self._entries())
        self._seen = seen
        return True

    async def refresh(self, _entry_id: int | None = None) -> None:
        """Check now (the reconcile loop's ``activated`` hook)."""
        await asyncio.to_thread(self.check)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:
                # Keep signing with the keys we have; try again at the next poll.
                _log.exception("refreshing the signing keyring failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
