"""The SIP redirect server on UDP and TCP (asyncio; uvloop when installed).

Listener specs, comma-separated, one per socket::

    TRANSPORT:HOST:PORT[/MODE[/POLICY]]
    udp:0.0.0.0:5060/sign,tcp:0.0.0.0:5060/sign,udp:[::1]:5070/verify/continue-with-reason

TRANSPORT is ``udp`` or ``tcp``, MODE ``sign`` (default) or ``verify``, POLICY (verify
only) ``continue`` (default), ``continue-with-reason`` or ``reject``.

Transport rules: one UDP datagram is one message; TCP is framed by Content-Length with
a bounded buffer, an idle timeout and a connection cap. Garbage is dropped (UDP) or
closes the connection (TCP); a request that is SIP but unusable gets 400. Every task is
tracked and awaited on stop. :func:`serve` runs N worker processes that each bind the
same ports with SO_REUSEPORT, so the kernel spreads calls over every core.

Each worker keeps its own UDP transactions (:mod:`opensti.sip.transaction`). That is
enough because Linux picks the socket of a SO_REUSEPORT group by a hash of the
datagram's 4-tuple (source and destination address and port): an SBC's
retransmissions, sent from the same address and port, reach the worker that answered
the first copy. Two cases break that mapping and get the call signed or verified
afresh: a worker that exits (the group and so the hash changes) and an SBC that
retransmits from another source port.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from opensti.core.errors import InvalidInput, SIPParseError
from opensti.eventloop import run_server_loop
from opensti.metrics import Counter, Family, labels
from opensti.prefork import Balance, BalancedAcceptor, fork_workers
from opensti.sip.message import (
    MAX_MESSAGE_SIZE,
    SIPMessage,
    SIPRequest,
    StreamFramer,
    can_answer,
    frame_message,
    plain_ack,
)
from opensti.sip.redirect import (
    CallLog,
    CallSigner,
    CallVerifier,
    FailurePolicy,
    Mode,
    RedirectHandler,
    RedirectPolicy,
    Send,
)
from opensti.sip.transaction import TransactionStats

__all__ = [
    "ListenerSpec",
    "SIPServer",
    "SIPServices",
    "ServerLimits",
    "bind_sip_listener",
    "parse_listeners",
    "serve",
]

logger = logging.getLogger(__name__)

_TRANSPORTS = ("udp", "tcp")


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    transport: str
    host: str
    port: int
    mode: Mode = Mode.SIGN
    failure_policy: FailurePolicy = FailurePolicy.CONTINUE

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.transport}:{host}:{self.port}/{self.mode.value}"
        if self.mode is Mode.VERIFY or self.failure_policy is FailurePolicy.REJECT:
            text += f"/{self.failure_policy.value}"
        return text


def _parse_listener(item: str) -> ListenerSpec:
    address, *options = item.split("/")
    transport, _, hostport = address.partition(":")
    transport = transport.lower()
    if transport not in _TRANSPORTS:
        raise InvalidInput(f"listener {item!r}: transport must be udp or tcp", value=item)
    host, _, port_text = hostport.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidInput(f"listener {item!r}: expected HOST:PORT", value=item)
    if len(options) > 2:
        raise InvalidInput(f"listener {item!r}: at most /MODE/POLICY may follow", value=item)
    try:
        mode = Mode(options[0].lower()) if options else Mode.SIGN
        policy = FailurePolicy(options[1].lower()) if len(options) > 1 else FailurePolicy.CONTINUE
    except ValueError:
        raise InvalidInput(f"listener {item!r}: unknown mode or policy", value=item) from None
    if mode is Mode.SIGN and policy is FailurePolicy.CONTINUE_WITH_REASON:
        raise InvalidInput(
            f"listener {item!r}: a sign listener's policy is continue (a call that cannot "
            "be signed goes on unsigned) or reject",
            value=item,
        )
    return ListenerSpec(transport, host, int(port_text), mode, policy)


def parse_listeners(text: str) -> list[ListenerSpec]:
    """Parse ``--sip-listen``; raise :class:`InvalidInput` on any bad item."""
    specs = [_parse_listener(item.strip()) for item in text.split(",") if item.strip()]
    if not specs:
        raise InvalidInput("no SIP listener given", value=text)
    return specs


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_message_size: int = MAX_MESSAGE_SIZE
    tcp_idle_timeout: float = 120.0
    max_tcp_connections: int = 1024
    #: A TCP peer that stops reading is dropped once this much output is queued.
    max_tcp_write_buffer: int = 1 << 20
    #: Seconds to let running verifications finish on stop.
    stop_grace: float = 5.0
    #: SO_RCVBUF asked for each UDP socket (the kernel caps it at net.core.rmem_max).
    #: The default (about 200 KiB, some 90 INVITEs) overflows whenever a worker is
    #: descheduled for a few milliseconds under load, and every datagram dropped there
    #: costs the caller a 500 ms retransmission.
    udp_receive_buffer: int = 4 << 20


@dataclass(frozen=True, slots=True)
class SIPServices:
    """What the listeners need; built inside each worker process (after the fork)."""

    signer: CallSigner | None = None
    verifier: CallVerifier | None = None
    log: CallLog | None = None
    policy: RedirectPolicy = field(default_factory=RedirectPolicy)


def _bind(spec: ListenerSpec, *, reuse_port: bool, udp_receive_buffer: int = 0) -> socket.socket:
    kind = socket.SOCK_DGRAM if spec.transport == "udp" else socket.SOCK_STREAM
    try:
        family, _, proto, _, address = socket.getaddrinfo(spec.host, spec.port, type=kind)[0]
    except socket.gaierror as exc:
        raise InvalidInput(f"listener {spec}: {exc}", value=str(spec)) from None
    # The protocol number matters: asyncio sets TCP_NODELAY on accepted connections
    # only when the socket says IPPROTO_TCP, and without it small responses wait on
    # the peer's delayed ACK (about 40 ms each on a kept-alive connection).
    sock = socket.socket(family, kind, proto)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_DGRAM and udp_receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, udp_receive_buffer)
        sock.bind(address)
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_listener(
    spec: ListenerSpec, limits: ServerLimits, *, reuse_port: bool = False
) -> socket.socket:
    return _bind(spec, reuse_port=reuse_port, udp_receive_buffer=limits.udp_receive_buffer)


def bind_sip_listener(spec: ListenerSpec, limits: ServerLimits | None = None) -> socket.socket:
    """Bind one listener before worker processes are forked to share it."""
    return _bind_listener(spec, limits or ServerLimits())


#: Datagrams read per wake-up before the loop serves other work (TCP, timers, tasks).
_UDP_BATCH = 64
#: Responses queued while the socket's send buffer is full; beyond it they are dropped
#: (the caller's retransmission asks again).
_UDP_MAX_QUEUED = 1024
#: A UDP datagram never exceeds this; larger requests are refused by the parser.
_UDP_READ_SIZE = 65536


class _UDPEndpoint:
    """One UDP listener read straight from the loop's selector.

    asyncio's datagram transport hands over one datagram per pass of the event loop;
    under load many are waiting, and reading them all in one wake-up halves what the
    transport costs per call (about 40 to 18 us per datagram here). Responses are sent
    at once; only while the socket's send buffer is full are they queued (bounded) and
    flushed when it drains. After :meth:`close`, responses are dropped, as a closed
    datagram transport does.
    """

    def __init__(self, server: SIPServer, handler: RedirectHandler, sock: socket.socket) -> None:
        self._server = server
        self._handler = handler
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._closed = False
        self._loop.add_reader(self._fd, self._read_ready)

    def _read_ready(self) -> None:
        for _ in range(_UDP_BATCH):
            if self._closed:
                return
            try:
                data, addr = self._sock.recvfrom(_UDP_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("UDP error: %s", exc)
                return
            self._received(data, addr)

    def _received(self, data: bytes, addr: Any) -> None:
        def send(payload: bytes) -> None:
            self._send(payload, addr)

        self._server.datagram(self._handler, data, (addr[0], addr[1]), send)

    def _send(self, payload: bytes, addr: Any) -> None:
        if self._closed:
            return
        _count_sent(self._handler, payload)
        if not self._queue:
            try:
                self._sock.sendto(payload, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._fd, self._write_ready)
            except OSError as exc:
                logger.debug("UDP send to %s failed: %s", addr[0], exc)
                return
        if len(self._queue) >= _UDP_MAX_QUEUED:
            logger.debug("UDP send queue full; dropped a response to %s", addr[0])
            return
        self._queue.append((payload, addr))

    def _write_ready(self) -> None:
        while self._queue:
            payload, addr = self._queue[0]
            try:
                self._sock.sendto(payload, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("UDP send to %s failed: %s", addr[0], exc)
            self._queue.popleft()
        self._loop.remove_writer(self._fd)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._queue:
            self._loop.remove_writer(self._fd)
            self._queue.clear()
        self._sock.close()


def _count_sent(handler: RedirectHandler, payload: bytes) -> None:
    """Count a response for ``/metrics`` (:meth:`SIPServer.metric_families`)."""
    code = payload[8:11]  # "SIP/2.0 302 ..."
    handler.sent[code] = handler.sent.get(code, 0) + 1


class _TCPProtocol(asyncio.Protocol):
    def __init__(self, server: SIPServer, handler: RedirectHandler, limits: ServerLimits) -> None:
        self._server = server
        self._handler = handler
        self._limits = limits
        self._framer = StreamFramer(limits.max_message_size)
        self._transport: asyncio.Transport | None = None
        self._peer: tuple[str, int] | None = None
        self._last_activity = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass: uvloop's
        # TCPTransport implements the interface without inheriting from it.
        transport = cast(asyncio.Transport, transport)
        if not self._server.admit(self):
            logger.debug("TCP connection refused: connection cap reached")
            transport.abort()
            return
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = (peer[0], peer[1]) if peer else None
        loop = asyncio.get_running_loop()
        self._last_activity = loop.time()
        self._idle_timer = loop.call_later(self._limits.tcp_idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        if self._transport is None:
            return
        loop = asyncio.get_running_loop()
        remaining = self._last_activity + self._limits.tcp_idle_timeout - loop.time()
        if remaining > 0:
            self._idle_timer = loop.call_later(remaining, self._check_idle)
        else:
            logger.debug("closing idle TCP connection from %s", self._peer)
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._last_activity = asyncio.get_running_loop().time()
        try:
            messages = self._framer.feed(data)
        except SIPParseError as exc:
            logger.debug("closing TCP connection from %s: %s", self._peer, exc)
            self._transport.close()
            return
        for message in messages:
            self._server.dispatch(self._handler, message, self._peer, self._send)

    def _send(self, payload: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        _count_sent(self._handler, payload)
        if transport.get_write_buffer_size() > self._limits.max_tcp_write_buffer:
            logger.debug("dropping TCP peer %s that does not read", self._peer)
            transport.abort()
            return
        transport.write(payload)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._transport = None
        self._server.release(self)


class SIPServer:
    """Every listener of one process, their handlers and their tasks."""

    def __init__(
        self,
        listeners: Sequence[ListenerSpec],
        services: SIPServices,
        *,
        limits: ServerLimits | None = None,
        reuse_port: bool = False,
        sockets: Sequence[socket.socket] | None = None,
        balance: Balance | None = None,
    ) -> None:
        self._listeners = list(listeners)
        #: Forked workers sharing the TCP listeners: their connections, evenly.
        self._balance = balance
        self._limits = limits or ServerLimits()
        self._reuse_port = reuse_port
        #: Sockets bound by :func:`bind_sip_listener` before a fork, one per listener:
        #: every process reads the same UDP socket (the kernel hands each datagram to
        #: one of them, whatever its source) and accepts on the same TCP socket.
        self._bound = list(sockets) if sockets is not None else None
        if self._bound is not None and len(self._bound) != len(self._listeners):
            raise ValueError("one bound socket per listener")
        self._handlers = [
            RedirectHandler(
                replace(services.policy, mode=spec.mode, failure_policy=spec.failure_policy),
                signer=services.signer,
                verifier=services.verifier,
                log=services.log,
                reliable=spec.transport == "tcp",
            )
            for spec in self._listeners
        ]
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_TCPProtocol] = set()
        self._closers: list[Callable[[], None]] = []
        self._servers: list[asyncio.Server] = []
        #: (spec, bound address) per listener, filled by :meth:`start`.
        self.addresses: list[tuple[ListenerSpec, tuple[str, int]]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for index, (spec, handler) in enumerate(
                zip(self._listeners, self._handlers, strict=True)
            ):
                sock = (
                    self._bound[index]
                    if self._bound is not None
                    else _bind_listener(spec, self._limits, reuse_port=self._reuse_port)
                )
                self.addresses.append((spec, sock.getsockname()[:2]))
                if spec.transport == "udp":
                    self._closers.append(_UDPEndpoint(self, handler, sock).close)
                elif self._balance is not None:
                    acceptor = BalancedAcceptor(
                        sock,
                        functools.partial(_TCPProtocol, self, handler, self._limits),
                        connections=lambda: len(self._connections),
                        balance=self._balance,
                    )
                    acceptor.start()
                    self._closers.append(acceptor.close)
                else:
                    server = await loop.create_server(
                        functools.partial(_TCPProtocol, self, handler, self._limits), sock=sock
                    )
                    self._servers.append(server)
                logger.info("SIP %s listening on %s", spec, sock.getsockname()[:2])
        except BaseException:
            await self.stop()
            raise

    def address(self, transport: str, mode: Mode | None = None) -> tuple[str, int]:
        """The bound address of the first listener with this transport (and mode)."""
        for spec, address in self.addresses:
            if spec.transport == transport and mode in (None, spec.mode):
                return address
        raise InvalidInput(f"no {transport} listener", value=transport)

    def transaction_stats(self) -> list[tuple[ListenerSpec, TransactionStats]]:
        """The INVITE transaction table of each listener (sizes and counters)."""
        return [
            (spec, handler.transactions.info())
            for spec, handler in zip(self._listeners, self._handlers, strict=True)
        ]

    def metric_families(self) -> list[Family]:
        """The responses each listener sent, for ``/metrics``."""
        sent = Counter(
            "opensti_sip_responses_total",
            "SIP responses sent (retransmissions included), by listener and status code.",
        )
        for spec, handler in zip(self._listeners, self._handlers, strict=True):
            for code, count in handler.sent.items():
                key = labels(listener=str(spec), code=code.decode("ascii", "replace"))
                sent.inc_at(key, count)
        return [sent]

    def admit(self, connection: _TCPProtocol) -> bool:
        if len(self._connections) >= self._limits.max_tcp_connections:
            return False
        self._connections.add(connection)
        return True

    def release(self, connection: _TCPProtocol) -> None:
        self._connections.discard(connection)

    def datagram(
        self, handler: RedirectHandler, data: bytes, peer: tuple[str, int], send: Send
    ) -> None:
        """Answer one UDP datagram; never raises. Garbage is dropped."""
        if data[:4] == b"ACK ":
            # The usual ACK of our 3xx ends its transaction without being framed.
            ack = plain_ack(data)
            if ack is not None and handler.acknowledge_plain(ack) is not None:
                return
        try:
            message = frame_message(data)
        except SIPParseError as exc:
            logger.debug("dropped a datagram from %s: %s", peer[0], exc)
            return
        self.dispatch(handler, message, peer, send)

    def dispatch(
        self,
        handler: RedirectHandler,
        message: SIPMessage,
        peer: tuple[str, int] | None,
        send: Send,
    ) -> None:
        """Answer one framed message; never raises (a bug is logged, not fatal)."""
        if not isinstance(message, SIPRequest):
            return  # responses to a redirect server are stray; ignore them
        if message.method == "ACK":
            self._acknowledge(handler, message, peer)
            return
        try:
            message.validate()
        except SIPParseError as exc:
            logger.debug("malformed %s from %s: %s", message.method, peer, exc)
            if can_answer(message):
                handler.reject_malformed(message, peer, send, exc)
            return
        try:
            pending = handler.handle(message, peer, send)
        except Exception:
            logger.exception("handling %s failed", message.method)
            return
        if pending is not None:
            self._spawn(pending)

    @staticmethod
    def _acknowledge(
        handler: RedirectHandler, message: SIPRequest, peer: tuple[str, int] | None
    ) -> None:
        """An ACK is never answered: it ends its transaction or nothing."""
        try:
            handler.acknowledge(message)
        except SIPParseError as exc:
            logger.debug("malformed ACK from %s: %s", peer, exc)
        except Exception:
            logger.exception("handling ACK failed")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("SIP task failed", exc_info=task.exception())

    async def stop(self) -> None:
        """Stop listening, let running calls finish (bounded), then cancel the rest."""
        for server in self._servers:
            server.close()
        for close in self._closers:
            close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._limits.stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for connection in list(self._connections):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._closers.clear()

    async def __aenter__(self) -> SIPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _run_worker(
    listeners: Sequence[ListenerSpec],
    services: Callable[[], SIPServices],
    limits: ServerLimits | None,
    reuse_port: bool,
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with SIPServer(listeners, services(), limits=limits, reuse_port=reuse_port):
            await stop.wait()

    run_server_loop(main())


def serve(
    listeners: Sequence[ListenerSpec],
    services: Callable[[], SIPServices],
    *,
    workers: int = 1,
    limits: ServerLimits | None = None,
) -> None:
    """Run the redirect server until SIGTERM/SIGINT (blocking).

    With ``workers > 1`` the process forks that many workers; each calls ``services()``
    (so keys, caches and HTTP clients are per process) and binds every listener with
    SO_REUSEPORT. The parent only forwards signals and waits; if a worker dies, the
    others are stopped too, so a supervisor sees the failure.
    """
    if workers <= 1:
        _run_worker(listeners, services, limits, reuse_port=False)
        return
    if any(spec.port == 0 for spec in listeners):
        raise InvalidInput("port 0 cannot be shared by several workers; name a port")
    children = fork_workers(
        workers,
        lambda _number: _run_worker(listeners, services, limits, reuse_port=True),
        name="SIP worker",
    )
    _supervise(children)


def _supervise(children: list[int]) -> None:
    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        remaining = set(children)
        while remaining:
            pid, status = os.wait()
            remaining.discard(pid)
            if status != 0 and remaining:
                logger.error(
                    "SIP worker %d exited with status %d; stopping the others", pid, status
                )
                forward(signal.SIGTERM, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
