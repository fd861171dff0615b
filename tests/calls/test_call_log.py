"""The call log writer: batches, a bounded queue, retention, and the SIP hook."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select

from opensti.calls import CallLog, certificate_info, find_calls, keyring_certificates
from opensti.config import load_settings
from opensti.core.errors import InvalidInput
from opensti.signing import SigningService
from opensti.sip import CallRecord
from opensti.store import (
    Database,
    SipAction,
    SipDirection,
    SipMessage,
    SipRecord,
    append_sip_messages,
    open_database,
)
from tests._site import SPC, Site

pytestmark = pytest.mark.db_dialect

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def record(n: int, *, at: dt.datetime = NOW, call_id: str | None = None) -> SipRecord:
    return SipRecord(
        at=at,
        direction=SipDirection.OUTBOUND,
        action=SipAction.SIGNED,
        call_id=call_id or f"call-{n}",
        from_tn=f"1202555{n:04d}",
        to_tn="12025550199",
        attest="A",
    )


def rows(database: Database) -> int:
    with database.read_session() as session:
        return session.scalar(select(func.count()).select_from(SipMessage)) or 0


@contextmanager
def commits(database: Database) -> Iterator[list[int]]:
    """Counts the transactions committed on the engine while the block runs."""
    seen: list[int] = []

    def on_commit(_connection: object) -> None:
        seen.append(1)

    event.listen(database.engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(database.engine, "commit", on_commit)


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail("the call log writer did not get there")
        time.sleep(0.01)


def test_records_are_written_in_batches(site: Site) -> None:
    log = CallLog(site.database, batch_size=100)
    for n in range(250):
        assert log.record(record(n))
    with commits(site.database) as seen, log:
        assert log.flush()
    assert rows(site.database) == 250
    assert len(seen) == 3  # 100 + 100 + 50, not one transaction per call
    stats = log.stats()
    assert (stats.queued, stats.written, stats.batches, stats.dropped) == (250, 250, 3, 0)


def test_records_from_many_threads_all_arrive(site: Site) -> None:
    with CallLog(site.database) as log:
        threads = [
            threading.Thread(
                target=lambda k=k: [log.record(record(k * 100 + n)) for n in range(50)]
            )
            for k in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.flush()
    assert rows(site.database) == 200
    assert log.stats().batches <= 200


def test_a_full_queue_drops_and_counts_without_blocking(site: Site) -> None:
    log = CallLog(site.database, max_queue=5)
    accepted = [log.record(record(n)) for n in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert log.stats().dropped == 3
    assert log.pending == 5
    with log:
        assert log.flush()
    assert rows(site.database) == 5
    assert "opensti_call_log_dropped_total 3" in log.metrics_lines()


def test_a_failing_database_loses_the_batch_and_counts_it(database_url: str) -> None:
    database = open_database(database_url)  # no schema: inserts fail
    try:
        with CallLog(database) as log:
            log.record(record(1))
            log.record(record(2))
            assert log.flush()
        stats = log.stats()
        assert (stats.written, stats.lost) == (0, 2)
        assert stats.write_errors >= 1
    finally:
        database.dispose()


def test_retention_deletes_old_calls(site: Site) -> None:
    log = CallLog(site.database, retention_days=30, clock=NOW.timestamp)
    for n in range(3):
        log.record(record(n, at=NOW - dt.timedelta(days=31)))
    log.record(record(9, at=NOW - dt.timedelta(days=29)))
    with log:
        assert log.flush()
        # The writer thread applies retention itself, right after its first batch.
        wait_for(lambda: log.stats().purged == 3)
    with site.database.read_session() as session:
        assert [m.call_id for m in session.scalars(select(SipMessage))] == ["call-9"]
    assert log.purge(NOW.timestamp(), days=1) == 1
    assert rows(site.database) == 0


def test_of_a_servers_processes_only_the_first_applies_retention(site: Site) -> None:
    """``opensti serve --workers N``: N logs over one store; the forked workers' would
    only repeat the first's deletes and wait on its lock."""
    settings = load_settings(data_dir=site.data_dir, call_log_retention_days=30)
    worker = CallLog.from_settings(site.database, settings, purges=False)
    first = CallLog.from_settings(site.database, settings)
    worker._clock = first._clock = NOW.timestamp
    old = NOW - dt.timedelta(days=31)
    with worker:
        worker.record(record(1, at=old))
        assert worker.flush()
    assert worker.stats().purged == 0
    assert rows(site.database) == 1
    with first:
        wait_for(lambda: first.stats().purged == 1)
    assert rows(site.database) == 0


def test_a_large_purge_runs_in_short_transactions(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opensti.calls._recorder.PURGE_BATCH", 2)
    with site.database.session() as session:
        old = NOW - dt.timedelta(days=40)
        append_sip_messages(session, [record(n, at=old) for n in range(5)] + [record(9)])
    log = CallLog(site.database, retention_days=30, clock=NOW.timestamp)
    with commits(site.database) as committed:
        assert log.purge() == 5
    assert len(committed) == 3  # 2 + 2 + 1
    assert log.stats().purged == 5
    assert rows(site.database) == 1


def test_retention_is_at_least_a_day() -> None:
    with pytest.raises(InvalidInput, match="retention"):
        CallLog(None, retention_days=0)  # type: ignore[arg-type]


def test_the_sip_hook_records_the_certificate_that_signed(site: Site) -> None:
    keyring = site.keyring()
    signed = SigningService(keyring).sign("2025550100", "2025550199", attest="B")
    with CallLog(site.database, certificate_for_x5u=keyring_certificates(keyring)) as log:
        log(
            CallRecord(
                time=NOW.timestamp(),
                call_id="abc@host",
                direction="outbound",
                orig="12025550100",
                dest=("12025550199", "12025550198"),
                attest="B",
                verstat=None,
                sip_code=302,
                x5u=signed.x5u,
            )
        )
        log(
            CallRecord(
                time=NOW.timestamp() + 1,
                call_id="abc@host",
                direction="inbound",
                orig="12025550100",
                dest=("12025550199",),
                attest="B",
                verstat="TN-Validation-Passed",
                sip_code=302,
                x5u="https://other.example.net/cert.pem",
            )
        )
        assert log.flush()
    with site.database.read_session() as session:
        out, inbound = find_calls(session, "abc@host")
        assert (out.direction, out.action, out.to_tn) == ("outbound", "signed", "12025550199")
        assert out.certificate_id == site.certificate.id
        info = certificate_info(session, out)
        assert info is not None
        assert info.spc == SPC
        assert info.fingerprint == site.certificate.fingerprint
        assert info.entry == "main"
        assert info.subject is not None
        assert info.issuer is not None
        other = certificate_info(session, inbound)
        assert other is not None
        assert other.certificate_id is None
        assert other.x5u == "https://other.example.net/cert.pem"


def test_a_hostile_call_id_is_clipped_not_fatal(site: Site) -> None:
    with CallLog(site.database) as log:
        log(
            CallRecord(
                time=NOW.timestamp(),
                call_id="x" * 5000,
                direction="inbound",
                orig="1" * 100,
                dest=(),
                attest=None,
                verstat="No-TN-Validation",
                sip_code=302,
                x5u=None,
            )
        )
        assert log.flush()
    assert log.stats().written == 1
