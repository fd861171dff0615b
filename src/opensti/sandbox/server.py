"""Serving the sandbox: one ASGI app, one port, both roles.

=============================  ==============================================
``/api/v1/...``, ``/download``  the STI-PA (see :mod:`opensti.sandbox.stipa`)
``/acme/...``                   the STI-CA ACME server (:mod:`opensti.sandbox.acme`)
``/admin/...``                  fault switches, EAB keys, SPC revocation
                                (:mod:`opensti.sandbox.admin`)
=============================  ==============================================

Running it from Python (tests, ``opensti demo``)::

    from opensti.sandbox.config import SandboxConfig
    from opensti.sandbox.server import run_sandbox_in_thread

    with run_sandbox_in_thread(SandboxConfig(data_dir=tmp, port=0)) as sandbox:
        httpx.get(sandbox.ca_directory_url, verify=sandbox.verify)
        kid, hmac_key = sandbox.state.add_eab()
        trust = sandbox.trust_anchors             # the STI-PA trust list (CA roots)

:func:`run_sandbox_in_thread` binds the socket first (``port=0`` picks a free one),
so every URL is known before the first request; it returns a :class:`SandboxHandle`
with ``base_url``, ``ca_directory_url``, ``stipa_base_url``, ``tls_root_path``
(None with ``http=True``), ``verify`` (an ``ssl.SSLContext`` for httpx), ``state`` (the
:class:`~opensti.sandbox.state.Sandbox`: EAB keys, providers, faults, PKI) and
``stop()``. :func:`serve` runs the same app in the foreground (``opensti sandbox``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opensti.core.errors import UpstreamError
from opensti.sandbox.acme import acme_routes
from opensti.sandbox.admin import AdminError, admin_routes
from opensti.sandbox.config import SandboxConfig
from opensti.sandbox.problems import PROBLEM_CONTENT_TYPE, Problem
from opensti.sandbox.state import Sandbox
from opensti.sandbox.stipa import STIPAError, stipa_routes
from opensti.sandbox.store import utcnow
from opensti.sandbox.tls import TLSFiles, ensure_tls_files

__all__ = ["SandboxHandle", "bind_socket", "build_app", "run_sandbox_in_thread", "serve"]


def _problem_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return JSONResponse(
        exc.to_dict(), exc.status, headers=exc.headers, media_type=PROBLEM_CONTENT_TYPE
    )


def _error_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, STIPAError | AdminError)
    return exc.response()


def _role(path: str) -> str | None:
    if path.startswith("/acme/"):
        return "ca"
    if path.startswith(("/api/", "/download/")):
        return "stipa"
    return None


class _FaultInjector:
    """Refuse or delay CA / STI-PA requests as the sandbox's fault switches say."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        role = _role(scope["path"]) if scope["type"] == "http" else None
        if role is not None:
            fault = self.sandbox.faults.decide(role)  # type: ignore[arg-type]
            if fault.mode == "delay":
                await asyncio.sleep(fault.delay)
            elif fault.mode == "refuse":
                await _refusal(role)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(role: str) -> Response:
    detail = "the service is unavailable (fault injected by the sandbox)"
    if role == "ca":
        problem = Problem("serverInternal", detail, status=503)
        return JSONResponse(
            problem.to_dict(), 503, headers={"Retry-After": "1"}, media_type=PROBLEM_CONTENT_TYPE
        )
    return JSONResponse({"status": "error", "message": detail}, 503, headers={"Retry-After": "1"})


