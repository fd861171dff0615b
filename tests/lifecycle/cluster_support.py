"""Several opensti processes on one store: ``opensti serve`` nodes and ``opensti
worker`` processes as real subprocesses on 127.0.0.1, and the measurements the
scale-out promises rest on (a renewal on one node signing on another; no entry worked
on twice). Used by tests/lifecycle/test_cluster.py and bench/cluster.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.lifecycle.reconcile import request_renewal
from opensti.store import Certificate, CertificateEntry, CertificateState, LifecycleEvent
from tests._servers import free_port
from tests.lifecycle.reconcile_support import World

__all__ = [
    "OPENSTI",
    "Renewal",
    "TakeoverRun",
    "activations",
    "first_event_after",
    "held_in_flight",
    "kill_one_worker_mid_renewal",
    "order_overlaps",
    "renew_elsewhere",
    "serve_node",
    "signed_x5u",
    "signing_node",
    "start_worker",
    "stop_worker",
    "wait_for",
    "wait_for_renewal",
]

OPENSTI = str(Path(sys.executable).with_name("opensti"))


def wait_for(condition: object, timeout: float, what: str, *, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


def signed_x5u(base_url: str, entry: str = "e123H") -> str | None:
    """The x5u a node's STIR API signs a call with now (None: it cannot sign yet)."""
    body = {
        "signingRequest": {
            "orig": {"tn": "12025550100"},
            "dest": {"tn": ["12025550101"]},
            "attest": "A",
            "entry": entry,
        }
    }
    response = httpx.post(f"{base_url}/stir/v1/signing", json=body, trust_env=False, timeout=10)
    if response.status_code != 200:
        return None
    identity = parse_identity(response.json()["signingResponse"]["identity"])
    x5u = decode_passport(identity.token).header["x5u"]
    assert isinstance(x5u, str)
    return x5u


