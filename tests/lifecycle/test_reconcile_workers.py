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
from collections.abc import Iterator
from pathlib import Path

import pytest

from opensti.store import CertificateState
from tests._databases import PostgresServer
from tests.lifecycle.cluster_support import (
    activations,
    first_event_after,
    kill_one_worker_mid_renewal,
    order_overlaps,
)
from tests.lifecycle.reconcile_support import SPCS, World, start_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPENSTI = str(Path(sys.executable).with_name("opensti"))
ENTRIES = tuple(f"e{spc}" for spc in SPCS)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database() as url:
        yield url


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


def test_three_workers_renew_short_lived_certificates_and_survive_a_kill_9(
    postgres_world: World,
) -> None:
    world = postgres_world
    run = kill_one_worker_mid_renewal(world, TEN_SPCS, lease_ttl=LEASE_TTL)
    assert run.exit_codes == {"w0": -signal.SIGKILL, "w1": 0, "w2": 0}
    assert run.held

    assert order_overlaps(world) == []
    assert all(len(times) >= 2 for times in activations(world).values())
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
    for entry_id, expires in run.held.items():
        taken_over = first_event_after(world, entry_id, run.killed_at)
        # Not before the dead worker's lease ran out (small slack: clocks are the same
        # host's, but the event's time is taken before its commit).
        assert taken_over >= expires - dt.timedelta(seconds=0.5), (
            f"{entry_id} killed {run.killed_at:%S.%f} lease {expires:%S.%f}"
        )
