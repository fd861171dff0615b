"""Refresh across nodes: a watch on one engine sees, through another, the changes of what
a node signs with (activations, revocations, entry edits) and of what it publishes.

Runs on the --db-url database (SQLite by default: polling) and, for the LISTEN/NOTIFY
path, on PostgreSQL whatever --db-url says (a throwaway cluster if need be).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from opensti.sandbox.pki import DemoPKI, private_key_pem
from opensti.store import (
    CERTIFICATES_CHANNEL,
    CertificateState,
    Database,
    Secret,
    SecretBox,
    _database,
    activate_certificate,
    add_certificate,
    create_pending_certificate,
    get_entry_by_id,
    open_database,
    record_issued_chain,
    set_certificate_state,
    upgrade,
    watch_active_certificates,
    watch_published_certificates,
)

from .conftest import NOW, add_entry, lock_out_readers

pytestmark = pytest.mark.db_dialect

#: A deadline for the watcher, not a measurement: the promise is "within seconds".
DEADLINE = 10.0


class Watcher:
    """The callback of a watch: counts its calls, and fails each one if told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: asyncio.Queue[None] = asyncio.Queue()
        self.count = 0
        self.fail = fail

    def __call__(self) -> None:
        self.count += 1
        self.calls.put_nowait(None)
        if self.fail:
            raise RuntimeError("keyring reload failed")

    async def next_call(self) -> None:
        await asyncio.wait_for(self.calls.get(), DEADLINE)


@asynccontextmanager
async def watching(
    url: str, watcher: Watcher | None = None, **options: float
) -> AsyncIterator[Watcher]:
    """A watch on its own engine, as another node would run it; stopped on exit (it
    must still be running then)."""
    database = open_database(url)
    watcher = watcher or Watcher()
    task = asyncio.create_task(watch_active_certificates(database, watcher, **options))
    try:
        await watcher.next_call()  # the watch is in place
        yield watcher
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        database.dispose()


def activate_new(db: Database, box: SecretBox, pki: DemoPKI, entry_id: int) -> int:
    """The reconcile loop's way: a pending certificate, its chain, then activation."""
    key, cert = pki.issue("123H")
    with db.session() as session:
        pending = create_pending_certificate(
            session, box, entry_id, key_pem=Secret(private_key_pem(key)), now=NOW
        )
        record_issued_chain(session, box, pending, pki.chain_pem(cert))
        return activate_certificate(session, pending.id, now=NOW).id


def import_active(db: Database, box: SecretBox, pki: DemoPKI, entry_id: int) -> int:
    key, cert = pki.issue("123H")
    with db.session() as session:
        return add_certificate(
            session,
            box,
            entry_id,
            chain_pem=pki.chain_pem(cert),
            key_pem=Secret(private_key_pem(key)),
            now=NOW,
            activate=True,
        ).id


async def test_changes_through_another_engine_reach_the_watcher(
    db: Database, box: SecretBox, pki: DemoPKI, database_url: str
) -> None:
    entry = add_entry(db, box)
    async with watching(database_url, poll_interval=0.1) as watcher:
        import_active(db, box, pki, entry.id)
        await watcher.next_call()
        second = activate_new(db, box, pki, entry.id)  # supersedes the first
        await watcher.next_call()
        with db.session() as session:
            get_entry_by_id(session, entry.id).last_error = "not what signers read"
        await asyncio.sleep(0.5)  # several polls: none may call back
        with db.session() as session:
            set_certificate_state(session, second, CertificateState.REVOKED, now=NOW)
        await watcher.next_call()
        assert watcher.count == 4