class _ACMEHeaders:
    """RFC 8555: a fresh Replay-Nonce on every ACME response (6.5), a Link to the
    directory (7.1) and no caching of anything that carries a nonce."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/acme/"):
            await self.app(scope, receive, send)
            return
        index = f'<{self.sandbox.urls.directory}>;rel="index"'.encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"replay-nonce", self.sandbox.nonces.issue().encode()))
                headers.append((b"link", index))
                headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(sandbox: Sandbox) -> ASGIApp:
    """The ASGI app of one sandbox (both roles and the admin endpoints)."""
    app = Starlette(
        routes=[*stipa_routes, *acme_routes, *admin_routes],
        exception_handlers={
            Problem: _problem_response,
            STIPAError: _error_response,
            AdminError: _error_response,
        },
    )
    app.state.sandbox = sandbox
    return _ACMEHeaders(_FaultInjector(app, sandbox), sandbox)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that name TCP, and without it every response on a kept-alive connection
    # waits about 40 ms for the client's delayed ACK (Nagle's algorithm).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UpstreamError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def _base_url(config: SandboxConfig, port: int) -> str:
    host = config.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (only to name the URL)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'http' if config.http else 'https'}://{host}:{port}"


@dataclass
class _Prepared:
    sandbox: Sandbox
    server: uvicorn.Server
    sock: socket.socket
    tls: TLSFiles | None


#: What a client of the sandbox must trust, written to the data dir on every start.
STIPA_CERT_FILE = "sti-pa.pem"
TRUST_ANCHORS_FILE = "trust-anchors.pem"


def _publish_trust_files(sandbox: Sandbox, data_dir: Path) -> None:
    """Write the STI-PA certificate (signer of SPC tokens and the CRL) and the trust
    list (the CA root), as a real STI-PA publishes them for SPs to download."""
    (data_dir / STIPA_CERT_FILE).write_bytes(sandbox.pki.stipa.pem)
    (data_dir / TRUST_ANCHORS_FILE).write_bytes(sandbox.pki.root.pem)


def _prepare(config: SandboxConfig, clock: Callable[[], dt.datetime]) -> _Prepared:
    sock = bind_socket(config.host, config.port)
    sandbox = Sandbox(config, _base_url(config, sock.getsockname()[1]), clock=clock)
    _publish_trust_files(sandbox, config.data_dir)
    tls = None if config.http else ensure_tls_files(config.data_dir, clock())
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", "access_log": False}
    if tls is not None:
        options.update(ssl_certfile=str(tls.server_cert), ssl_keyfile=str(tls.server_key))
    server = uvicorn.Server(uvicorn.Config(build_app(sandbox), **options))
    return _Prepared(sandbox, server, sock, tls)


@dataclass
class SandboxHandle:
    """A sandbox running in a background thread of this process."""

    state: Sandbox
    tls_root_path: Path | None
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def base_url(self) -> str:
        return self.state.urls.base

    @property
    def ca_directory_url(self) -> str:
        return self.state.urls.directory

    @property
    def stipa_base_url(self) -> str:
        return self.state.urls.stipa

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What to pass as httpx's ``verify=``: a context trusting the sandbox TLS root
        (True for an http sandbox)."""
        if self.tls_root_path is None:
            return True
        return ssl.create_default_context(cafile=str(self.tls_root_path))

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        return self.state.pki.trust_anchors

    def stop(self) -> None:
        """Stop serving; in-flight requests get a second, idle TLS keep-alives none."""
        self._server.should_exit = True
        self._thread.join(timeout=1)
        self._server.force_exit = True
        self._thread.join(timeout=10)
        self.state.close()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_sandbox_in_thread(
    config: SandboxConfig,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    startup_timeout: float = 15.0,
) -> SandboxHandle:
    """Start a sandbox on a daemon thread and return once it accepts connections."""
    prepared = _prepare(config, clock)
    thread = threading.Thread(
        target=prepared.server.run,
        kwargs={"sockets": [prepared.sock]},
        name="opensti-sandbox",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not prepared.server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            prepared.server.should_exit = True
            prepared.sandbox.close()
            raise UpstreamError("the sandbox server did not start")
        time.sleep(0.01)
    root = prepared.tls.root if prepared.tls else None
    return SandboxHandle(prepared.sandbox, root, prepared.server, thread)


def serve(
    config: SandboxConfig, *, announce: Callable[[Sandbox, Path | None], None] | None = None
) -> None:
    """Run the sandbox in the foreground until interrupted."""
    prepared = _prepare(config, utcnow)
    if announce is not None:
        announce(prepared.sandbox, prepared.tls.root if prepared.tls else None)
    try:
        prepared.server.run(sockets=[prepared.sock])
    finally:
        prepared.sandbox.close()
