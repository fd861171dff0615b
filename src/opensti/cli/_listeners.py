"""The HTTP(S) listeners of ``opensti serve``: TLS material checked before anything
starts, mutual TLS for the internal listener, forwarded headers only from known proxies.

uvicorn does not tell the app whether the TLS handshake verified a client certificate,
so the protocol classes below add the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``) to every request of a connection
whose peer presented one; the STIR API's door reads it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from opensti.core.errors import InvalidInput

__all__ = ["TLSMaterial", "check_tls", "uvicorn_server"]

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]

try:  # httptools is the faster parser; h11 is always there.
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _FastProtocol
except ImportError:  # pragma: no cover - depends on the installation
    _FastProtocol = H11Protocol  # type: ignore[misc,assignment]


class _CoalescedWrites:
    """A transport whose writes within one pass of the event loop leave as one send.

    uvicorn writes a response's status line and headers, then its body, as two
    ``transport.write`` calls; with TCP_NODELAY each is a send system call and a TCP
    segment of its own, and on a kept-alive connection the first of them was about
    half the server's time per STIR request. Joined, a response is one send. uvicorn
    has no option for this, so it is done here, in front of the real transport: the
    writes of one pass are kept and flushed by a callback at the next, before the
    transport is closed. Everything else goes to the real transport.
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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CoalescingProtocol(_FastProtocol):
    """uvicorn's HTTP protocol over :class:`_CoalescedWrites`."""

    def connection_made(self, transport: Any) -> None:
        writes = _CoalescedWrites(transport, asyncio.get_running_loop())
        super().connection_made(writes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TLSMaterial:
    cert: Path
    key: Path
    #: CA bundle of the client certificates let into the STIR API (None: no mTLS).
    client_ca: Path | None = None


def check_tls(material: TLSMaterial) -> None:
    """Load the certificate, key and client CA as the listener will, so a missing file,
    a key of another certificate or a junk PEM stops ``serve`` with one line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(material.cert), str(material.key))
    except FileNotFoundError as exc:
        raise InvalidInput(f"cannot read TLS file {exc.filename!r}: no such file") from None
    except OSError as exc:  # ssl.SSLError is an OSError
        raise InvalidInput(
            f"cannot load the TLS certificate {str(material.cert)!r} with key "
            f"{str(material.key)!r}: {_reason(exc)}"
        ) from None
    if material.client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(material.client_ca))
        except OSError as exc:
            raise InvalidInput(
                f"cannot load the client CA file {str(material.client_ca)!r}: {_reason(exc)}"
            ) from None


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
    return str(reason).replace("_", " ").lower()


class _ClientCertificateMixin:
    """Remembers the verified client certificate of the connection, adds it to scopes."""

    app: ASGI

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if peer:
            chain = [ssl.DER_cert_to_PEM_cert(peer)]
            inner = self.app

            async def with_tls(scope: Scope, receive: Any, send: Any) -> None:
                extensions = scope.setdefault("extensions", {})
                extensions["tls"] = {"client_cert_chain": chain}
                await inner(scope, receive, send)

            self.app = with_tls


class _MutualTLSProtocol(_ClientCertificateMixin, _CoalescingProtocol):
    pass


def uvicorn_server(
    app: ASGI,
    *,
    tls: TLSMaterial | None,
    trusted_proxies: list[str],
    log_level: str,
) -> uvicorn.Server:
    """A uvicorn server for one listener (its socket is given to ``serve`` later)."""
    config: dict[str, Any] = {
        "lifespan": "off",
        "log_level": log_level.lower(),
        "access_log": False,
        # X-Forwarded-For rewrites the client address (which the sign-in limit and the
        # STIR allowlist count): only believed from the configured proxies.
        "proxy_headers": bool(trusted_proxies),
        "forwarded_allow_ips": ",".join(trusted_proxies) or "",
        "http": _CoalescingProtocol,
    }
    if tls is not None:
        config.update(ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
        if tls.client_ca is not None:
            config.update(
                ssl_ca_certs=str(tls.client_ca),
                ssl_cert_reqs=ssl.CERT_OPTIONAL,
                http=_MutualTLSProtocol,
            )
    return uvicorn.Server(uvicorn.Config(app, **config))
