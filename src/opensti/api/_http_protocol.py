"""The HTTP/1.1 protocol of ``opensti serve``'s listeners: uvicorn's httptools protocol
with the STIR API's requests answered without ASGI.

Per request, uvicorn builds an ASGI scope, a request-response cycle with an
``asyncio.Event``, and a task started at the end of the headers; the app then awaits
``receive()`` for the body, one more pass of the loop, and writes the head and the
body apart. For a signature (or a verification with a cached certificate), which
never waits for I/O, that is all overhead: about 28 us of CPU per request against 14
us here (``bench/http_cpu.py``). So a ``POST`` to a STIR path, or a ``GET /health`` or
``/metrics`` (see :attr:`FastPath.targets`), is answered here: the body is gathered
from the parser, the handler's coroutine is stepped once and, when it finishes, its
response is written whole. A handler that suspends (a token store reload, an x5u
fetch) goes on as a task like uvicorn's cycles, and the requests behind it wait in
uvicorn's pipeline (reading paused) so responses keep their order. Every other
request (another path or method, a query string, ``Expect: 100-continue``, an
upgrade) goes to uvicorn's own path, on the same connection.

What ASGI middleware would add is done here as well: the client address from
X-Forwarded-For when the peer is a trusted proxy (uvicorn's own trust rules, read
from its ProxyHeadersMiddleware), and the client certificate a mutual TLS handshake
verified (also put in the ASGI TLS extension for the slow path).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from opensti.api._stir_messages import STIRRequest, STIRResponse

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["CoalescedWrites", "FastPath", "HTTPProtocol", "http_protocol"]

#: What uvicorn answers when the app raises (and then it closes the connection).
_SERVER_ERROR = STIRResponse(
    500, b"Internal Server Error", ((b"content-type", b"text/plain; charset=utf-8"),)
)


class FastPath(Protocol):
    """Answers a few requests of a listener without ASGI (the STIR API)."""

    #: (method, path) answered here; the path without a query string.
    targets: frozenset[tuple[bytes, bytes]]
    #: The longest body kept; past it the request is handed over as ``oversized``.
    max_body: int

    def handle(self, request: STIRRequest) -> Coroutine[Any, Any, STIRResponse]: ...


class CoalescedWrites:
    """A transport whose writes within one pass of the event loop leave as one send.

    uvicorn writes a response's status line and headers, then its body, as two
    ``transport.write`` calls; with TCP_NODELAY each is a send system call and a TCP
    segment of its own. Joined, a response is one send. uvicorn has no option for
    this, so it is done here, in front of the real transport: the writes of one pass
    are kept and flushed by a callback at the next, before the transport is closed.
    Everything else goes to the real transport.

    The fast path's responses, written whole, go the same way: with many connections
    busy, the sends of one pass then leave together after the pass's requests were
    read, which cost about a tenth less CPU per request than sending each at once
    (at one connection, sending at once was a little cheaper).
    """

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _with_client_chain(app: ASGI3Application, chain: list[str]) -> ASGI3Application:
    """``app`` with the ASGI TLS extension (the verified client chain) in every scope."""

    async def with_tls(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        extensions = cast("dict[str, Any]", scope).setdefault("extensions", {})
        extensions["tls"] = {"client_cert_chain": chain}
        await app(scope, receive, send)

    return with_tls


class _Resumed:
    """The rest of a coroutine whose first step has run and yielded ``yielded``: an
    awaitable that hands on what a task sends or throws in, as ``yield from`` does."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, STIRResponse], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, STIRResponse]:
        yielded = self._yielded
        while True:
            error: BaseException | None = None
            try:
                value = yield yielded
            except BaseException as exc:  # a cancellation or close(): for the coroutine
                value, error = None, exc
            try:
                yielded = self._coro.send(value) if error is None else self._coro.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


class _FastCycle(RequestResponseCycle):
    """A fast-path request that waits its turn behind another, or suspended: run as a
    task in uvicorn's place, so uvicorn's pipeline, shutdown and disconnect handling
    treat it as one of theirs."""

    def __init__(
        self,
        protocol: HTTPProtocol,
        answer: Callable[[], Awaitable[STIRResponse]],
        keep_alive: bool,
    ) -> None:
        super().__init__(
            scope=protocol.scope,
            transport=protocol.transport,
            flow=protocol.flow,
            logger=protocol.logger,
            access_logger=protocol.access_logger,
            access_log=False,
            default_headers=[],
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=keep_alive,
            on_response=protocol.on_response_complete,
        )
        self._protocol = protocol
        self._answer = answer

    async def run_asgi(self, app: ASGI3Application) -> None:
        """Await the answer and write it (``app`` is not used)."""
        try:
            response = await self._answer()
        except Exception as exc:
            self.logger.error("Exception in the STIR API", exc_info=exc)
            response, self.keep_alive = _SERVER_ERROR, False
        if self.flow.write_paused:
            await self.flow.drain()
        if self.disconnected:
            return
        self._protocol.respond(response, self.keep_alive)
        self.response_complete = True
        self.on_response()


class HTTPProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with :attr:`fast_path`'s requests answered directly
    and every write of a pass of the loop sent as one."""

    #: The listener's STIR API (None: every request goes through ASGI).
    fast_path: ClassVar[FastPath | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        proxies = self.config.loaded_app
        self._trusted = (
            proxies.trusted_hosts if isinstance(proxies, ProxyHeadersMiddleware) else None
        )
        self.client_cert_chain: tuple[str, ...] = ()
        # The fast request being read: its body so far (None: no fast request).
        self._chunks: list[bytes] | None = None
        self._size = 0
        self._keep_alive = True
        # The default headers (date, server) as uvicorn last set them, and as bytes.
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._default_head = b""
        # When the connection last fell idle (None: a request is being read or answered).
        self._idle_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if peer:
            self.client_cert_chain = (ssl.DER_cert_to_PEM_cert(peer),)
            self.app = _with_client_chain(self.app, list(self.client_cert_chain))

    # -- the keep-alive timeout, without a timer per request -------------------------
    # uvicorn arms a timer after each response and cancels it when the next request's
    # data arrives: a timer made and cancelled per request. Here the connection notes
    # when it fell idle, and one timer per timeout period checks that note.

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's, but the keep-alive timer is armed only when none is."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self._arm_keep_alive(self.timeout_keep_alive)

    def _arm_keep_alive(self, delay: float) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(delay, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # busy: the response's end arms the timer again
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._arm_keep_alive(left)
        else:
            self.timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    # -- parser callbacks ----------------------------------------------------------

    def on_headers_complete(self) -> None:
        fast, method = self.fast_path, self.parser.get_method()
        if (
            fast is None
            or (method, self.url) not in fast.targets
            or self.expect_100_continue
            or self.parser.should_upgrade()
        ):
            super().on_headers_complete()
            return
        self.scope["method"] = method.decode("ascii")
        self.scope["path"] = self.url.decode("ascii")
        self._keep_alive = (
            self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        )
        self._chunks, self._size = [], 0

    def on_body(self, body: bytes) -> None:
        if self._chunks is None:
            super().on_body(body)
            return
        if self._size < 0:
            return  # answered as oversized: the rest of the body is dropped
        self._size += len(body)
        self._chunks.append(body)
        if self.fast_path is not None and self._size > self.fast_path.max_body:
            self._size = -1
            self._chunks.clear()
            self._dispatch(b"", oversized=True)

    def on_message_complete(self) -> None:
        if self._chunks is None:
            super().on_message_complete()
            return
        chunks, self._chunks = self._chunks, None
        if self._size >= 0:
            self._dispatch(b"".join(chunks), oversized=False)

    # -- the fast path -------------------------------------------------------------

    def _client(self) -> tuple[str, int] | None:
        """The peer, or the client X-Forwarded-For names when the peer is a trusted
        proxy: what uvicorn's ProxyHeadersMiddleware gives the ASGI path."""
        client, trusted = self.client, self._trusted
        if trusted is None or client is None or client[0] not in trusted:
            return client
        forwarded = [value for name, value in self.headers if name == b"x-forwarded-for"]
        if not forwarded:
            return client
        host, port = trusted.get_trusted_client_address(b", ".join(forwarded).decode("latin1"))
        return (host, port) if host else client

    def _dispatch(self, body: bytes, *, oversized: bool) -> None:
        fast = self.fast_path
        if fast is None or self.transport.is_closing():
            return
        request = STIRRequest(
            self.scope["method"],
            self.scope["path"],
            self.headers,
            body,
            self._client(),
            self.client_cert_chain,
            oversized,
        )
        if (self.cycle is not None and not self.cycle.response_complete) or self.flow.write_paused:
            self._queue(_FastCycle(self, functools.partial(fast.handle, request), self._keep_alive))
            return
        answer = fast.handle(request)
        try:
            yielded = answer.send(None)
        except StopIteration as done:
            self.respond(done.value, self._keep_alive)
            self.on_response_complete()
            return
        except Exception as exc:
            self.logger.error("Exception in the STIR API", exc_info=exc)
            self.respond(_SERVER_ERROR, keep_alive=False)
            return
        self.cycle = _FastCycle(
            self, functools.partial(_Resumed, answer, yielded), self._keep_alive
        )
        self._start_asgi_task(self.cycle, self.app)

    def _queue(self, cycle: _FastCycle) -> None:
        """Behind the request in flight: started when it is answered (uvicorn's pipeline)."""
        previous, self.cycle = self.cycle, cycle
        if previous is None or previous.response_complete:
            self._start_asgi_task(cycle, self.app)  # only the writes wait (flow control)
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))

    def respond(self, response: STIRResponse, keep_alive: bool) -> None:
        """Write ``response`` in one send (uvicorn's default headers first), and close
        the connection unless it is kept alive."""
        defaults = self.server_state.default_headers
        if defaults is not self._defaults:
            self._defaults = defaults
            self._default_head = _head(tuple(defaults))
        body = response.body
        parts = [STATUS_LINE[response.status], self._default_head, _head(tuple(response.headers))]
        parts.append(b"content-length: %d\r\n" % len(body))
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        self.transport.write(b"".join(parts))
        if not keep_alive:
            self.transport.close()


@functools.lru_cache(maxsize=64)
def _head(headers: tuple[tuple[bytes, bytes], ...]) -> bytes:
    return b"".join(b"%s: %s\r\n" % header for header in headers)


def http_protocol(fast_path: FastPath | None) -> type[HTTPProtocol]:
    """The protocol class of a listener whose STIR API is ``fast_path`` (None: none)."""

    class ListenerProtocol(HTTPProtocol):
        pass

    ListenerProtocol.fast_path = fast_path
    return ListenerProtocol
