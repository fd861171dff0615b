"""The HTTP(S) listeners of ``opensti serve``: TLS material checked before anything
starts and loaded again when renewed, mutual TLS for the internal listener, forwarded
headers only from known proxies.

uvicorn does not tell the app whether the TLS handshake verified a client certificate,
so the listeners' protocol (:mod:`opensti.api._http_protocol`) hands the verified chain
to the STIR API's door, on its fast path and in the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from uvicorn.config import create_ssl_context

from opensti.api._http_protocol import FastPath, http_protocol
from opensti.core.errors import InvalidInput
from opensti.prefork import Balance, BalancedAcceptor, LoadBoard

__all__ = ["CertificateReloader", "TLSMaterial", "check_tls", "uvicorn_server"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


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


class CertificateReloader:
    """Loads a renewed certificate and key, and a changed client CA file, into the
    listeners, so new connections get them without a restart; open ones keep theirs.

    The STI-CR's Web PKI certificate is renewed every 60 to 90 days. Loaded only at
    start, a renewal waited for a restart that is easily forgotten, and once the old
    certificate expired every verifier failed to fetch the x5u. The client CA file
    (mutual TLS) changes when an SBC with certificates from a new CA is let in, or one
    is shut out; a restart for that stopped signing for a moment.

    A CA cannot be taken out of a live context, so each change makes new contexts, as
    uvicorn made the listeners' first ones, and every new connection is switched to
    them in the handshake's first callback (the server name's, which OpenSSL calls
    whether or not the client names a server).

    The files are read once into memory, checked and loaded from that copy: a renewal
    caught half-written (the certificate new, the key not yet) is refused whole, and
    never leaves a listener with a certificate whose key it lacks. It is tried again
    when the files change again."""

    #: Within this much of its expiry the served certificate is a ``/health`` problem.
    EXPIRY_WARNING = dt.timedelta(days=14)

    def __init__(self, material: TLSMaterial) -> None:
        self._files = (material.cert, material.key)
        self._client_ca = material.client_ca
        self._switches: list[_Switch] = []
        self._seen = self._stat()
        #: The served certificate's expiry (None if its file no longer parses).
        self.not_after = _not_after(material.cert.read_bytes())

    def watch(self, configs: Sequence[uvicorn.Config]) -> None:
        """The listeners' configurations, loaded (their first contexts made): new
        connections to them get what is loaded from now on."""
        for config in configs:
            assert config.ssl is not None, "a TLS listener's configuration"
            switch = _Switch(config)
            config.ssl.sni_callback = switch
            self._switches.append(switch)

    def problems(self, now: dt.datetime | None = None) -> list[str]:
        """The served certificate expiring or expired, for ``/health``: a renewal that
        does not reach the files would otherwise show only when verifiers fail."""
        if self.not_after is None:
            return []
        now = now or dt.datetime.now(dt.UTC)
        name = self._files[0]
        if self.not_after <= now:
            return [f"the TLS certificate {name} expired at {self.not_after:%Y-%m-%d %H:%M} UTC"]
        if self.not_after - now < self.EXPIRY_WARNING:
            days = (self.not_after - now).total_seconds() / 86400
            return [
                f"the TLS certificate {name} expires in {days:.1f} days: renew it "
                "(it is loaded without a restart)"
            ]
        return []

    def _watched(self) -> tuple[Path, ...]:
        return self._files if self._client_ca is None else (*self._files, self._client_ca)

    def _stat(self) -> tuple[tuple[int, ...], ...] | None:
        try:
            stats = [os.stat(path) for path in self._watched()]
        except OSError:
            return None
        return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def check(self) -> bool:
        """Load the files if they changed and load together; True when they were."""
        seen = self._stat()
        if seen is None or seen == self._seen:
            return False
        self._seen = seen
        try:
            cert, key, *client_ca = (path.read_bytes() for path in self._watched())
            with contextlib.ExitStack() as in_memory:
                chain = in_memory.enter_context(_in_memory(cert.rstrip() + b"\n" + key))
                ca = in_memory.enter_context(_in_memory(client_ca[0])) if client_ca else None
                contexts = [_context_like(s.config, chain, ca) for s in self._switches]
                if not contexts:
                    _context_like(None, chain, ca)  # no listener yet: checked all the same
        except OSError as exc:  # ssl.SSLError is an OSError
            logger.warning(
                "the TLS files (%s) changed but do not load (%s): still serving the previous ones",
                ", ".join(str(path) for path in self._watched()),
                _reason(exc),
            )
            return False
        for switch, context in zip(self._switches, contexts, strict=True):
            switch.current = context
        self.not_after = _not_after(cert)
        logger.info("TLS certificate %s loaded again: new connections get it", self._files[0])
        if self._client_ca is not None:
            logger.info("client CA file %s loaded again", self._client_ca)
        return True

    async def run(self, seconds: float) -> None:
        """Check every ``seconds`` until cancelled (with the server)."""
        while True:
            await asyncio.sleep(seconds)
            self.check()


class _Switch:
    """A listener's first context's server-name callback: it moves each new connection
    to the context last loaded (None: none yet, the first is current)."""

    __slots__ = ("config", "current")

    def __init__(self, config: uvicorn.Config) -> None:
        self.config = config
        self.current: ssl.SSLContext | None = None

    def __call__(self, connection: Any, server_name: str | None, context: Any) -> None:
        if self.current is not None:
            connection.context = self.current


def _context_like(
    config: uvicorn.Config | None, chain: str, client_ca: str | None
) -> ssl.SSLContext:
    """A server context made as uvicorn made ``config``'s (None: a plain one), from a
    certificate and key in one file and the client CA file when ``config`` asks for
    client certificates."""
    if config is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
        return context
    return create_ssl_context(
        certfile=chain,
        keyfile=None,
        password=None,
        ssl_version=config.ssl_version,
        cert_reqs=config.ssl_cert_reqs,
        ca_certs=client_ca if config.ssl_ca_certs else None,
        ciphers=config.ssl_ciphers,
        alpn_protocols=getattr(config.http_protocol_class, "alpn_protocols", None),
    )


def _not_after(pem: bytes) -> dt.datetime | None:
    """The expiry of the first certificate in ``pem`` (the server's own, in a chain)."""
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except ValueError:
        return None


@contextlib.contextmanager
def _in_memory(data: bytes) -> Iterator[str]:
    """A path to ``data`` that is never on disk (``ssl`` loads keys from paths only)."""
    fd = os.memfd_create("opensti-tls")
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
    return str(reason).replace("_", " ").lower()


class _BalancedServer(uvicorn.Server):
    """A uvicorn server whose connections come through a :class:`BalancedAcceptor`
    rather than uvloop's own accept, so forked workers share a burst of them."""

    def __init__(self, config: uvicorn.Config, balance: Balance) -> None:
        super().__init__(config)
        self._balance = balance
        self._acceptors: list[BalancedAcceptor] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        for sock in sockets or []:
            acceptor = BalancedAcceptor(
                sock,
                self._protocol,
                connections=lambda: len(self.server_state.connections),
                balance=self._balance,
                ssl=self.config.ssl,
            )
            acceptor.start()
            self._acceptors.append(acceptor)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for acceptor in self._acceptors:
            acceptor.close()
        await super().shutdown(sockets=sockets)

    def _protocol(self) -> asyncio.Protocol:
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol


def uvicorn_server(
    app: ASGI,
    *,
    tls: TLSMaterial | None,
    trusted_proxies: list[str],
    log_level: str,
    stir: FastPath | None = None,
    balance: Balance | None = None,
) -> uvicorn.Server:
    """A uvicorn server for one listener (its socket is given to ``serve`` later);
    ``stir``: the STIR API that ``app`` routes to, answered on the protocol's fast path;
    ``balance``: the listener is shared with forked workers (a lone process on plain
    HTTP keeps uvloop's accept, which costs less per connection)."""
    config: dict[str, Any] = {
        "lifespan": "off",
        "log_level": log_level.lower(),
        "access_log": False,
        # X-Forwarded-For rewrites the client address (which the sign-in limit and the
        # STIR allowlist count): only believed from the configured proxies.
        "proxy_headers": bool(trusted_proxies),
        "forwarded_allow_ips": ",".join(trusted_proxies) or "",
        "http": http_protocol(stir),
    }
    if tls is not None:
        config.update(ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
        if tls.client_ca is not None:
            config.update(
                ssl_ca_certs=str(tls.client_ca),
                ssl_cert_reqs=ssl.CERT_OPTIONAL,
            )
    if balance is None and tls is not None:
        # Alone, too, TLS connections come through opensti's accept: a connection being
        # closed then waits 2 s for the client's close_notify, not asyncio's 30 (one
        # idle kept-alive client held every stop that long).
        balance = Balance(LoadBoard(1), 0)
    if balance is not None:
        return _BalancedServer(uvicorn.Config(app, **config), balance)
    return uvicorn.Server(uvicorn.Config(app, **config))
