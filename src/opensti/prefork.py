"""Worker processes forked from a server that has bound its listening sockets.

Python runs one request at a time per process, so a server uses every core by forking
workers that inherit the bound sockets and accept on them side by side (the kernel
hands each connection to one of them). The SIP server and ``opensti serve``'s HTTP
front both use this. Fork before any event loop or thread starts: a child gets only the
forking thread, and a loop carried across a fork is unusable.

A worker that ends while the server runs is replaced (:class:`Supervisor`) by a new
process started by exec, which inherits the listeners and load boards by descriptor
(:class:`Handoff`), since the server cannot fork any more once its loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import mmap
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

from opensti.core.errors import InvalidInput

__all__ = [
    "HANDOFF_ENV",
    "SSL_SHUTDOWN_SECONDS",
    "Balance",
    "BalancedAcceptor",
    "Handoff",
    "LoadBoard",
    "SlotBoard",
    "Supervisor",
    "bind_each",
    "describe_exit",
    "die_with_parent",
    "fork_workers",
    "spawn_worker",
    "stop_workers",
]

logger = logging.getLogger(__name__)


def bind_each(binders: Iterable[Callable[[], socket.socket]]) -> list[socket.socket]:
    """Bind every listener before the fork; if one cannot be bound, the ones bound so
    far are closed before the error goes on (a half-bound server never serves)."""
    sockets: list[socket.socket] = []
    try:
        for bind in binders:
            sockets.append(bind())
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def fork_workers(count: int, run: Callable[[int], None], *, name: str) -> list[int]:
    """Fork ``count`` children that each call ``run`` with its number (1 to ``count``;
    the parent is 0) and exit: 0 when it returns, 1 when it raises. ``os._exit``, so
    nothing the parent opened is flushed or closed twice."""
    children: list[int] = []
    if count > 0:
        # Objects made so far (imported modules above all) leave the collector's care:
        # a collection in a child would otherwise write to their pages and copy them,
        # so every child would pay again the memory the parent already has.
        gc.freeze()
    for number in range(1, count + 1):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                run(number)
            except BaseException:
                logger.exception("%s failed", name)
                status = 1
            finally:
                os._exit(status)
        children.append(pid)
    return children


def stop_workers(children: Iterable[int], *, timeout: float = 30.0) -> dict[int, int]:
    """SIGTERM each child, wait up to ``timeout`` for all, SIGKILL the rest; the exit
    status of each (negative: the signal that ended it)."""
    remaining = set(children)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while remaining:
        for pid in list(remaining):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                remaining.discard(pid)
                continue
            if done:
                statuses[pid] = os.waitstatus_to_exitcode(status)
                remaining.discard(pid)
        if remaining and time.monotonic() > deadline:
            for pid in remaining:
                logger.error("worker %d did not stop in %.0f s: killed", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        elif remaining:
            time.sleep(0.05)
    return statuses


#: The environment variable that hands a replacement worker what it inherits.
HANDOFF_ENV = "OPENSTI_WORKER_HANDOFF"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a replacement worker inherits from the server that started it: its slot on
    the load boards, its parent, and its descriptors by group (listeners, boards)."""

    process: int
    parent: int
    fds: dict[str, tuple[int, ...]]

    def encode(self) -> str:
        return json.dumps({"process": self.process, "parent": self.parent, "fds": self.fds})

    @classmethod
    def take(cls, environ: MutableMapping[str, str] = os.environ) -> Handoff | None:
        """The handoff in ``environ``, removed so that nothing this process starts
        inherits it; None in a server started by hand."""
        value = environ.pop(HANDOFF_ENV, None)
        if value is None:
            return None
        try:
            data = json.loads(value)
            fds = {str(k): tuple(int(fd) for fd in v) for k, v in data["fds"].items()}
            return cls(int(data["process"]), int(data["parent"]), fds)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InvalidInput(f"{HANDOFF_ENV} is malformed (it is set by opensti serve)") from None

    def descriptors(self) -> list[int]:
        return [fd for group in self.fds.values() for fd in group]


