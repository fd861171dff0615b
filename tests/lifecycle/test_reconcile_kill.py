"""``opensti worker`` killed with SIGKILL at random points of the flow, then restarted:
every entry converges to exactly one active, valid certificate, and every certificate
the CA issued is in the store exactly once (no order lost, none finished twice).

The kill point is chosen by counting the worker's lifecycle events: the test kills it
right after the k-th new event, k random, so kills land across every step. Half the
restarts reuse the worker id (the lease is taken back at once), half use a new one
(the dead worker's lease must expire first).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from opensti.lifecycle.reconcile import request_renewal
from opensti.sandbox import store as sandbox_store
from opensti.store import CertificateState, LifecycleEvent, Setting
from tests.lifecycle.reconcile_support import World, start_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUNS = int(os.environ.get("OPENSTI_KILL_RUNS", "20"))
ENTRIES = ("e123H", "e456J")
LEASE_TTL = 3.0
OPENSTI = str(Path(sys.executable).with_name("opensti"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_world(tmp_path, repository=False) as started:
        started.add_entries("123H", "456J")
        yield started


def _worker(world: World, worker_id: str) -> subprocess.Popen[bytes]:
    command = [
        OPENSTI,
        "worker",
        "--tick=0.1",
        "--backoff-initial=0.5",
        "--backoff-max=2",
        f"--lease-ttl={LEASE_TTL}",
        f"--worker-id={worker_id}",
    ]
    return subprocess.Popen(
        command, env=world.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _events(world: World) -> list[LifecycleEvent]:
    with world.app.database.read_session() as session:
        return list(session.scalars(select(LifecycleEvent).order_by(LifecycleEvent.id)))


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _converged(world: World) -> bool:
    with world.app.database.read_session() as session:
        forced = session.scalar(
            select(func.count()).select_from(Setting).where(Setting.key.like("lifecycle.force.%"))
        )
    if forced:
        return False
    for name in ENTRIES:
        certs = world.certificates(name)
        if any(c.state is CertificateState.PENDING for c in certs):
            return False
        if world.active(name) is None:
            return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the worker did not stop on SIGTERM")


def _orphan_orders(world: World) -> int:
    """Orders the CA opened that never got a certificate (a kill between the CA's
    answer to newOrder and the commit of its URL)."""
    with world.sandbox.state.store.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(sandbox_store.Order)
                .where(sandbox_store.Order.certificate_id.is_(None))
            )
            or 0
        )


def _check_invariants(world: World) -> None:
    now = world.clock()
    for name in ENTRIES:
        certs = world.certificates(name)
        active = [c for c in certs if c.state is CertificateState.ACTIVE]
        assert len(active) == 1, (name, [c.state for c in certs])
        assert not [c for c in certs if c.state is CertificateState.PENDING]
        assert active[0].chain_pem is not None
        assert world.chain_valid(active[0].chain_pem.encode(), world.entry(name).spc, now)
    # Every certificate the CA issued is stored, once; no stored order was finished twice.
    issued = world.issued_serials()
    stored = world.stored_serials()
    assert sorted(issued) == sorted(stored)
    with world.app.database.read_session() as session:
        from opensti.store import Certificate

        orders = [c.order_url for c in session.scalars(select(Certificate)) if c.order_url]
    assert len(orders) == len(set(orders))


def test_kill_9_at_random_points_converges(world: World) -> None:
    rng = random.Random(int(os.environ.get("OPENSTI_KILL_SEED", "6")))
    killed_after: collections.Counter[str] = collections.Counter()
    for run in range(RUNS):
        if run:
            for name in ENTRIES:
                request_renewal(world.app.database, name)
        seen = len(_events(world))
        kill_after = rng.randint(1, 22)
        victim = _worker(world, "worker-a")
        target = seen + kill_after
        _wait(
            lambda target=target: len(_events(world)) >= target or _converged(world),  # type: ignore[misc]
            60,
            "the worker's first steps",
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        events = _events(world)
        killed_after[events[-1].step if len(events) > seen else "start"] += 1

        survivor = _worker(world, "worker-a" if run % 2 else "worker-b")
        try:
            _wait(lambda: _converged(world), 60 + LEASE_TTL, f"convergence in run {run}")
        finally:
            _stop(survivor)
        _check_invariants(world)
    print(f"\n{RUNS} kill -9 runs; killed right after: {dict(killed_after)}")
    print(
        f"orders opened but never finished (kill before the URL was stored): "
        f"{_orphan_orders(world)}"
    )
    # Kills landed in the middle of the flow, not only before or after it.
    assert len(killed_after) >= 4
