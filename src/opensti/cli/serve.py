"""``opensti serve``: one process with the whole service.

One HTTP(S) port carries the STI-CR (``/sti-cr/{id}.pem``, the x5u every verifier
fetches), the ATIS STIR API for SBCs (``/stir/v1/...``, ``/health``, ``/metrics``),
and, when installed, the management API (``/api/v1``) and the web UI (``/``). Beside
it: the SIP redirect server on the ``--sip-listen`` listeners, the reconcile loop
(unless ``--no-worker``), and a watch on the store that swaps the signing keyring
when a certificate becomes active or an entry changes, and reloads the STI-CR when a
chain is published or withdrawn, here or on another node (LISTEN/NOTIFY on
PostgreSQL, a poll every second on SQLite). SIGTERM stops everything after the steps
in flight.

The STI-CR must be HTTPS for real verifiers: give ``--tls-cert``/``--tls-key``. Plain
HTTP is only accepted on a loopback address, with ``--insecure-http`` (tests, demos).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from opensti.api.stir import create_stir_app
from opensti.app import App
from opensti.calls import CallLog, keyring_certificates
from opensti.cli._app import app, console, err_console
from opensti.cli._context import open_app
from opensti.cli.lifecycle_loop import (
    BackoffInitialOption,
    BackoffMaxOption,
    ConcurrencyOption,
    LeaseTTLOption,
    TickOption,
    WorkerIdOption,
    configure_logging,
    policy_from,
    stop_on_signals,
)
from opensti.cli.users import first_run_link
from opensti.config import Settings
from opensti.core.errors import InvalidInput
from opensti.lifecycle.keyring_watch import KeyringWatcher
from opensti.lifecycle.reconcile import ReconcileHooks, ReconcilePolicy, reconciler_for
from opensti.repository import RepositoryApp, create_repository_app
from opensti.sandbox.server import bind_socket
from opensti.signing import CallSignerAdapter, Keyring, SigningService
from opensti.sip import (
    ListenerSpec,
    Mode,
    RedirectPolicy,
    SIPServer,
    SIPServices,
    parse_listeners,
)
from opensti.store import follow_store
from opensti.verification import FetchPolicy, HTTPGet, TrustStore, VerificationService, X5UFetcher

__all__ = [
    "Dispatcher",
    "ServeOptions",
    "browser_url",
    "check_front",
    "run_server",
    "signing_problems",
    "sip_policy",
]

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_STIR_PATHS = ("/stir/", "/health", "/metrics")
_log = logging.getLogger(__name__)

_DEFAULTS = ReconcilePolicy()
#: How often the store watch polls SQLite (two small queries); PostgreSQL notifies.
WATCH_POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_http: bool = False
    sip_listeners: tuple[ListenerSpec, ...] = ()
    worker: bool = True
    policy: ReconcilePolicy = _DEFAULTS
    worker_id: str | None = None


def check_front(options: ServeOptions) -> None:
    """HTTPS with a certificate and key, or plain HTTP on loopback when asked for."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise InvalidInput("give both --tls-cert and --tls-key")
    if options.tls_cert is not None:
        if options.insecure_http:
            raise InvalidInput("--insecure-http and --tls-cert exclude each other")
        return
    if not options.insecure_http:
        raise InvalidInput(
            "the STI-CR must be served over HTTPS: give --tls-cert and --tls-key "
            "(or --insecure-http on a loopback address, for tests and demos)"
        )
    if options.host not in _LOOPBACK:
        raise InvalidInput(
            f"plain HTTP is only allowed on a loopback address, not {options.host!r}"
        )


class Dispatcher:
    """Routes by path prefix: STI-CR, STIR API, then the management API and web UI."""

    def __init__(self, repository: ASGI, stir: ASGI, management: ASGI | None) -> None:
        self.repository = repository
        self.stir = stir
        self.management = management

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        path: str = scope["path"]
        if path.startswith("/sti-cr/"):
            await self.repository(scope, receive, send)
        elif path.startswith(_STIR_PATHS) or self.management is None:
            await self.stir(scope, receive, send)
        else:
            await self.management(scope, receive, send)


