"""Forked workers sharing a listener: the load board is seen across the fork, and a
worker over its share steps aside, yet never leaves a connection waiting for good."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import re
import resource
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opensti.core.errors import InvalidInput
from opensti.prefork import (
    HANDOFF_ENV,
    Balance,
    BalancedAcceptor,
    Handoff,
    LoadBoard,
    Supervisor,
    describe_exit,
    stop_workers,
)


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
        # none is left. Garbage from earlier tests must not free a lower one meanwhile.
        gc.collect()
        gc.disable()
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
        gc.enable()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        acceptor.close()
        for transport in made:
            transport.close()
        client.close()
        listener.close()


def test_a_board_reached_through_its_descriptor_is_the_same_memory() -> None:
    """A replacement worker maps the board from the descriptor it inherited."""
    board = LoadBoard(3)
    inherited = LoadBoard.attach(os.dup(board.fd))
    assert inherited.processes == 3
    now = time.monotonic()
    inherited.publish(2, 0, now)
    board.publish(0, 4, now)
    assert board.over_share(0, now)  # the attached board's slot is the original's


def test_a_handoff_survives_the_environment_and_leaves_it() -> None:
    handoff = Handoff(2, 4321, {"http": (6,), "sip": (7, 8), "boards": (9,), "sip_board": ()})
    environ = {HANDOFF_ENV: handoff.encode(), "PATH": "/bin"}
    assert Handoff.take(environ) == handoff
    assert environ == {"PATH": "/bin"}  # nothing this process starts inherits it
    assert Handoff.take(environ) is None
    assert handoff.descriptors() == [6, 7, 8, 9]


@pytest.mark.parametrize(
    "value", ["", "[]", '{"process": 1}', '{"process": 1, "parent": 2, "fds": {"a": ["x"]}}']
)
def test_a_malformed_handoff_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match=HANDOFF_ENV):
        Handoff.take({HANDOFF_ENV: value})


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sleeper() -> int:
    """A real child process that runs until it is killed."""
    return os.posix_spawn("/bin/sleep", ["sleep", "60"], dict(os.environ))


def _ended(pid: int, signum: int = signal.SIGKILL) -> None:
    """Signal ``pid`` and wait until it is a zombie, not reaped: the supervisor reaps it."""
    os.kill(pid, signum)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, f"process {pid} did not end"
        time.sleep(0.005)


@contextlib.contextmanager
def _supervised(count: int, spawn: Callable[[int], int]) -> Iterator[tuple[Supervisor, _Clock]]:
    clock = _Clock()
    supervisor = Supervisor([_sleeper() for _ in range(count)], spawn, clock=clock)
    try:
        yield supervisor, clock
    finally:
        stop_workers(supervisor.pids(), timeout=5)


def test_a_worker_that_ends_is_replaced_in_its_slot_after_a_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spawned: list[int] = []

    def spawn(number: int) -> int:
        spawned.append(number)
        return _sleeper()

    with _supervised(2, spawn) as (supervisor, clock):
        first, second = supervisor.pids()
        _ended(second)
        supervisor.check()
        assert supervisor.pids() == [first]  # reaped, not yet replaced
        assert f"worker 2 (pid {second}) killed by SIGKILL; a new one starts in 1 s" in caplog.text
        clock.now += Supervisor.FIRST_DELAY - 0.1
        supervisor.check()
        assert spawned == []
        clock.now += 0.1
        supervisor.check()
        assert spawned == [2]
        (replacement,) = set(supervisor.pids()) - {first}
        assert Path(f"/proc/{replacement}").exists()
        assert supervisor.restarts() == {1: 0, 2: 1}


def test_replacements_that_die_young_wait_longer_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with _supervised(1, lambda _number: _sleeper()) as (supervisor, clock):
        for _ in range(8):
            (pid,) = supervisor.pids()
            _ended(pid)
            supervisor.check()
            clock.now += Supervisor.MAX_DELAY
            supervisor.check()  # the replacement starts, and soon dies again
        pauses = re.findall(r"a new one starts in (\d+) s", caplog.text)
        assert pauses == ["1", "2", "4", "8", "16", "32", "60", "60"]
        # A replacement that served a while is replaced again after the first pause.
        (pid,) = supervisor.pids()
        clock.now += Supervisor.STEADY_SECONDS
        _ended(pid, signal.SIGTERM)
        supervisor.check()
        assert caplog.text.rstrip().endswith("killed by SIGTERM; a new one starts in 1 s")


def test_a_replacement_that_cannot_start_is_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []

    def spawn(number: int) -> int:
        attempts.append(number)
        if len(attempts) == 1:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return _sleeper()

    with _supervised(1, spawn) as (supervisor, clock):
        _ended(supervisor.pids()[0])
        supervisor.check()
        clock.now += Supervisor.FIRST_DELAY
        supervisor.check()
        assert supervisor.pids() == []
        assert "cannot start worker 1: Resource temporarily unavailable" in caplog.text
        clock.now += 2 * Supervisor.FIRST_DELAY
        supervisor.check()
        assert len(supervisor.pids()) == 1
        assert attempts == [1, 1]


async def test_supervision_stops_with_the_server() -> None:
    with _supervised(1, lambda _number: _sleeper()) as (supervisor, _clock):
        stop = asyncio.Event()
        running = asyncio.create_task(supervisor.run(stop))
        await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(running, timeout=2)
        assert len(supervisor.pids()) == 1


@pytest.mark.parametrize(
    ("code", "words"),
    [(-9, "killed by SIGKILL"), (3, "exited with status 3"), (-200, "killed by signal 200")],
)
def test_an_exit_is_said_in_words(code: int, words: str) -> None:
    assert describe_exit(code) == words
