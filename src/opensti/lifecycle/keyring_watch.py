"""Keep the signing keyring on the store's signing state, whoever changed it.

The reconcile loop in this process tells the watcher at once (:meth:`refresh`, its
``activated`` hook); a change made elsewhere (``opensti worker`` or another node on
the same PostgreSQL, a CLI or web edit) arrives as a notification, or on SQLite at
the next poll, through :attr:`KeyringWatcher.watch` run by
:func:`opensti.store.follow_store`. Either way the change is confirmed with one small
query before the keys are reloaded, so signing switches to a new certificate without
a restart and without a database read per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from opensti.signing import Keyring, SigningEntry
from opensti.store import Change, Database, StoreWatch, signing_state

__all__ = ["KeyringWatcher"]


class KeyringWatcher:
    """Replaces ``keyring``'s entries when the signing state in the store changes."""

    def __init__(
        self,
        database: Database,
        keyring: Keyring,
        entries: Callable[[], Iterable[SigningEntry]],
    ) -> None:
        self.keyring = keyring
        self._entries = entries
        self.watch = StoreWatch(database, Change.SIGNING, signing_state, self._reload)

    async def _reload(self) -> None:
        # Loading opens the sealed keys: off the event loop.
        entries = await asyncio.to_thread(lambda: list(self._entries()))
        self.keyring.replace(entries)

    async def refresh(self, _entry_id: int | None = None) -> bool:
        """Reload now if the signing state changed (the reconcile loop's ``activated``
        hook); True if the keyring was replaced."""
        return await self.watch.check()