def _management(
    application: App,
    signing: SigningService,
    verifier: Any,
    call_log: CallLog,
    policy: ReconcilePolicy,
) -> ASGI | None:
    """``/api/v1`` and the web UI, when this installation has them."""
    try:
        from opensti.api import API_PREFIX, create_api
    except ImportError:
        return None
    api = create_api(application, signer=signing, verifier=verifier, call_log=call_log)
    try:
        from opensti.web import create_web
    except ImportError:
        return api
    web = create_web(application, policy=policy)

    async def route(scope: Scope, receive: Any, send: Any) -> None:
        target = api if scope["path"].startswith(API_PREFIX) else web
        await target(scope, receive, send)

    return route


def signing_problems(keyring: Keyring, listeners: Sequence[ListenerSpec]) -> tuple[str, ...]:
    """Why calls to this server would go unsigned, for ``/health`` and the start-up log;
    nothing on a server that neither has sign listeners nor any entry (verify only)."""
    snapshot = keyring.snapshot
    signs = any(spec.mode is Mode.SIGN for spec in listeners)
    return snapshot.problems() if signs or snapshot.entries else ()


def _warn_unserved(keyring: Keyring, listeners: Sequence[ListenerSpec]) -> None:
    """Say at start which sign listeners no entry can serve, and why."""
    problems = signing_problems(keyring, listeners)
    for spec in listeners:
        if spec.mode is Mode.SIGN:
            for problem in problems:
                err_console.print(f"warning: sign listener {spec}: {problem}", highlight=False)


async def _verifier(application: App, stack: AsyncExitStack) -> VerificationService | None:
    """The STI-VS, when the STI-CA trust list is configured (OPENSTI_CA_TRUST_ANCHORS)."""
    anchors = application.settings.ca_trust_anchors
    if anchors is None:
        _log.warning("no OPENSTI_CA_TRUST_ANCHORS: verification is not offered")
        return None
    verify = application.accounts.tls_verify
    trust = TrustStore(source=anchors, fetch=HTTPGet(verify=verify))
    fetcher = await stack.enter_async_context(X5UFetcher(FetchPolicy()))
    return VerificationService(fetcher, trust)


def sip_policy(settings: Settings) -> RedirectPolicy:
    """The SIP listeners' shared knobs; each listener adds its mode and failure policy."""
    return RedirectPolicy(
        dest_from_request_uri=settings.sip_dest_from_request_uri,
        verify_timeout=settings.sip_verify_timeout,
        max_in_flight=settings.sip_max_in_flight,
        trying_delay=settings.sip_trying_delay or None,
        transaction_lifetime=settings.sip_transaction_lifetime,
        max_transactions=settings.sip_max_transactions,
    )


def _uvicorn(dispatcher: Dispatcher, options: ServeOptions, log_level: str) -> uvicorn.Server:
    config: dict[str, Any] = {
        "lifespan": "off",
        "log_level": log_level.lower(),
        "access_log": False,
    }
    if options.tls_cert is not None and options.tls_key is not None:
        config.update(ssl_certfile=str(options.tls_cert), ssl_keyfile=str(options.tls_key))
    return uvicorn.Server(uvicorn.Config(dispatcher, **config))


