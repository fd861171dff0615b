"""Several ``opensti worker`` processes on one database (SQLite, and PostgreSQL as the
scale-out set-up has it): the entry leases keep each entry to one worker, so every
entry gets exactly one certificate and the CA issues no more than that. On
PostgreSQL, ten entries with 40-second certificates keep renewing while one worker is
killed with SIGKILL in the middle of a renewal: the others take its entries over once
its lease expires, and no entry ever has two orders in flight."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from opensti.store import Certificate, CertificateEntry, CertificateState, LifecycleEvent
from tests._databases import PostgresServer, postgres_installed, throwaway_cluster
from tests.lifecycle.cluster_support import order_overlaps, wait_for
from tests.lifecycle.reconcile_support import SPCS, World, start_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPENSTI = str(Path(sys.executable).with_name("opensti"))
ENTRIES = tuple(f"e{spc}" for spc in SPCS)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    if not postgres_installed():
        pytest.skip("PostgreSQL is not installed")
    with throwaway_cluster() as url:
        server = PostgresServer(url)
        try:
            with server.database() as database:
                yield database
        finally:
            server.close()


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    with start_world(tmp_path, repository=False, database_url=database_url) as started:
        started.add_entries(*SPCS)
        yield started
        started.app.database.dispose()


def test_three_workers_one_certificate_per_entry(world: World) -> None:
    workers = [
        subprocess.Popen(
            [OPENSTI, "worker", "--tick=0.05", f"--worker-id=w{n}"],
            env=world.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(3)
    ]
    try:
        deadline = time.monotonic() + 90
        while not all(world.active(name) for name in ENTRIES):
            assert time.monotonic() < deadline, "the workers did not get every certificate"
            time.sleep(0.1)
        time.sleep(2)  # let any duplicate work show
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=30) for worker in workers]
    assert codes == [0, 0, 0], [w.stderr.read().decode() for w in workers if w.stderr]
    for name in ENTRIES:
        assert [c.state for c in world.certificates(name)] == [CertificateState.ACTIVE]
    assert sorted(world.issued_serials()) == sorted(world.stored_serials())
    assert len(world.issued_serials()) == len(ENTRIES)


#: Ten SPCs the sandbox's STI-PA account may request tokens for.
TEN_SPCS = tuple(f"{n}A" for n in range(100, 110))
CERT_VALIDITY = dt.timedelta(seconds=40)
LEASE_TTL = 3.0


@pytest.fixture
def postgres_world(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[World]:
    with (
        postgres_server.database() as url,
        start_world(
            tmp_path, repository=False, database_url=url, spcs=TEN_SPCS, cert_validity=CERT_VALIDITY
        ) as started,
    ):
        started.add_entries(*TEN_SPCS)
        yield started
        started.app.database.dispose()


def _worker(world: World, worker_id: str) -> subprocess.Popen[bytes]:
    command = [
        OPENSTI, "worker", "--tick=0.1", "--backoff-initial=0.5", "--backoff-max=2",
        f"--lease-ttl={LEASE_TTL}", f"--worker-id={worker_id}",
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=world.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _held_in_flight(world: World, holder: str, *, alive: bool = True) -> dict[int, dt.datetime]:
    """Entries ``holder`` leases (unexpired, if ``alive``) while one of their
    certificates is pending: id -> lease expiry."""
    now = dt.datetime.now(dt.UTC) if alive else dt.datetime.min.replace(tzinfo=dt.UTC)
    with world.app.database.read_session() as session:
        rows = session.execute(
            select(CertificateEntry.id, CertificateEntry.lease_expires_at)
            .join(Certificate, Certificate.entry_id == CertificateEntry.id)
            .where(
                CertificateEntry.lease_holder == holder,
                CertificateEntry.lease_expires_at > now,
                Certificate.state == CertificateState.PENDING,
            )
        ).all()
    return {entry_id: expires for entry_id, expires in rows if expires is not None}


def _renewed_everywhere(world: World, since: dt.datetime, entries: Iterable[int]) -> bool:
    """Every entry renewed at least once, and ``entries`` activated again after ``since``."""
    with world.app.database.read_session() as session:
        certs = list(session.scalars(select(Certificate)))
    activations: dict[int, list[dt.datetime]] = {}
    for cert in certs:
        if cert.activated_at is not None:
            activations.setdefault(cert.entry_id, []).append(cert.activated_at)
    if len(activations) < len(TEN_SPCS) or any(len(a) < 2 for a in activations.values()):
        return False
    return all(max(activations.get(entry_id, [since])) > since for entry_id in entries)


def test_three_workers_renew_short_lived_certificates_and_survive_a_kill_9(
    postgres_world: World,
) -> None:
    world = postgres_world
    workers = {name: _worker(world, name) for name in ("w0", "w1", "w2")}
    try:
        # Kill w0 while it holds an entry in the middle of a renewal (pending order).
        wait_for(
            lambda: (
                all(world.active(f"e{spc}") for spc in TEN_SPCS) and _held_in_flight(world, "w0")
            ),
            120,
            "w0 in the middle of a renewal",
            every=0.02,
        )
        workers["w0"].send_signal(signal.SIGKILL)
        killed_at = dt.datetime.now(dt.UTC)
        workers["w0"].wait()
        held = _held_in_flight(world, "w0", alive=False)  # a dead worker releases nothing
        assert held
        # Another worker takes the entries over once w0's lease expires, and finishes them.
        wait_for(lambda: _renewed_everywhere(world, killed_at, held), 120, "every renewal")
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        codes = {name: _stopped(worker) for name, worker in workers.items()}
    assert codes == {"w0": -signal.SIGKILL, "w1": 0, "w2": 0}

    assert order_overlaps(world) == []
    for spc in TEN_SPCS:
        states = [c.state for c in world.certificates(f"e{spc}")]
        assert states.count(CertificateState.ACTIVE) == 1, (spc, states)
    # Each stored certificate was issued once; what the CA issued beyond them belongs
    # to renewals the stop interrupted (resumed by the next worker from their order).
    issued, stored = world.issued_serials(), world.stored_serials()
    assert len(set(stored)) == len(stored)
    assert set(stored) <= set(issued)
    in_flight = [
        c for spc in TEN_SPCS for c in world.certificates(f"e{spc}") if c.chain_pem is None
    ]
    assert len(set(issued) - set(stored)) <= len(in_flight)
    for entry_id, expires in held.items():
        taken_over = _first_event_after(world, entry_id, killed_at)
        # Not before the dead worker's lease ran out (small slack: clocks are the same
        # host's, but the event's time is taken before its commit).
        assert taken_over >= expires - dt.timedelta(seconds=0.5), (
            f"{entry_id} killed {killed_at:%S.%f} lease {expires:%S.%f} "
            + " ".join(map(str, sorted(_events(world, entry_id))[-8:]))
        )


def _stopped(worker: subprocess.Popen[bytes]) -> int:
    try:
        return worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        stderr = worker.stderr.read().decode()[-3000:] if worker.stderr else ""
        raise AssertionError(f"a worker did not stop on SIGTERM: {stderr}") from None


def _events(world: World, entry_id: int) -> list[tuple[str, str, str]]:
    with world.app.database.read_session() as session:
        return [
            (f"{e.at:%S.%f}", e.step, str(e.outcome), e.certificate_id)
            for e in session.scalars(
                select(LifecycleEvent).where(LifecycleEvent.entry_id == entry_id)
            )
        ]


def _first_event_after(world: World, entry_id: int, since: dt.datetime) -> dt.datetime:
    with world.app.database.read_session() as session:
        first = session.scalar(
            select(func.min(LifecycleEvent.at)).where(
                LifecycleEvent.entry_id == entry_id, LifecycleEvent.at > since
            )
        )
    assert first is not None
    return first