def spawn_worker(handoff: Handoff) -> int:
    """Start this very command again as a replacement worker; its pid.

    A new process by exec, not a fork: the server runs an event loop and threads by
    now, which a forked child would inherit half-way. The child gets the standard
    streams and the handoff's descriptors (Python opens the rest close-on-exec), and
    its environment names them. Call it from the main thread: the child's parent-death
    signal (:func:`die_with_parent`) fires when the thread that started it ends."""
    argv = [sys.executable, *sys.orig_argv[1:]]
    environ = {**os.environ, HANDOFF_ENV: handoff.encode()}
    # dup2 of a descriptor onto itself clears close-on-exec in the child alone.
    actions = [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in handoff.descriptors()]
    return os.posix_spawn(sys.executable, argv, environ, file_actions=actions)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGTERM this worker when its parent ends (Linux).

    A parent killed outright (SIGKILL, the OOM killer) cannot stop its workers; they
    would go on serving without renewals, and hold the ports a restarted server needs."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent ended before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def describe_exit(code: int) -> str:
    """An exit code as :func:`os.waitstatus_to_exitcode` gives it, in words."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass(slots=True)
class _Worker:
    number: int
    pid: int | None
    started: float
    #: The pause before this slot's last replacement (0: none yet).
    delay: float = 0.0
    #: When the replacement of an ended worker starts.
    restart_at: float = 0.0
    #: How many times this slot's worker was started again.
    restarts: int = 0


class Supervisor:
    """Keeps the forked workers running: one that ends while the server runs (a crash,
    the OOM killer, a stray signal) is replaced by a new process in its slot.

    The first replacement starts after ``FIRST_DELAY``; while replacements keep dying
    young (within ``STEADY_SECONDS``) the pause doubles up to ``MAX_DELAY``, so a worker
    that cannot start (the database is down) does not spin. Without it, a dead worker
    left the server on fewer processes, silently, until it was restarted."""

    CHECK_SECONDS = 0.5
    FIRST_DELAY = 1.0
    MAX_DELAY = 60.0
    STEADY_SECONDS = 60.0

    def __init__(
        self,
        children: Iterable[int],
        spawn: Callable[[int], int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spawn = spawn
        self._clock = clock
        now = clock()
        self._workers = [_Worker(n, pid, now) for n, pid in enumerate(children, start=1)]

    def restarts(self) -> dict[int, int]:
        """How many times each worker slot (1 to N-1) was started again."""
        return {worker.number: worker.restarts for worker in self._workers}

    def pids(self) -> list[int]:
        """The workers running now (to stop them with the server)."""
        return [worker.pid for worker in self._workers if worker.pid is not None]

    async def run(self, stop: asyncio.Event) -> None:
        """Check the workers until ``stop`` is set."""
        if not self._workers:
            return
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.CHECK_SECONDS)
            if not stop.is_set():
                self.check()

    def check(self) -> None:
        """Note the workers that ended; start the replacements that are due."""
        now = self._clock()
        for worker in self._workers:
            if worker.pid is None:
                if now >= worker.restart_at:
                    self._replace(worker, now)
                continue
            code = _exit_code(worker.pid)
            if code is None:
                continue
            self._back_off(worker, now, young=now - worker.started < self.STEADY_SECONDS)
            logger.error(
                "worker %d (pid %d) %s; a new one starts in %g s",
                worker.number,
                worker.pid,
                describe_exit(code),
                worker.delay,
            )
            worker.pid = None

    def _back_off(self, worker: _Worker, now: float, *, young: bool) -> None:
        """Schedule ``worker``'s next start: the first pause, or (after a start that
        did not last) twice the last one, up to the longest."""
        doubled = min(self.MAX_DELAY, 2 * worker.delay) if young else 0.0
        worker.delay = max(doubled, self.FIRST_DELAY)
        worker.restart_at = now + worker.delay

    def _replace(self, worker: _Worker, now: float) -> None:
        try:
            worker.pid = self._spawn(worker.number)
        except OSError as exc:
            self._back_off(worker, now, young=True)
            logger.error(
                "cannot start worker %d: %s; trying again in %g s",
                worker.number,
                exc.strerror or exc,
                worker.delay,
            )
            return
        worker.started = now
        worker.restarts += 1
        logger.warning("worker %d started again (pid %d)", worker.number, worker.pid)


def _exit_code(pid: int) -> int | None:
    """The exit code of ``pid`` if it ended (reaped now), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0  # reaped by someone else: it ended, how is unknown
    return os.waitstatus_to_exitcode(status) if done else None


