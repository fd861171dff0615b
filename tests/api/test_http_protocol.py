"""The listeners' HTTP/1.1 protocol over real sockets: STIR requests answered on the fast
path keep HTTP's rules (keep-alive, pipelining in order, Connection: close, chunked and
trickled bodies, the body limit, malformed input), give the answers the ASGI path gives
(a query string sends the same request through ASGI), believe X-Forwarded-For only
from a trusted proxy, and leave every other request to uvicorn on the same connection."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opensti.api._http_protocol import _Resumed, http_protocol
from opensti.api.stir import MAX_BODY, STIRAccess, STIRApp, parse_networks
from opensti.cli.serve import Dispatcher
from opensti.signing import Keyring, SigningEntry, SigningService
from tests._servers import Route, TLSFiles, make_client_pki, serve_asgi
from tests.api.stir_support import SIGNER_TOKEN, Deployment, stir_app

pytestmark = pytest.mark.integration

AUTH = f"Authorization: Bearer {SIGNER_TOKEN}\r\n"
SIGNING = {"signingRequest": {"orig": {"tn": "12155550121"}, "dest": {"tn": ["12155550131"]}}}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def _management(scope: Any, receive: Any, send: Any) -> None:
    """What stands for the web UI and /api/v1: the path back, as text."""
    body = f"ui {scope['path']}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def _listening(stir: STIRApp, **options: Any) -> AsyncIterator[int]:
    """``opensti serve``'s internal listener in this process: its port."""
    app = Dispatcher(None, stir, _management)
    async with serve_asgi(app, http=http_protocol(stir), **options) as url:
        yield int(url.rsplit(":", 1)[1])