async def test_a_sqlite_file_locked_past_the_busy_timeout_is_waited_out(
    tmp_path: Path,
    box: SecretBox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another process holding SQLite's lock longer than the busy timeout (a worker
    stopped mid-transaction, a backup) made the watch's read fail, and that ended
    ``opensti serve``. The watch now logs it, waits, and goes on once the lock goes."""
    monkeypatch.setattr(_database, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "store.db"
    db = open_database(f"sqlite:///{path}")
    upgrade(db)
    add_entry(db, box)
    db.dispose()
    holder = lock_out_readers(path)
    watched = open_database(f"sqlite:///{path}")
    watcher = Watcher()
    task = asyncio.create_task(watch_active_certificates(watched, watcher, poll_interval=0.05))
    try:
        async with asyncio.timeout(DEADLINE):
            while "store watch lost the database" not in caplog.text:
                await asyncio.sleep(0.05)
        assert "database is locked" in caplog.text
        assert watcher.count == 0
        holder.close()
        await watcher.next_call()  # the watch went on, and is in place
        assert not task.done()
    finally:
        holder.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        watched.dispose()


@pytest.mark.parametrize(
    "edit",
    [
        lambda entry: setattr(entry, "enabled", False),
        lambda entry: setattr(entry, "orig_prefixes", ["1202"]),
        # The first active entry is the default signer already: unsetting it is the edit.
        lambda entry: setattr(entry, "is_default_signer", False),
        lambda entry: setattr(entry, "default_attest", "A"),
    ],
    ids=["disable", "prefixes", "default", "attest"],
)
async def test_an_entry_edit_signers_see_reaches_the_watcher(
    db: Database, box: SecretBox, pki: DemoPKI, database_url: str, edit: Any
) -> None:
    entry = add_entry(db, box)
    import_active(db, box, pki, entry.id)
    async with watching(database_url, poll_interval=0.1, resync_interval=3600) as watcher:
        with db.session() as session:
            edit(get_entry_by_id(session, entry.id))
        await watcher.next_call()
        assert watcher.count == 2


async def test_a_failing_callback_is_retried_until_it_succeeds(
    db: Database, box: SecretBox, pki: DemoPKI, database_url: str
) -> None:
    entry = add_entry(db, box)
    failing = Watcher(fail=True)
    # The first call fails; the watch tries again at the next wake-up (a poll, or the
    # resync on PostgreSQL) although nothing changed since.
    async with watching(database_url, failing, poll_interval=0.1, resync_interval=0.1):
        await failing.next_call()
        failing.fail = False
        await failing.next_call()
        settled = failing.count
        await asyncio.sleep(0.5)
        assert failing.count == settled  # a success is not repeated
        import_active(db, box, pki, entry.id)
        await failing.next_call()
    assert failing.count == settled + 1


async def test_published_watch_follows_chains_not_activations(
    db: Database, box: SecretBox, pki: DemoPKI, database_url: str
) -> None:
    entry = add_entry(db, box)
    database = open_database(database_url)
    watcher = Watcher()
    watch = watch_published_certificates(
        database, watcher, clock=lambda: NOW, poll_interval=0.1, resync_interval=3600
    )
    task = asyncio.create_task(watch)
    try:
        await watcher.next_call()  # the watch is in place
        key, cert = pki.issue("123H")
        with db.session() as session:
            pending = create_pending_certificate(
                session, box, entry.id, key_pem=Secret(private_key_pem(key)), now=NOW
            )
        await asyncio.sleep(0.5)  # a pending certificate without its chain is not published
        with db.session() as session:
            record_issued_chain(session, box, session.merge(pending), pki.chain_pem(cert))
        await watcher.next_call()
        with db.session() as session:
            activate_certificate(session, pending.id, now=NOW)  # already published
        await asyncio.sleep(0.5)
        with db.session() as session:
            set_certificate_state(session, pending.id, CertificateState.REVOKED, now=NOW)
        await watcher.next_call()
        assert watcher.count == 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        database.dispose()


@pytest.mark.integration
async def test_postgresql_notify_wakes_the_watcher_without_polling(
    pg: Database, box: SecretBox, pki: DemoPKI, postgres_url: str
) -> None:
    entry = add_entry(pg, box)
    # With an hour between checks, only the NOTIFY sent at commit can wake the watcher.
    async with watching(postgres_url, resync_interval=3600) as watcher:
        activate_new(pg, box, pki, entry.id)
        await watcher.next_call()
        import_active(pg, box, pki, entry.id)
        await watcher.next_call()
        assert watcher.count == 3


@pytest.mark.integration
async def test_postgresql_watcher_reconnects_and_catches_up(
    pg: Database, box: SecretBox, pki: DemoPKI, postgres_url: str
) -> None:
    entry = add_entry(pg, box)
    async with watching(postgres_url, poll_interval=0.2, resync_interval=3600) as watcher:
        with pg.engine.begin() as connection:
            killed = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            ).all()
        assert killed == [(True,)]
        # Made while the listener may be gone: the check after reconnecting finds it.
        import_active(pg, box, pki, entry.id)
        await watcher.next_call()
        assert watcher.count == 2


@pytest.mark.integration
def test_postgresql_notifications_name_what_changed(
    pg: Database, box: SecretBox, pki: DemoPKI
) -> None:
    entry = add_entry(pg, box)
    listener = pg.engine.raw_connection()
    try:
        connection = listener.driver_connection
        assert connection is not None
        connection.autocommit = True
        connection.execute(f"LISTEN {CERTIFICATES_CHANNEL}")

        def sent() -> list[str]:
            return [n.payload for n in connection.notifies(timeout=0.5)]

        key, cert = pki.issue("123H")
        with pg.session() as session:
            pending = create_pending_certificate(
                session, box, entry.id, key_pem=Secret(private_key_pem(key)), now=NOW
            )
            record_issued_chain(session, box, pending, pki.chain_pem(cert))
        assert sent() == [f"published:{entry.id}"]
        with pg.session() as session:
            activate_certificate(session, pending.id, now=NOW)
            get_entry_by_id(session, entry.id).last_error = None  # signers do not read it
        assert sent() == [f"signing:{entry.id}"]
        with pg.session() as session:
            get_entry_by_id(session, entry.id).orig_prefixes = ["1202"]
        assert sent() == [f"signing:{entry.id}"]
        with pg.session() as session:
            set_certificate_state(session, pending.id, CertificateState.REVOKED, now=NOW)
        assert sent() == [f"published:{entry.id}", f"signing:{entry.id}"]
        with pg.session() as session:
            session.delete(get_entry_by_id(session, entry.id))
        assert sent() == [f"published:{entry.id}", f"signing:{entry.id}"]
        other = add_entry(pg, box, "other", "456J")  # it claims calls from now on
        assert sent() == [f"signing:{other.id}"]
        with pg.session() as session:
            get_entry_by_id(session, other.id).last_error = "x"
        assert sent() == []
    finally:
        listener.close()