class LoadBoard:
    """Each process's open connections and heartbeat, in memory shared across the fork,
    so a worker can tell whether it holds more than the least loaded live one.

    A shared memory file made before the fork (and inherited by replacements): every
    process sees every slot, and each writes only its own, so no lock is needed (a
    stale count misplaces one connection at worst)."""

    #: A process silent this long (stopped, or stuck in one long request) is left out,
    #: so the others take connections rather than wait for it.
    STALE_SECONDS = 0.25
    #: How often a live process writes its slot.
    BEAT_SECONDS = 0.05

    def __init__(self, processes: int, fd: int | None = None) -> None:
        """A new board for ``processes``, or (``fd``) the one a replacement worker
        inherited (:meth:`attach`)."""
        self.processes = processes
        #: The memory file's descriptor, handed to replacement workers.
        self.fd, self._memory = _shared_memory("opensti-load-board", 16 * processes, fd)
        view = memoryview(self._memory)
        self._connections = view[: 8 * processes].cast("q")
        self._beats = view[8 * processes :].cast("d")

    @classmethod
    def attach(cls, fd: int) -> LoadBoard:
        """The board behind an inherited descriptor; its size tells the processes."""
        return cls(os.fstat(fd).st_size // 16, fd)

    def publish(self, process: int, connections: int, now: float) -> None:
        self._connections[process] = connections
        self._beats[process] = now

    def serving(self, now: float) -> int:
        """How many processes are live: beating, hence accepting."""
        fresh = now - self.STALE_SECONDS
        return sum(1 for beat in self._beats if beat >= fresh)

    async def wait_serving(self, timeout: float) -> bool:
        """Wait until every process serves (False after ``timeout``): a server that
        says it is ready while a worker still starts would give that worker nothing of
        a client's first connections, which stay where they land."""
        deadline = time.monotonic() + timeout
        while (now := time.monotonic()) < deadline:
            if self.serving(now) == self.processes:
                return True
            await asyncio.sleep(self.BEAT_SECONDS / 5)
        return False

    def over_share(self, process: int, now: float) -> bool:
        """True when a live other process holds fewer connections than ``process``."""
        mine = self._connections[process]
        fresh = now - self.STALE_SECONDS
        return any(
            self._connections[other] < mine and self._beats[other] >= fresh
            for other in range(self.processes)
            if other != process
        )


class SlotBoard:
    """A slot of bytes per process in memory shared by the workers; each process
    writes only its own, and any reads any (the metrics a scrape answers for all).

    A slot holds two copies, each a sequence number, the time it was written and its
    length before the data. The writer overwrites the older copy, making its number odd
    while it writes; a reader takes the newest copy whose number is even and unchanged
    after its copy (a seqlock: no lock a stopped writer could hold). With one copy, a
    reader that met a writer mid-write (preempted, or waiting for its GIL) had nothing
    to give, and a scrape then lost that worker's series."""

    _HEADER = struct.Struct("<QdI")
    _BOARD = struct.Struct("<II")  # processes, slot size: what :meth:`attach` reads
    _COPIES = 2

    def __init__(self, processes: int, slot_bytes: int, fd: int | None = None) -> None:
        self.processes = processes
        self.slot_bytes = slot_bytes
        size = self._BOARD.size + processes * self._COPIES * slot_bytes
        self.fd, self._memory = _shared_memory("opensti-slot-board", size, fd)
        if fd is None:
            self._BOARD.pack_into(self._memory, 0, processes, slot_bytes)

    @classmethod
    def attach(cls, fd: int) -> SlotBoard:
        """The board behind an inherited descriptor."""
        with mmap.mmap(fd, cls._BOARD.size) as head:
            processes, slot_bytes = cls._BOARD.unpack_from(head, 0)
        return cls(processes, slot_bytes, fd)

    def _copies(self, process: int) -> tuple[int, int]:
        """Where ``process``'s two copies start."""
        if not 0 <= process < self.processes:
            raise IndexError(f"no slot {process} on a board of {self.processes}")
        first = self._BOARD.size + process * self._COPIES * self.slot_bytes
        return first, first + self.slot_bytes

    def _sequence(self, offset: int) -> int:
        return int(self._HEADER.unpack_from(self._memory, offset)[0])

    def write(self, process: int, data: bytes, now: float) -> bool:
        """Put ``data`` in ``process``'s slot; False (the slot unchanged) if too long."""
        if self._HEADER.size + len(data) > self.slot_bytes:
            return False
        copies = self._copies(process)
        numbers = [self._sequence(offset) for offset in copies]
        # The older copy, or one a writer killed mid-write left odd.
        older = next((n for n in (0, 1) if numbers[n] % 2), numbers.index(min(numbers)))
        offset = copies[older]
        writing = max(numbers) | 1  # odd, and above every finished copy
        self._HEADER.pack_into(self._memory, offset, writing, 0.0, 0)
        start = offset + self._HEADER.size
        self._memory[start : start + len(data)] = data
        self._HEADER.pack_into(self._memory, offset, writing + 1, now, len(data))
        return True

    def read(self, process: int, attempts: int = 5) -> tuple[float, bytes] | None:
        """When ``process``'s slot was last written in full and what it held; None if
        never written (or a writer overtook every attempt)."""
        copies = self._copies(process)
        for _ in range(attempts):
            headers = [self._HEADER.unpack_from(self._memory, offset) for offset in copies]
            finished = [(h[0], n) for n, h in enumerate(headers) if h[0] and not h[0] % 2]
            if not finished:
                return None  # never written, or its first write is under way
            for sequence, n in sorted(finished, reverse=True):
                _, written, length = headers[n]
                start = copies[n] + self._HEADER.size
                data = self._memory[start : start + length]
                if self._sequence(copies[n]) == sequence:
                    return written, data
        return None


def _shared_memory(name: str, size: int, fd: int | None) -> tuple[int, mmap.mmap]:
    """A memory file of ``size`` bytes (or the inherited ``fd``), mapped shared.

    A memory file rather than an anonymous map: a worker started later (by exec, see
    :class:`Supervisor`) can map it from the inherited descriptor."""
    if fd is None:
        fd = os.memfd_create(name)
        os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)  # MAP_SHARED


