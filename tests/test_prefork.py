"""Forked workers sharing a listener: the load board is seen across the fork, and a
worker over its share steps aside, yet never leaves a connection waiting for good."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import time

import pytest

from opensti.prefork import Balance, BalancedAcceptor, LoadBoard


def test_a_forked_process_writes_its_slot_and_the_parent_reads_it() -> None:
    board = LoadBoard(2)
    now = time.monotonic()
    board.publish(0, 3, now)
    pid = os.fork()
    if pid == 0:
        board.publish(1, 1, time.monotonic())
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert board.over_share(0, time.monotonic())  # the child's 1 < the parent's 3
    assert not board.over_share(1, time.monotonic())


def test_a_silent_process_is_left_out() -> None:
    board = LoadBoard(3)
    now = time.monotonic()
    board.publish(0, 5, now)
    board.publish(1, 0, now - 2 * LoadBoard.STALE_SECONDS)  # stopped, or stuck
    board.publish(2, 5, now)
    assert not board.over_share(0, now)  # only live processes count
    board.publish(2, 4, now)
    assert board.over_share(0, now)
    assert not board.over_share(2, now)  # equal or fewer: it accepts


#: A lone process: nobody to step aside for.
_ALONE = Balance(LoadBoard(1), 0)


class _Held(asyncio.Protocol):
    """Notes each connection it is given, in a list the test reads."""

    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


async def test_a_worker_over_its_share_still_takes_what_nobody_else_does() -> None:
    """A live peer holds fewer connections but never accepts: after stepping aside once,
    this worker takes the connection rather than leave it waiting."""
    board = LoadBoard(2)
    board.publish(1, 0, time.monotonic())
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[asyncio.BaseTransport] = []
    balance = Balance(board, 0)
    acceptor = BalancedAcceptor(
        listener, lambda: _Held(made), connections=lambda: 5, balance=balance
    )
    acceptor.start()
    try:
        assert board.over_share(0, time.monotonic())  # 5 here, 0 at the peer
        _, writer = await asyncio.open_connection(*listener.getsockname())
        async with asyncio.timeout(5):
            while not made:
                await asyncio.sleep(0.001)
        assert len(made) == 1
        writer.close()
    finally:
        acceptor.close()
        for transport in made:
            transport.close()
        listener.close()


async def test_closing_stops_accepting() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[asyncio.BaseTransport] = []
    acceptor = BalancedAcceptor(
        listener, lambda: _Held(made), connections=lambda: 0, balance=_ALONE
    )
    acceptor.start()
    acceptor.close()
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        await asyncio.sleep(0.05)
        assert made == []  # queued in the kernel, accepted by nobody
        writer.close()
    finally:
        listener.close()


async def test_waiting_for_every_process_to_serve() -> None:
    board = LoadBoard(2)
    board.publish(0, 0, time.monotonic())
    assert board.serving(time.monotonic()) == 1
    assert not await board.wait_serving(timeout=0.05)  # the other never beat

    async def late_worker() -> None:
        await asyncio.sleep(0.05)
        board.publish(1, 0, time.monotonic())

    started = asyncio.create_task(late_worker())
    board.publish(0, 0, time.monotonic())
    assert await board.wait_serving(timeout=5)
    await started


async def test_out_of_file_descriptors_it_waits_and_then_accepts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """accept() failing with EMFILE must not fail the callback on every wake (the
    socket stays readable): the acceptor logs, waits, and takes the connection later."""
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[asyncio.BaseTransport] = []
    acceptor = BalancedAcceptor(
        listener, lambda: _Held(made), connections=lambda: 0, balance=_ALONE
    )
    acceptor.RETRY_SECONDS = 0.05
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    client = socket.socket()
    client.setblocking(False)
    try:
        # The limit bounds descriptor numbers: at the lowest free one (what dup gives),
        # none is left.
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        acceptor.start()
        with contextlib.suppress(BlockingIOError):
            client.connect(listener.getsockname())
        async with asyncio.timeout(5):
            while "cannot accept a connection" not in caplog.text:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert made == []
        failures = [r for r in caplog.records if "cannot accept" in r.getMessage()]
        assert len(failures) <= 10  # one per pause, not one per loop turn
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        async with asyncio.timeout(5):
            while not made:
                await asyncio.sleep(0.01)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        acceptor.close()
        for transport in made:
            transport.close()
        client.close()
        listener.close()