@asynccontextmanager
async def _connection(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


def _post(path: str, body: bytes, headers: str = AUTH) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: stir.test\r\nContent-Type: application/json\r\n"
    return f"{head}{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _get(path: str, headers: str = AUTH) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: stir.test\r\n{headers}\r\n".encode()


async def _read(reader: asyncio.StreamReader) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return Answer(int(status_line.split()[1]), headers, body)


async def _ask(port: int, request: bytes) -> Answer:
    async with _connection(port) as (reader, writer):
        writer.write(request)
        return await _read(reader)


@pytest.fixture
async def stir(site: Deployment, tls: TLSFiles) -> AsyncIterator[STIRApp]:
    async with stir_app(site, tls) as app:
        yield app


async def test_one_connection_carries_many_requests(stir: STIRApp) -> None:
    async with _listening(stir) as port, _connection(port) as (reader, writer):
        for _ in range(3):
            writer.write(_post("/stir/v1/signing", json.dumps(SIGNING).encode()))
            answer = await _read(reader)
            assert answer.status == 200, answer.body
            assert answer.headers["content-type"] == "application/json"
            assert ";info=<" in answer.json()["signingResponse"]["identity"]
            assert {"date", "server"} <= set(answer.headers)
            assert "connection" not in answer.headers
        writer.write(_get("/health", headers=""))
        assert (await _read(reader)).json() == {"status": "ok"}
        writer.write(_get("/metrics"))
        metrics = await _read(reader)
        assert 'opensti_calls_signed_total{outcome="signed"} 3' in metrics.body.decode()
        # The web UI and the management API answer on the same connection.
        writer.write(_get("/login", headers=""))
        assert (await _read(reader)).body == b"ui /login"


async def test_the_fast_path_answers_as_the_asgi_path(stir: STIRApp) -> None:
    """A query string is not on the fast path: the same request through ASGI."""
    signing = json.dumps(SIGNING).encode()
    requests: list[Callable[[str], bytes]] = [
        lambda path: _post(path, signing, ""),  # no credential: 401
        lambda path: _post(path, b"not json"),
        lambda path: _post(path, b"[]"),
        lambda path: _post(path, json.dumps({"signingRequest": {"orig": {"tn": "1"}}}).encode()),
        lambda path: _post(path.replace("/stir/v1/signing", "/stir/v1/nothing"), b"{}"),
        lambda path: _get(path.replace("/stir/v1/signing", "/health"), ""),
    ]
    async with _listening(stir) as port:
        for request in requests:
            fast = await _ask(port, request("/stir/v1/signing"))
            slow = await _ask(port, request("/stir/v1/signing?asgi"))
            fast.headers.pop("date"), slow.headers.pop("date")
            assert fast == slow, request("/stir/v1/signing")
        assert (await _ask(port, _get("/stir/v1/signing"))).status == 405  # ASGI: not a target


async def test_pipelined_requests_are_answered_in_order(stir: STIRApp) -> None:
    body = json.dumps(SIGNING).encode()
    async with _listening(stir) as port, _connection(port) as (reader, writer):
        writer.write(_post("/stir/v1/signing", body) + _get("/health", "") + _get("/nope", ""))
        signed, health, other = await _read(reader), await _read(reader), await _read(reader)
    assert "signingResponse" in signed.json()
    assert health.json() == {"status": "ok"}
    assert other.body == b"ui /nope"


async def test_a_suspended_request_keeps_the_next_one_waiting(
    stir: STIRApp, site: Deployment
) -> None:
    """The first verification fetches the x5u (slowly): the signing request pipelined
    behind it, answered at once on its own, is answered second."""
    site.repository.routes["/sti-cr/1234.pem"] = Route.body(site.chain_pem, header_delay=0.3)
    async with _listening(stir) as port:
        signed = (await _ask(port, _post("/stir/v1/signing", json.dumps(SIGNING).encode()))).json()
        check = {
            "from": {"tn": "12155550121"},
            "to": {"tn": ["12155550131"]},
            "time": int(time.time()),
            "identity": signed["signingResponse"]["identity"],
        }
        verification = json.dumps({"verificationRequest": check}).encode()
        async with _connection(port) as (reader, writer):
            writer.write(
                _post("/stir/v1/verification", verification)
                + _post("/stir/v1/signing", json.dumps(SIGNING).encode())
                + _get("/login", "")
            )
            first, second, third = await _read(reader), await _read(reader), await _read(reader)
    assert first.json() == {"verificationResponse": {"verstat": "TN-Validation-Passed"}}
    assert "signingResponse" in second.json()
    assert third.body == b"ui /login"


async def test_connection_close_is_honoured(stir: STIRApp) -> None:
    async with _listening(stir) as port, _connection(port) as (reader, writer):
        writer.write(_get("/health", "Connection: close\r\n"))
        answer = await _read(reader)
        assert answer.headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed
    async with _listening(stir) as port, _connection(port) as (reader, writer):
        writer.write(b"GET /health HTTP/1.0\r\n\r\n")
        assert (await _read(reader)).headers["connection"] == "close"


async def test_bodies_chunked_trickled_and_too_long(stir: STIRApp) -> None:
    body = json.dumps(SIGNING).encode()
    async with _listening(stir) as port, _connection(port) as (reader, writer):
        head = (
            f"POST /stir/v1/signing HTTP/1.1\r\nHost: x\r\n{AUTH}Transfer-Encoding: chunked\r\n\r\n"
        )
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7])
            for i in range(0, len(body), 7)
        )
        writer.write(head.encode() + chunks + b"0\r\n\r\n")
        assert (await _read(reader)).status == 200
        for i, byte in enumerate(_post("/stir/v1/signing", body)):
            writer.write(bytes([byte]))
            if i % 16 == 0:
                await writer.drain()
                await asyncio.sleep(0)
        assert (await _read(reader)).status == 200
        writer.write(_post("/stir/v1/signing", b"x" * (2 * MAX_BODY)))
        too_long = await _read(reader)
        assert too_long.status == 400
        assert str(MAX_BODY) in too_long.json()["error"]["message"]
        writer.write(_post("/stir/v1/signing", body))  # the connection goes on
        assert (await _read(reader)).status == 200


async def test_a_malformed_request_gets_400_and_the_connection_closes(stir: STIRApp) -> None:
    async with _listening(stir) as port, _connection(port) as (reader, writer):
        writer.write(_post("/stir/v1/signing", json.dumps(SIGNING).encode()))
        assert (await _read(reader)).status == 200
        writer.write(b"POST /stir/v1/signing HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        assert (await _read(reader)).status == 400
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""


async def test_expect_100_continue_goes_through_asgi(stir: STIRApp) -> None:
    body = json.dumps(SIGNING).encode()
    async with _listening(stir) as port, _connection(port) as (reader, writer):
        head = _post("/stir/v1/signing", b"", AUTH + "Expect: 100-continue\r\n")
        writer.write(head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)))
        assert (
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            == b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(body)
        assert (await _read(reader)).status == 200


def _allowlisted_app(site: Deployment) -> STIRApp:
    keyring = Keyring(
        [SigningEntry(name="main", spc="1234", key=site.key, x5u=site.x5u, is_default=True)]
    )
    access = STIRAccess(allow=parse_networks(["198.51.100.0/24"]))
    return STIRApp(SigningService(keyring), None, access=access)


@pytest.mark.parametrize(("proxies", "status"), [(["127.0.0.1"], 200), ([], 401)])
async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    site: Deployment, proxies: list[str], status: int
) -> None:
    """The allowlist sees X-Forwarded-For's client when the peer is a trusted proxy, on
    the fast path as on the ASGI path (uvicorn's ProxyHeadersMiddleware)."""
    app = _allowlisted_app(site)
    options = {"proxy_headers": bool(proxies), "forwarded_allow_ips": ",".join(proxies)}
    body = json.dumps(SIGNING).encode()
    forwarded = "X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n"
    async with _listening(app, **options) as port:
        for path in ("/stir/v1/signing", "/stir/v1/signing?asgi"):
            assert (await _ask(port, _post(path, body, forwarded))).status == status, path
            # The last untrusted address counts: not the one the client put first.
            spoofed = "X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\n"
            assert (await _ask(port, _post(path, body, spoofed))).status == 401, path