@contextmanager
def serve_node(world: World, *options: str, port: int | None = None) -> Iterator[str]:
    """``opensti serve --insecure-http`` on 127.0.0.1 with the world's settings; its
    base URL. Stopped with SIGTERM at the end, which it must obey."""
    if port is None:
        port = free_port()
    command = [OPENSTI, "serve", "--insecure-http", f"--port={port}", *options]
    node = subprocess.Popen(
        command, env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert node.stdout is not None
        line = node.stdout.readline().decode()
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        assert match, (line, node.stderr.read().decode() if node.stderr else "")
        yield match.group(1)
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            code = node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
            raise AssertionError("opensti serve did not stop on SIGTERM") from None
    assert code == 0, node.stderr.read().decode() if node.stderr else ""


@dataclass(frozen=True, slots=True)
class Renewal:
    certificate_id: int
    x5u: str
    #: Seconds from the activation recorded in the store to the first call the
    #: observing node signed with the new certificate.
    lag: float


def wait_for_renewal(
    world: World, signer_url: str, previous_x5u: str, entry: str = "e123H", timeout: float = 60
) -> Renewal:
    """Sign on ``signer_url`` until the x5u changes; the lag from the activation."""
    deadline = time.monotonic() + timeout
    while True:
        x5u = signed_x5u(signer_url, entry)
        seen_at = dt.datetime.now(dt.UTC)
        if x5u is not None and x5u != previous_x5u:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{signer_url} did not sign with a renewed certificate")
        time.sleep(0.02)
    with world.app.database.read_session() as session:
        cert = session.scalars(select(Certificate).where(Certificate.x5u_url == x5u)).one()
    assert cert.activated_at is not None
    return Renewal(cert.id, x5u, (seen_at - cert.activated_at).total_seconds())


def order_overlaps(world: World) -> list[tuple[int, int, int]]:
    """Pairs of certificates of one entry whose orders were in flight at the same time
    (entry, first, second), from the store's rows and lifecycle events.

    A certificate's order is in flight from the row's creation (key and order made)
    until the row leaves ``pending``: its store event, or the state change that ended
    it. Sorted by start, two intervals of one entry overlap when the next one starts
    before the previous one ends.
    """
    with world.app.database.read_session() as session:
        certs = list(session.scalars(select(Certificate).order_by(Certificate.id)))
        stored = {
            event.certificate_id: event.at
            for event in session.scalars(
                select(LifecycleEvent).where(LifecycleEvent.step == "store")
            )
        }
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    overlaps: list[tuple[int, int, int]] = []
    by_entry: dict[int, list[tuple[dt.datetime, dt.datetime, int]]] = {}
    for cert in certs:
        if cert.state is CertificateState.PENDING:
            end = far
        else:
            end = stored.get(cert.id) or cert.state_changed_at
        by_entry.setdefault(cert.entry_id, []).append((cert.created_at, end, cert.id))
    for entry_id, spans in by_entry.items():
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                overlaps.append((entry_id, first, second))
    return overlaps


def start_worker(world: World, worker_id: str, *, lease_ttl: float) -> subprocess.Popen[bytes]:
    command = [
        OPENSTI, "worker", "--tick=0.1", "--backoff-initial=0.5", "--backoff-max=2",
        f"--lease-ttl={lease_ttl}", f"--worker-id={worker_id}",
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=world.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> int:
    """SIGTERM, which a worker must obey within 30 s; its exit code."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        stderr = worker.stderr.read().decode()[-3000:] if worker.stderr else ""
        raise AssertionError(f"a worker did not stop on SIGTERM: {stderr}") from None


def stop_workers(workers: dict[str, subprocess.Popen[bytes]]) -> dict[str, int]:
    """:func:`stop_worker` on each, every one of them even when one does not stop (that
    one fails the test after the others are stopped, rather than leave them running)."""
    codes: dict[str, int] = {}
    failures: list[AssertionError] = []
    for name, worker in workers.items():
        try:
            codes[name] = stop_worker(worker)
        except AssertionError as failure:
            failures.append(failure)
    if failures:
        raise failures[0]
    return codes


def held_in_flight(world: World, holder: str, *, alive: bool = True) -> dict[int, dt.datetime]:
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


def activations(world: World) -> dict[int, list[dt.datetime]]:
    """Entry id -> when each of its certificates became active."""
    with world.app.database.read_session() as session:
        rows = session.execute(
            select(Certificate.entry_id, Certificate.activated_at).where(
                Certificate.activated_at.is_not(None)
            )
        ).all()
    found: dict[int, list[dt.datetime]] = {}
    for entry_id, at in rows:
        if at is not None:
            found.setdefault(entry_id, []).append(at)
    return found


def first_event_after(world: World, entry_id: int, since: dt.datetime) -> dt.datetime:
    with world.app.database.read_session() as session:
        first = session.scalar(
            select(func.min(LifecycleEvent.at)).where(
                LifecycleEvent.entry_id == entry_id, LifecycleEvent.at > since
            )
        )
    assert first is not None
    return first


@dataclass(frozen=True, slots=True)
class TakeoverRun:
    killed_at: dt.datetime
    #: The entries the killed worker held in the middle of a renewal: id -> lease expiry.
    held: dict[int, dt.datetime]
    exit_codes: dict[str, int]


def kill_one_worker_mid_renewal(
    world: World, spcs: tuple[str, ...], *, lease_ttl: float, timeout: float = 120
) -> TakeoverRun:
    """Three workers on the world's entries (named ``e<SPC>``); ``w0`` is killed with
    SIGKILL while it holds an entry with a pending order, once every entry has a
    certificate. Returns when every entry renewed at least once and each held entry
    was activated again after the kill (so another worker finished it)."""
    workers = {name: start_worker(world, name, lease_ttl=lease_ttl) for name in ("w0", "w1", "w2")}
    try:
        wait_for(
            lambda: all(world.active(f"e{spc}") for spc in spcs) and held_in_flight(world, "w0"),
            timeout,
            "w0 in the middle of a renewal",
            every=0.02,
        )
        workers["w0"].send_signal(signal.SIGKILL)
        killed_at = dt.datetime.now(dt.UTC)
        workers["w0"].wait()
        held = held_in_flight(world, "w0", alive=False)  # a dead worker releases nothing

        def finished() -> bool:
            done = activations(world)
            renewed = len(done) == len(spcs) and all(len(a) >= 2 for a in done.values())
            return renewed and all(max(done[entry]) > killed_at for entry in held)

        wait_for(finished, timeout, "every entry renewed and w0's entries taken over")
    finally:
        codes = stop_workers(workers)
    return TakeoverRun(killed_at, held, codes)


@contextmanager
def signing_node(world: World) -> Iterator[tuple[str, str]]:
    """The nodes of the key-refresh check, started, with the x5u they first sign with:
    (signer's base URL, x5u). On PostgreSQL node A (at the public name, with the loop)
    and node B (``--no-worker``), B signing; on SQLite node A alone."""
    port = int(world.base_url.rpartition(":")[2])
    with ExitStack() as nodes:
        node_a = nodes.enter_context(serve_node(world, "--tick=0.2", port=port))
        if world.app.database.is_sqlite:
            signer = node_a
        else:
            signer = nodes.enter_context(serve_node(world, "--no-worker"))
        wait_for(lambda: signed_x5u(signer) is not None, 60, "the first certificate")
        first = signed_x5u(signer)
        assert first is not None
        yield signer, first


def renew_elsewhere(world: World, entry: str = "e123H") -> None:
    """A renewal the signing node does not make: on SQLite ``opensti cert renew --now``
    in another process; on PostgreSQL a request that node A's loop takes."""
    if not world.app.database.is_sqlite:
        request_renewal(world.app.database, entry)
        return
    command = [OPENSTI, "cert", "renew", entry, "--now"]
    renewed = subprocess.run(command, env=world.env(), capture_output=True, timeout=120)
    assert renewed.returncode == 0, renewed.stderr.decode()
