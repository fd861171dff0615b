"""Fixtures that run real sandboxes on 127.0.0.1 (free ports, HTTPS with the sandbox's
own TLS root) for the sandbox's tests and for anyone else who needs an STI-PA + STI-CA.

``sandbox_factory(**config)`` starts one per call (``SandboxConfig`` fields; ``data_dir``
defaults to a fresh temp dir) and stops it at teardown; ``sandbox`` is the default
(profile ``atis``, HTTPS). ``clock`` moves the sandboxes' time without sleeping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opensti.sandbox.config import SandboxConfig
from opensti.sandbox.server import SandboxHandle, run_sandbox_in_thread
from tests.sandbox.acme_support import ACMETestClient, STIPATestClient


class Clock:
    """Real time plus an offset that tests advance."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


SandboxFactory = Callable[..., SandboxHandle]


@pytest.fixture
def sandbox_factory(
    tmp_path_factory: pytest.TempPathFactory, clock: Clock
) -> Iterator[SandboxFactory]:
    handles: list[SandboxHandle] = []

    def start(**options: Any) -> SandboxHandle:
        options.setdefault("data_dir", tmp_path_factory.mktemp("sandbox"))
        options.setdefault("port", 0)
        handle = run_sandbox_in_thread(SandboxConfig(**options), clock=clock)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> SandboxHandle:
    return sandbox_factory()


@pytest.fixture
def stipa(sandbox: SandboxHandle) -> Iterator[STIPATestClient]:
    client = STIPATestClient(sandbox)
    yield client
    client.close()


@pytest.fixture
def acme(sandbox: SandboxHandle) -> Iterator[ACMETestClient]:
    """A registered ACME account (with EAB) on the default sandbox."""
    client = ACMETestClient(sandbox)
    response = client.register(sandbox.state.add_eab())
    assert response.status_code == 201, response.text
    yield client
    client.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "sandbox-data"