@dataclass(frozen=True, slots=True)
class Balance:
    """A listener shared by forked workers: their load board, and this process's slot."""

    board: LoadBoard
    process: int


#: How long a TLS connection being closed waits for the client's close_notify
#: (asyncio's default is 30 s: one idle kept-alive client then held a stop that long).
SSL_SHUTDOWN_SECONDS = 2.0


class BalancedAcceptor:
    """Accepts on a listening socket shared by forked workers, one connection per wake,
    and leaves a connection to a less loaded live worker when there is one.

    Written by hand because uvloop (like asyncio) accepts every pending connection at
    once: a burst (an SBC opening its pool of connections) went whole to whichever
    worker woke first, which then answered it alone while the others idled.
    SO_REUSEPORT spreads connections by a hash of their addresses instead, unevenly
    for a few connections, and strands those hashed to a stopped worker.

    A worker over its share steps aside for ``DEFER_SECONDS``; if a connection is still
    waiting then (the others are busy), it takes it: no connection waits longer than
    that for a busy worker, and an over-loaded one takes at most one per pause.

    The price: about 30 µs of CPU more per connection than uvloop's accept (the
    transport comes through ``connect_accepted_socket``, a coroutine). Over a kept-alive
    connection, or beside a TLS handshake (plain HTTP is for loopback only), that is
    little; a lone process, with nobody to share with, keeps uvloop's accept.
    """

    DEFER_SECONDS = 0.002
    #: After a failed accept (out of file descriptors): as asyncio's own accept waits.
    RETRY_SECONDS = 1.0

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        connections: Callable[[], int],
        balance: Balance,
        ssl: SSLContext | None = None,
    ) -> None:
        self._sock = sock
        self._factory = protocol_factory
        self._connections = connections
        self._board = balance.board
        self._process = balance.process
        self._ssl = ssl
        self._stepped_aside = False
        self._timer: asyncio.TimerHandle | None = None
        self._handshakes: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._ready)
        self._beat()

    def close(self) -> None:
        if self._loop is None:
            return
        self._loop.remove_reader(self._sock.fileno())
        if self._timer is not None:
            self._timer.cancel()
        for task in self._handshakes:
            task.cancel()
        self._loop = None

    def _beat(self) -> None:
        if self._loop is None:
            return
        self._board.publish(self._process, self._connections(), time.monotonic())
        self._timer = self._loop.call_later(self._board.BEAT_SECONDS, self._beat)

    def _ready(self) -> None:
        loop = self._loop
        assert loop is not None
        now = time.monotonic()
        self._board.publish(self._process, self._connections(), now)
        # Having stepped aside once, take what the others left.
        if not self._stepped_aside and self._board.over_share(self._process, now):
            self._stepped_aside = True
            self._pause(self.DEFER_SECONDS)
            return
        self._stepped_aside = False
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as exc:
            # Out of file descriptors or memory above all; the others alike, rather
            # than a callback failing on every wake while the socket stays readable.
            logger.error(
                "cannot accept a connection: %s; retrying in %g s", exc.strerror, self.RETRY_SECONDS
            )
            self._pause(self.RETRY_SECONDS)
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is None:
            connected = loop.connect_accepted_socket(self._factory, conn)
        else:
            connected = loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ssl, ssl_shutdown_timeout=SSL_SHUTDOWN_SECONDS
            )
        task = loop.create_task(connected)
        self._handshakes.add(task)
        task.add_done_callback(self._handshake_done)

    def _pause(self, seconds: float) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self._sock.fileno())
        self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._ready)

    def _handshake_done(self, task: asyncio.Task[Any]) -> None:
        self._handshakes.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A client that fails the TLS handshake or hangs up during it: its loss alone.
            logger.debug("connection dropped before it was served: %s", exc)
