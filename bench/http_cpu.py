"""CPU per request of the HTTP layer alone: the listeners' fast path against uvicorn's
ASGI path, in process, with a handler that does nothing.

Run on demand: ``.venv/bin/python bench/http_cpu.py [--requests N] [--rounds R]``.
See bench/README.md.

No socket: one keep-alive ``POST /stir/v1/signing`` (the bench's body and headers) is
fed to the protocol's ``data_received`` over a transport that only counts writes, on
uvloop, and ``time.process_time()`` is divided by the requests, less what the loop
passes between them cost alone. The handler answers a constant at once, so the
figure is what a request costs before and after the STIR API's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from opensti.api._http_protocol import http_protocol
from opensti.api.stir import STIRRequest, STIRResponse
from opensti.eventloop import run_server_loop

_BODY = (
    b'{"signingRequest": {"attest": "A", "dest": {"tn": ["12155550131"]},'
    b' "orig": {"tn": "12155550121"}, "origid": "bench"}}'
)
REQUEST = (
    b"POST /stir/v1/signing HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n"
    b"Content-Type: application/json\r\nAuthorization: Bearer osti_bench\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_BODY) + _BODY
)
_ANSWER = STIRResponse(200, b'{"signingResponse":{"identity":"x"}}')
#: Loop passes after each request: enough for uvicorn's task and its deferred writes.
PASSES = 2


class Constant:
    """Both faces of a handler that answers at once: a fast path and an ASGI app."""

    targets = frozenset({(b"POST", b"/stir/v1/signing")})
    max_body = 1 << 20

    async def handle(self, request: STIRRequest) -> STIRResponse:
        return _ANSWER

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        length = str(len(_ANSWER.body)).encode()
        headers = [*_ANSWER.headers, (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _ANSWER.body})


class CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        """Nothing to close."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8443)}.get(name)

    def pause_reading(self) -> None:
        """Nothing is read."""

    def resume_reading(self) -> None:
        """Nothing is read."""


async def _passes(requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        for _ in range(PASSES):
            await asyncio.sleep(0)
    return time.process_time() - started


async def _per_request(
    protocol_class: type[asyncio.Protocol], requests: int
) -> tuple[float, float]:
    """CPU seconds per request (loop passes included) and writes per request."""
    app = Constant()
    config = uvicorn.Config(app, lifespan="off", access_log=False, http=protocol_class)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"server", b"uvicorn")]
    protocol = protocol_class(config=config, server_state=state, app_state={})  # type: ignore[call-arg]
    transport = CountingTransport()
    protocol.connection_made(transport)
    started = time.process_time()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        for _ in range(PASSES):
            await asyncio.sleep(0)
    spent = time.process_time() - started
    protocol.connection_lost(None)
    return spent / requests, transport.writes / requests


async def _main(requests: int, rounds: int) -> None:
    paths: dict[str, type[asyncio.Protocol]] = {
        "fast path": http_protocol(Constant()),
        "uvicorn ASGI": HttpToolsProtocol,
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        idle = await _passes(requests) / requests
        for name, protocol_class in paths.items():
            seconds, writes = await _per_request(protocol_class, requests)
            best[name] = min(best.get(name, (float("inf"), 0.0)), (seconds - idle, writes))
    for name, (seconds, writes) in best.items():
        print(
            f"{name:<13} {seconds * 1e6:6.1f} us CPU per request (best of {rounds}),"
            f" {writes:.1f} transport writes per response"
        )
    print(f"{requests} keep-alive requests per round, {PASSES} loop passes after each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run_server_loop(_main(args.requests, args.rounds))


if __name__ == "__main__":
    main()
