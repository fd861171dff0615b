"""Real local servers for tests: an HTTP(S) server on 127.0.0.1 whose answers the test sets.

Each path maps to a :class:`Route` (status, body, headers, and optional pauses), so one
server can play a good x5u host, a broken one and a hostile one at once. TLS uses a
server certificate for ``127.0.0.1`` and ``localhost`` signed by a throwaway test root;
clients trust it by loading :attr:`TLSFiles.root_pem`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "PROXY_VARIABLES",
    "LocalHTTPServer",
    "Route",
    "TLSFiles",
    "child_pids",
    "client_env",
    "free_port",
    "free_udp_port",
    "make_client_pki",
    "make_tls_files",
    "serve",
    "serve_asgi",
]

#: Proxy settings that would send a client's request for 127.0.0.1 elsewhere.
PROXY_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
)


def client_env(**extra: str) -> dict[str, str]:
    """The environment for a client subprocess: ours without proxies, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(extra)
    return env


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` forked that are still its children (Linux /proc)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _port_block() -> range:
    """This test process's own ports, all below the kernel's ephemeral range.

    A port found by binding to 0 and closing again is one the kernel hands out next to
    anyone: to another xdist worker's probe, or as the local port of any outgoing
    connection, before the server under test binds it ("Address already in use" once in
    a few thousand runs). Ports below ``ip_local_port_range`` are never handed out that
    way, and each xdist worker takes a block of its own, so nobody else picks ours.
    """
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    low, high = 10000, max(ephemeral_low, 10000 + 64 * 8)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    size = (high - low) // workers
    start = low + int(worker or 0) % workers * size
    return range(start, start + size)


_PORTS = _port_block()
_next_port = iter(_PORTS)


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, tcp: bool = True, udp: bool = False) -> int:
    """A port on 127.0.0.1 free now for the protocols asked, that no other test process
    and no outgoing connection will take before a server under test binds it; each call
    gives a different one."""
    kinds = [socket.SOCK_STREAM] * tcp + [socket.SOCK_DGRAM] * udp
    for port in _next_port:
        if all(_bindable(port, kind) for kind in kinds):
            return port
    raise RuntimeError(f"no free port left in {_PORTS}")


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 (for a SIP listener of a subprocess)."""
    return free_port(tcp=False, udp=True)


@dataclass(frozen=True)
class Route:
    """What the server answers on one path.

    ``chunks`` are written one after the other with ``pause`` seconds before each (a
    slow or trickling peer); ``pause`` before headers is ``header_delay``.
    """

    status: int = 200
    chunks: tuple[bytes, ...] = ()
    content_type: str | None = "application/pem-certificate-chain"
    headers: tuple[tuple[str, str], ...] = ()
    header_delay: float = 0.0
    pause: float = 0.0

    @classmethod
    def body(cls, data: bytes, **options: Any) -> Route:
        return cls(chunks=(data,), **options)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Route:
        return cls(status=status, content_type=None, headers=(("Location", location),))


@dataclass(frozen=True)
class TLSFiles:
    """A test root and a server certificate it signed, as files."""

    root_pem: Path
    cert_pem: Path
    key_pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    now: dt.datetime,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                False,
            )
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls_files(directory: Path, *, label: str = "test") -> TLSFiles:
    """Write a fresh root and a 127.0.0.1/localhost server certificate into ``directory``."""
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = f"opensti {label} TLS root"
    root = _certificate(root_name, root_key, None, now)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("127.0.0.1", server_key, (root_name, root_key), now)
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(
        root_pem=directory / f"{label}-root.pem",
        cert_pem=directory / f"{label}-server.pem",
        key_pem=directory / f"{label}-server-key.pem",
    )
    files.root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    files.cert_pem.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key_pem.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def make_client_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A client CA and an SBC certificate (clientAuth) it signed: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def build(subject: str, public: Any, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("SBC client CA"))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        return builder.sign(ca_key, hashes.SHA256())

    directory.mkdir(parents=True)
    paths = directory / "ca.pem", directory / "sbc.pem", directory / "sbc-key.pem"
    pem = serialization.Encoding.PEM
    paths[0].write_bytes(build("SBC client CA", ca_key.public_key(), ca=True).public_bytes(pem))
    paths[1].write_bytes(build("sbc-1", key.public_key(), ca=False).public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?")[0])
        self.server.requests.append(self.path)
        if route is None:
            route = Route.body(b"not found\n", status=404, content_type="text/plain")
        if self.server.stopping.wait(route.header_delay):
            return
        self.send_response(route.status)
        if route.content_type:
            self.send_header("Content-Type", route.content_type)
        for name, value in route.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(sum(len(c) for c in route.chunks)))
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in route.chunks:
            if self.server.stopping.wait(route.pause):
                return
            self.wfile.write(chunk)
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests look at :attr:`LocalHTTPServer.requests` instead."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.stopping = threading.Event()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's thread, so a client that stalls
        # or rejects our certificate cannot hold up the accept loop.
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients that drop the connection or refuse our TLS are what tests do."""


@dataclass
class LocalHTTPServer:
    """A running server: set :attr:`routes`, read :attr:`requests`, build URLs with :meth:`url`."""

    _server: _Server = field(repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self._server.tls else "http"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def routes(self) -> dict[str, Route]:
        return self._server.routes

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


@contextmanager
def serve(tls: TLSFiles | None = None) -> Iterator[LocalHTTPServer]:
    """Run a server on 127.0.0.1 (HTTPS when ``tls`` is given) for the ``with`` block."""
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_pem, tls.key_pem)
    server = _Server(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield LocalHTTPServer(server)
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()


@asynccontextmanager
async def serve_asgi(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run an ASGI app under a real uvicorn on 127.0.0.1; yields its ``http://`` base URL."""
    import uvicorn

    class _Uvicorn(uvicorn.Server):
        def install_signal_handlers(self) -> None:
            """The test runner owns the signals."""

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **options)
    server = _Uvicorn(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
