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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.store import Certificate, CertificateState, LifecycleEvent
from tests.lifecycle.reconcile_support import World, free_socket

__all__ = [
    "OPENSTI",
    "Renewal",
    "order_overlaps",
    "serve_node",
    "signed_x5u",
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
        with free_socket() as sock:
            port = int(sock.getsockname()[1])
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
