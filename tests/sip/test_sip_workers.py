"""serve(workers=N): N processes share each port with SO_REUSEPORT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sip_support import request, tcp_client, udp_client
from tests._servers import child_pids, free_port

from opensti.core.errors import InvalidInput
from opensti.sip import SIPServices, parse_listeners, serve

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("worker_app.py")


@pytest.fixture
def workers() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port(tcp=True, udp=True)
    listeners = f"udp:127.0.0.1:{port}/sign,tcp:127.0.0.1:{port}/sign"
    process = subprocess.Popen(
        [sys.executable, str(APP), listeners, "2"], cwd=APP.parent, stderr=subprocess.PIPE
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            # The workers outlive a killed parent: kill them too, or every run leaks two.
            for pid in [*child_pids(process.pid), process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


async def _wait_answering(address: tuple[str, int], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with udp_client(address) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server exited during start-up"
            client.send(request("OPTIONS"))
            with contextlib.suppress(TimeoutError):
                await client.receive(timeout=0.5)
                return
    raise TimeoutError("the workers did not answer")


async def _wait_ready(address: tuple[str, int], process: subprocess.Popen[bytes]) -> None:
    await _wait_answering(address, process)
    for _ in range(5):  # both workers may still be binding; wait until two are alive
        if len(child_pids(process.pid)) == 2:
            break
        await asyncio.sleep(0.5)
    assert len(child_pids(process.pid)) == 2


async def test_two_workers_share_the_port_and_stop_on_sigterm(
    workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = workers
    address = ("127.0.0.1", port)
    await _wait_ready(address, process)
    for _ in range(20):
        async with udp_client(address) as client:
            response = await client.exchange(request())
        assert response.status == 302
        assert response.header("identity")
    async with tcp_client(address) as tcp:
        await tcp.send(request())
        assert (await tcp.receive()).status == 302
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0


async def test_retransmissions_reach_the_worker_that_answered(
    workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    """The kernel picks a SO_REUSEPORT socket by the 4-tuple, so each worker's own
    transaction table is enough: from any source port, a retransmitted INVITE gets the
    bytes of the first answer (another worker would sign afresh: new To-tag, Identity).
    """
    process, port = workers
    address = ("127.0.0.1", port)
    await _wait_ready(address, process)
    for n in range(12):  # twelve source ports: both workers answer some of them
        async with udp_client(address) as client:
            invite = request(call_id=f"retransmitted-{n}@t")
            client.send(invite)
            first = await asyncio.wait_for(client.received.get(), 10)
            client.send(invite)
            assert await asyncio.wait_for(client.received.get(), 10) == first


def test_port_zero_cannot_be_shared() -> None:
    with pytest.raises(InvalidInput):
        serve(parse_listeners("udp:127.0.0.1:0"), SIPServices, workers=2)