async def test_a_client_certificate_is_seen_on_both_paths(
    stir: STIRApp, tls: TLSFiles, tmp_path: Path
) -> None:
    """Mutual TLS: the verified chain reaches the door on the fast path and, in the
    ASGI TLS extension, on the ASGI path; without a certificate the door stays shut."""
    client_ca, cert, key = make_client_pki(tmp_path / "sbc")
    stir.access = STIRAccess(client_certificates=True)
    options = {
        "ssl_certfile": str(tls.cert_pem),
        "ssl_keyfile": str(tls.key_pem),
        "ssl_ca_certs": str(client_ca),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
    }
    body = json.dumps(SIGNING).encode()
    async with _listening(stir, **options) as port:
        for with_certificate, status in ((True, 200), (False, 401)):
            context = ssl.create_default_context(cafile=str(tls.root_pem))
            if with_certificate:
                context.load_cert_chain(str(cert), str(key))
            for path in ("/stir/v1/signing", "/stir/v1/signing?asgi"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
                try:
                    writer.write(_post(path, body, ""))
                    assert (await _read(reader)).status == status, (path, with_certificate)
                finally:
                    writer.close()


async def test_a_failing_handler_gets_500_and_the_connection_closes(
    stir: STIRApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What uvicorn does when an app raises: 500, then the connection is closed; the
    same whether the handler failed at once or after it suspended."""
    assert stir.signer is not None

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(stir.signer, "sign", broken)
    body = json.dumps(SIGNING).encode()
    async with _listening(stir) as port:
        for _ in range(2):  # the first suspends (the token cache loads), then at once
            async with _connection(port) as (reader, writer):
                writer.write(_post("/stir/v1/signing", body))
                answer = await _read(reader)
                assert (answer.status, answer.body) == (500, b"Internal Server Error")
                assert answer.headers["connection"] == "close"
                assert await asyncio.wait_for(reader.read(), timeout=10) == b""


async def test_a_cancelled_suspended_handler_sees_the_cancellation() -> None:
    """The task that carries on a suspended handler hands its cancellation in."""
    seen: list[str] = []
    started = asyncio.Event()

    async def handler() -> Any:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    coro = handler()
    yielded = coro.send(None)
    task = asyncio.ensure_future(_Resumed(coro, yielded))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_an_idle_connection_closes_after_the_keep_alive_timeout_a_busy_one_does_not(
    stir: STIRApp,
) -> None:
    async with (
        _listening(stir, timeout_keep_alive=1) as port,
        _connection(port) as (idle_reader, idle_writer),
        _connection(port) as (busy_reader, busy_writer),
    ):
        idle_writer.write(_post("/stir/v1/signing", json.dumps(SIGNING).encode()))
        assert (await _read(idle_reader)).status == 200
        started = time.monotonic()
        # The busy connection asks again every 0.3 s, well past the timeout in all.
        while time.monotonic() - started < 2.5:
            busy_writer.write(_post("/stir/v1/signing", json.dumps(SIGNING).encode()))
            assert (await _read(busy_reader)).status == 200
            await asyncio.sleep(0.3)
        assert await asyncio.wait_for(idle_reader.read(), timeout=5) == b""  # closed
        # The ASGI path's responses keep the connection alive the same way.
        busy_writer.write(_get("/login", headers=""))
        assert (await _read(busy_reader)).body == b"ui /login"
        await asyncio.sleep(1.6)
        assert await asyncio.wait_for(busy_reader.read(), timeout=5) == b""
