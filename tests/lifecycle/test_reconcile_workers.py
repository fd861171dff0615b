"""Several ``opensti worker`` processes on one database (SQLite, and PostgreSQL as the
scale-out set-up has it): the entry leases keep each entry to one worker, so every
entry gets exactly one certificate and the CA issues no more than that."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opensti.store import CertificateState
from tests._databases import PostgresServer, postgres_installed, throwaway_cluster
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