async def run_server(
    application: App,
    options: ServeOptions,
    stop: asyncio.Event,
    *,
    ready: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """Serve until ``stop`` is set; ``ready`` gets the HTTP address once it listens."""
    check_front(options)
    settings = application.settings
    keyring = application.keyring()
    signing = SigningService(keyring)
    watcher = KeyringWatcher(
        application.database, keyring, application.certificates.signing_entries
    )
    repository: RepositoryApp = create_repository_app(
        application.database,
        max_age_cap=settings.sti_cr_max_age,
        refresh_interval=settings.sti_cr_refresh_seconds,
    )
    # One call log for SIP and REST: every signed and verified call, written in batches
    # off the request path.
    call_log = CallLog.from_settings(
        application.database, settings, certificate_for_x5u=keyring_certificates(keyring)
    )
    async with AsyncExitStack() as stack:
        call_log.start()
        stack.callback(call_log.stop)
        verifier = await _verifier(application, stack)
        dispatcher = Dispatcher(
            repository,
            create_stir_app(
                signing,
                verifier,
                problems=lambda: signing_problems(keyring, options.sip_listeners),
            ),
            _management(application, signing, verifier, call_log, options.policy),
        )
        await repository.start()
        stack.push_async_callback(repository.stop)
        if options.sip_listeners:
            _warn_unserved(keyring, options.sip_listeners)
            services = SIPServices(
                signer=CallSignerAdapter(signing),
                verifier=verifier,
                log=call_log,
                policy=sip_policy(settings),
            )
            await stack.enter_async_context(SIPServer(options.sip_listeners, services))
        sock = bind_socket(options.host, options.port)
        server = _uvicorn(dispatcher, options, settings.log_level)
        tasks = [asyncio.create_task(server.serve(sockets=[sock]))]
        watches = [watcher.watch] if repository.watch is None else [watcher.watch, repository.watch]
        follow = asyncio.create_task(
            follow_store(application.database, watches, poll_interval=WATCH_POLL_SECONDS)
        )
        stack.push_async_callback(_cancel, follow)
        if options.worker:
            reconciler = reconciler_for(
                application,
                options.policy,
                holder=options.worker_id,
                hooks=ReconcileHooks(published=repository.refresh, activated=watcher.refresh),
            )
            tasks.append(asyncio.create_task(reconciler.run(stop)))
        while not server.started and not tasks[0].done():
            await asyncio.sleep(0.01)
        if ready is not None and server.started:
            ready(sock.getsockname()[:2])
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        stopped.cancel()
        with contextlib.suppress(OSError):
            sock.close()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address of the HTTP(S) front.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the HTTP(S) front.")] = 8443,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate chain (PEM) for HTTPS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM) for HTTPS.")] = None,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http", help="Plain HTTP on a loopback address (tests and demos only)."
        ),
    ] = False,
    sip_listen: Annotated[
        str | None,
        typer.Option(
            help="SIP listeners, e.g. udp:0.0.0.0:5060/sign,tcp:0.0.0.0:5061/verify/reject."
        ),
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the reconcile loop here.")
    ] = False,
    tick: TickOption = _DEFAULTS.tick,
    backoff_initial: BackoffInitialOption = _DEFAULTS.backoff_initial,
    backoff_max: BackoffMaxOption = _DEFAULTS.backoff_max,
    lease_ttl: LeaseTTLOption = _DEFAULTS.lease_ttl,
    concurrency: ConcurrencyOption = _DEFAULTS.concurrency,
    worker_id: WorkerIdOption = None,
) -> None:
    """Run everything: STI-CR, STIR API, management API and web UI, SIP, renewals."""
    options = ServeOptions(
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure_http=insecure_http,
        sip_listeners=tuple(parse_listeners(sip_listen)) if sip_listen else (),
        worker=not no_worker,
        policy=policy_from(tick, backoff_initial, backoff_max, lease_ttl, concurrency),
        worker_id=worker_id,
    )
    check_front(options)
    with open_app(ctx) as application:
        configure_logging(application.settings.log_level)
        asyncio.run(_serve(application, options))


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def browser_url(application: App, scheme: str, host: str, port: int) -> str:
    """Where a browser reaches this server: a wildcard address is no address, so the
    public base URL (the same front serves the STI-CR and the UI) or localhost."""
    if not _is_unspecified(host):
        return f"{scheme}://{host}:{port}"
    public = application.settings.public_base_url
    return public.rstrip("/") if public else f"{scheme}://localhost:{port}"


async def _serve(application: App, options: ServeOptions) -> None:
    stop = asyncio.Event()
    scheme = "https" if options.tls_cert else "http"

    def announce(address: tuple[str, int]) -> None:
        host, port = address
        console.print(f"opensti serving on {scheme}://{host}:{port}", highlight=False)
        link = first_run_link(application, browser_url(application, scheme, host, port))
        if link is not None:
            console.print(f"No user yet: create the admin at {link}", highlight=False)

    with stop_on_signals(stop):
        await run_server(application, options, stop, ready=announce)
