"""``opensti serve``: one process with the whole service.

The internal HTTP(S) listener (``--host``/``--port``) carries the ATIS STIR API for
SBCs (``/stir/v1/...``, ``/health``, ``/metrics``), the management API (``/api/v1``)
and the web UI (``/``). The STI-CR (``/sti-cr/{id}.pem``, the x5u every verifier
fetches) is public: with ``--sti-cr-listen host:port`` (or ``OPENSTI_STI_CR_LISTEN``)
it gets a listener of its own, and each listener answers 404 for the other's paths;
without it, the internal listener serves it too. Beside them: the SIP redirect server
on the ``--sip-listen`` listeners, the reconcile loop (unless ``--no-worker``), and a
watch on the store that swaps the signing keyring when a certificate becomes active or
an entry changes, and reloads the STI-CR when a chain is published or withdrawn, here
or on another node (LISTEN/NOTIFY on PostgreSQL, a poll every second on SQLite).
SIGTERM stops everything after the steps in flight.

The STI-CR must be HTTPS for real verifiers: give ``--tls-cert``/``--tls-key`` (both
listeners use them). Plain HTTP is only accepted on loopback addresses, with
``--insecure-http`` (tests, demos). TLS material that cannot be loaded, or an address
that cannot be bound, stops the command with one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError

from opensti.api._stir_access import STIRAccess, parse_networks, store_tokens
from opensti.api.stir import STIRApp, create_stir_app
from opensti.app import App
from opensti.calls import CallLog, keyring_certificates
from opensti.cli._app import app, console, err_console
from opensti.cli._context import open_app
from opensti.cli._listeners import CertificateReloader, TLSMaterial, check_tls, uvicorn_server
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
from opensti.config import WORKER_COUNT, Settings, split_host_port
from opensti.core.errors import InvalidInput, OpenSTIError
from opensti.eventloop import run_server_loop
from opensti.lifecycle.branding import IconFetch, refresh_icons
from opensti.lifecycle.keyring_watch import KeyringWatcher
from opensti.lifecycle.reconcile import ReconcileHooks, ReconcilePolicy, reconciler_for
from opensti.metrics import Collector, Counter, Family, labels
from opensti.prefork import (
    Balance,
    Handoff,
    LoadBoard,
    SlotBoard,
    Supervisor,
    bind_each,
    die_with_parent,
    fork_workers,
    spawn_worker,
    stop_workers,
)
from opensti.repository import RepositoryApp, create_repository_app
from opensti.sandbox.server import bind_socket
from opensti.signing import CallSignerAdapter, Keyring, SigningService
from opensti.sip import (
    ListenerSpec,
    Mode,
    RedirectPolicy,
    SIPServer,
    SIPServices,
    bind_sip_listener,
    parse_listeners,
)
from opensti.store import follow_store
from opensti.verification import (
    HTTPGet,
    TrustStore,
    VerificationService,
    X5UFetcher,
    fetch_policy,
    verify_policy,
)
from opensti.verification.resources import ResourceFetcher

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
#: How long ``serve`` waits for its forked workers before it says it serves anyway.
WORKERS_START_SECONDS = 60.0
#: Room for one process's metrics as published for a scrape (a few KiB in use).
METRICS_SLOT_BYTES = 64 * 1024


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
    #: The public STI-CR listener; None: the internal listener serves the STI-CR too.
    sti_cr_listen: tuple[str, int] | None = None
    #: Processes answering HTTP and SIP on the same sockets: this one (which alone
    #: runs renewals), plus forked ones.
    workers: int = 1


@dataclass(frozen=True, slots=True)
class BoundSockets:
    """Listeners bound once before the workers fork, so every process shares them."""

    http: list[socket.socket]
    sip: list[socket.socket]
    #: With forked workers: one load board per HTTP listener, so the processes share
    #: its connections evenly (empty: a lone process)...
    boards: list[LoadBoard] = field(default_factory=list)
    #: ...and one for the SIP listeners over TCP (None: a lone process, or no such one).
    sip_board: LoadBoard | None = None
    #: With forked workers: each process's metrics, so a scrape answers for all.
    metrics: SlotBoard | None = None
    #: This process's slot on the boards: 0 for the first, then each forked worker's.
    process: int = 0

    def balance(self, listener: int) -> Balance | None:
        return Balance(self.boards[listener], self.process) if self.boards else None

    def sip_balance(self) -> Balance | None:
        return None if self.sip_board is None else Balance(self.sip_board, self.process)

    def close(self) -> None:
        for sock in (*self.http, *self.sip):
            with contextlib.suppress(OSError):
                sock.close()

    def handoff(self, process: int) -> Handoff:
        """What a replacement for worker ``process`` inherits (:func:`spawn_worker`)."""
        fds = {
            "http": tuple(sock.fileno() for sock in self.http),
            "sip": tuple(sock.fileno() for sock in self.sip),
            "boards": tuple(board.fd for board in self.boards),
            "sip_board": () if self.sip_board is None else (self.sip_board.fd,),
            "metrics": () if self.metrics is None else (self.metrics.fd,),
        }
        return Handoff(process, os.getpid(), fds)

    @classmethod
    def inherited(cls, handoff: Handoff) -> BoundSockets:
        """The listeners and boards of the server that started this replacement."""
        fds = handoff.fds
        sip_board, metrics = fds.get("sip_board", ()), fds.get("metrics", ())
        return cls(
            [socket.socket(fileno=fd) for fd in fds.get("http", ())],
            [socket.socket(fileno=fd) for fd in fds.get("sip", ())],
            [LoadBoard.attach(fd) for fd in fds.get("boards", ())],
            LoadBoard.attach(sip_board[0]) if sip_board else None,
            SlotBoard.attach(metrics[0]) if metrics else None,
            process=handoff.process,
        )


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
    hosts = [options.host] + ([options.sti_cr_listen[0]] if options.sti_cr_listen else [])
    for host in hosts:
        if host not in _LOOPBACK:
            raise InvalidInput(f"plain HTTP is only allowed on a loopback address, not {host!r}")


class Dispatcher:
    """Routes by path prefix: STI-CR, STIR API, then the management API and web UI.

    A part this listener does not serve (None) answers 404: the public listener has
    only the STI-CR, the internal one everything else (and the STI-CR when alone)."""

    def __init__(self, repository: ASGI | None, stir: ASGI | None, management: ASGI | None) -> None:
        self.repository = repository
        self.stir = stir
        self.management = management

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        path: str = scope["path"]
        if path.startswith("/sti-cr/"):
            target = self.repository
        elif path.startswith(_STIR_PATHS) or self.management is None:
            target = self.stir
        else:
            target = self.management
        if target is None:
            await _not_found(scope, send)
        else:
            await target(scope, receive, send)


async def _not_found(scope: Scope, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b"not found"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _management(
    application: App,
    signing: SigningService,
    verifier: Any,
    call_log: CallLog,
    policy: ReconcilePolicy,
    icon_fetch: IconFetch,
) -> ASGI | None:
    """``/api/v1`` and the web UI, when this installation has them."""
    try:
        from opensti.api import API_PREFIX, create_api
    except ImportError:
        return None
    api = create_api(
        application, signer=signing, verifier=verifier, call_log=call_log, icon_fetch=icon_fetch
    )
    try:
        from opensti.web import create_web
    except ImportError:
        return api
    web = create_web(application, policy=policy, verifier=verifier)

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


def _problems(
    keyring: Keyring, listeners: Sequence[ListenerSpec], tls: CertificateReloader | None
) -> list[str]:
    """What ``/health`` reports as degraded: calls that would go unsigned, and the
    HTTPS certificate near its end."""
    return [*signing_problems(keyring, listeners), *(tls.problems() if tls else ())]


def _warn_unserved(keyring: Keyring, listeners: Sequence[ListenerSpec]) -> None:
    """Say at start which sign listeners no entry can serve, and why."""
    problems = signing_problems(keyring, listeners)
    for spec in listeners:
        if spec.mode is Mode.SIGN:
            for problem in problems:
                err_console.print(f"warning: sign listener {spec}: {problem}", highlight=False)


async def _verifier(
    application: App, stack: AsyncExitStack, resources: ResourceFetcher
) -> VerificationService | None:
    """The STI-VS, when the STI-CA trust list is configured (OPENSTI_CA_TRUST_ANCHORS, or
    OPENSTI_CA_TRUST_LIST_URL), with the list read again on a schedule; rcd logos
    come from ``resources``."""
    settings = application.settings
    source = settings.ca_trust_anchors or settings.ca_trust_list_url
    if source is None:
        _log.warning("no OPENSTI_CA_TRUST_ANCHORS: verification is not offered")
        return None
    get = HTTPGet(verify=application.accounts.tls_verify)
    stack.push_async_callback(get.aclose)
    trust = TrustStore(source=source, fetch=get, allow_rsa_ca=settings.verify_rsa_ca)
    if isinstance(source, str):
        await _refresh_trust(trust)
    refresh = asyncio.create_task(_refresh_trust_every(trust, settings.ca_trust_refresh_seconds))
    stack.push_async_callback(_cancel, refresh)
    fetcher = await stack.enter_async_context(X5UFetcher(fetch_policy(settings)))
    return VerificationService(fetcher, trust, policy=verify_policy(settings), resources=resources)


async def _refresh_trust(trust: TrustStore) -> None:
    try:
        await trust.refresh()
    except OpenSTIError as exc:
        _log.warning("trust list not refreshed, the last good one stays: %s", exc.message)


async def _refresh_icons_every(application: App, seconds: float) -> None:
    """The entries' rcd logos fetched again, a changed digest stored (and so signed)."""
    while True:
        await asyncio.sleep(seconds)
        database, fetch = application.database, application.certificates.icon_fetch
        await asyncio.to_thread(refresh_icons, database, fetch)


async def _refresh_trust_every(trust: TrustStore, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await _refresh_trust(trust)


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


def stir_access(application: App) -> STIRAccess:
    """The STIR API's door from the settings: tokens, allowlist, client certificates."""
    settings = application.settings
    return STIRAccess(
        tokens=store_tokens(application.database),
        allow=parse_networks(settings.stir_allow_networks),
        client_certificates=settings.stir_client_ca_file is not None,
    )


def _tls(options: ServeOptions, settings: Settings) -> TLSMaterial | None:
    if options.tls_cert is None or options.tls_key is None:
        if settings.stir_client_ca_file is not None:
            raise InvalidInput("stir_client_ca_file (mutual TLS) needs --tls-cert/--tls-key")
        return None
    material = TLSMaterial(options.tls_cert, options.tls_key, settings.stir_client_ca_file)
    check_tls(material)
    return material


@dataclass
class _Listener:
    sock: Any
    server: uvicorn.Server


def bind_all(options: ServeOptions) -> BoundSockets:
    """Every listener of ``options``, HTTP then SIP; none stays bound if one fails."""
    http = _http_binders(options)
    sip = [functools.partial(bind_sip_listener, spec) for spec in options.sip_listeners]
    bound = bind_each([*http, *sip])
    http_bound, sip_bound = bound[: len(http)], bound[len(http) :]
    if options.workers == 1:
        return BoundSockets(http_bound, sip_bound)
    tcp = any(spec.transport == "tcp" for spec in options.sip_listeners)
    return BoundSockets(
        http_bound,
        sip_bound,
        [LoadBoard(options.workers) for _ in http],
        LoadBoard(options.workers) if tcp else None,
        SlotBoard(options.workers, METRICS_SLOT_BYTES),
    )


def bind_listeners(options: ServeOptions) -> list[socket.socket]:
    """The internal listener's socket, then the public STI-CR's when it has its own."""
    return bind_each(_http_binders(options))


def _http_binders(options: ServeOptions) -> list[Callable[[], socket.socket]]:
    addresses = [(options.host, options.port)]
    if options.sti_cr_listen is not None:
        addresses.append(options.sti_cr_listen)
    return [functools.partial(bind_socket, host, port) for host, port in addresses]


def _listen(
    app: ASGI,
    sock: socket.socket,
    tls: TLSMaterial | None,
    settings: Settings,
    *,
    stir: STIRApp | None = None,
    balance: Balance | None = None,
) -> _Listener:
    """``stir``: the STIR API ``app`` routes to, for the listener's fast path."""
    server = uvicorn_server(
        app,
        tls=tls,
        trusted_proxies=settings.trusted_proxies,
        log_level=settings.log_level,
        stir=stir,
        balance=balance,
    )
    return _Listener(sock, server)


async def run_server(
    application: App,
    options: ServeOptions,
    stop: asyncio.Event,
    *,
    ready: Callable[..., None] | None = None,
    sockets: BoundSockets | None = None,
    first: bool = True,
    collectors: Sequence[Collector] = (),
) -> None:
    """Serve until ``stop`` is set; ``ready`` gets the internal address once it listens,
    then the public STI-CR's (with ``public=True``) when it has a listener of its own.
    ``sockets``: listeners bound already (by :func:`bind_all`, shared with forked
    workers); without them this call binds its own. ``first``: the process that warns
    about setup problems and applies the call log's retention (the forked workers do
    not repeat them)."""
    check_front(options)
    settings = application.settings
    tls = _tls(options, settings)
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
    reloader = None if tls is None else CertificateReloader(tls)
    call_log = CallLog.from_settings(
        application.database,
        settings,
        certificate_for_x5u=keyring_certificates(keyring),
        purges=first,
    )
    async with AsyncExitStack() as stack:
        call_log.start()
        stack.callback(call_log.stop)
        # Rich Call Data logos, fetched under the x5u rules (RFC 9795 rcdi) and cached:
        # the verifier's, and those a signing request names.
        resources = await stack.enter_async_context(ResourceFetcher(fetch_policy(settings)))
        verifier = await _verifier(application, stack, resources)
        split = options.sti_cr_listen is not None
        stir = create_stir_app(
            signing,
            verifier,
            access=stir_access(application),
            health=application.database.health,
            problems=lambda: _problems(keyring, options.sip_listeners, reloader),
            icon_fetch=resources.fetch,
        )
        for collector in collectors:
            stir.metrics.add_collector(collector)
        if sockets is not None and sockets.metrics is not None:
            shared = stir.metrics.share(sockets.metrics, sockets.process)
            stack.push_async_callback(_cancel, asyncio.create_task(shared.publish_every()))
        internal = Dispatcher(
            None if split else repository,
            stir,
            _management(application, signing, verifier, call_log, options.policy, resources.fetch),
        )
        await repository.start()
        stack.push_async_callback(repository.stop)
        if options.sip_listeners:
            if first:
                _warn_unserved(keyring, options.sip_listeners)
            services = SIPServices(
                signer=CallSignerAdapter(signing),
                verifier=verifier,
                log=call_log,
                policy=sip_policy(settings),
            )
            sip_server = SIPServer(
                options.sip_listeners,
                services,
                sockets=None if sockets is None else sockets.sip,
                balance=None if sockets is None else sockets.sip_balance(),
            )
            await stack.enter_async_context(sip_server)
            stir.metrics.add_collector(sip_server.metric_families)
        if sockets is None:
            sockets = BoundSockets(bind_listeners(options), [])
        bound, balance = sockets.http, sockets.balance
        listeners = [_listen(internal, bound[0], tls, settings, stir=stir, balance=balance(0))]
        if options.sti_cr_listen is not None:
            public_tls = None if tls is None else TLSMaterial(tls.cert, tls.key)
            public = Dispatcher(repository, None, None)
            listeners.append(_listen(public, bound[1], public_tls, settings, balance=balance(1)))
        stack.callback(_close_sockets, listeners)
        serving = [asyncio.create_task(x.server.serve(sockets=[x.sock])) for x in listeners]
        tasks = list(serving)
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
            icons = _refresh_icons_every(application, settings.rcd_icon_refresh_seconds)
            stack.push_async_callback(_cancel, asyncio.create_task(icons))
        while not all(x.server.started for x in listeners) and not any(t.done() for t in serving):
            await asyncio.sleep(0.01)
        started = all(x.server.started for x in listeners)
        if started and reloader is not None:
            reloader.watch([x.server.config for x in listeners if x.server.config.ssl])
            reloading = asyncio.create_task(reloader.run(settings.tls_reload_seconds))
            stack.push_async_callback(_cancel, reloading)
        if ready is not None and started and sockets.boards:
            await _workers_serving(sockets.boards[0])
        if ready is not None and started:
            ready(listeners[0].sock.getsockname()[:2])
            if len(listeners) > 1:
                ready(listeners[1].sock.getsockname()[:2], public=True)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, *serving], return_when=asyncio.FIRST_COMPLETED)
        failed = not stop.is_set()
        stop.set()
        for listener in listeners:
            listener.server.should_exit = True
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopped.cancel()
        if failed or not started:
            raise InvalidInput(f"the HTTP listener stopped: {_failure(results)}")


async def _workers_serving(board: LoadBoard, timeout: float = WORKERS_START_SECONDS) -> None:
    if not await board.wait_serving(timeout):
        missing = board.processes - board.serving(time.monotonic())
        _log.warning(
            "%d of %d processes not serving after %.0f s", missing, board.processes, timeout
        )


def _failure(results: list[Any]) -> str:
    errors = [r for r in results if isinstance(r, BaseException)]
    return str(errors[0]) if errors else "it could not start (see the log above)"


def _close_sockets(listeners: list[_Listener]) -> None:
    for listener in listeners:
        with contextlib.suppress(OSError):
            listener.sock.close()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _worker_count(value: str) -> int:
    """``--workers``: a number of processes (1 to 64) or ``auto``, as the setting."""
    try:
        return WORKER_COUNT.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise typer.BadParameter(f"{value!r}: {reason} (a number of processes, or auto)") from None


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address of the HTTP(S) front.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the HTTP(S) front.")] = 8443,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate chain (PEM) for HTTPS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM) for HTTPS.")] = None,
    sti_cr_listen: Annotated[
        str | None,
        typer.Option(
            help="host:port of a public listener for the STI-CR alone (default: "
            "$OPENSTI_STI_CR_LISTEN; unset, the --host/--port listener serves it).",
        ),
    ] = None,
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
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "--http-workers",
            parser=_worker_count,
            metavar="N|auto",
            help="Processes answering HTTP and SIP on the same sockets (default: "
            "$OPENSTI_WORKERS, else 1); auto: one per core, which uses them all.",
        ),
    ] = None,
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
    # Set only when this process replaces a worker that ended (prefork.Supervisor).
    handoff = Handoff.take()
    if handoff is not None:
        die_with_parent(handoff.parent)
    with open_app(ctx) as application:
        listen = sti_cr_listen or application.settings.sti_cr_listen
        if listen is not None:
            options = replace(options, sti_cr_listen=_host_port(listen))
        options = replace(options, workers=workers or application.settings.workers)
        check_front(options)
        configure_logging(application.settings.log_level)
        if handoff is not None:
            _serve_as_worker(application, options, BoundSockets.inherited(handoff))
            return
        sockets = bind_all(options)
        parent = os.getpid()
        children = fork_workers(
            options.workers - 1,
            lambda process: _worker(ctx, options, replace(sockets, process=process), parent),
            name="worker",
        )
        supervisor = Supervisor(children, lambda process: spawn_worker(sockets.handoff(process)))
        try:
            run_server_loop(_serve(application, options, sockets, supervisor))
        finally:
            stop_workers(supervisor.pids())
            sockets.close()


def _worker(ctx: typer.Context, options: ServeOptions, sockets: BoundSockets, parent: int) -> None:
    """A forked worker: a store of its own (the parent's connections stay the parent's)."""
    die_with_parent(parent)
    with open_app(ctx) as application:
        _serve_as_worker(application, options, sockets)


def _serve_as_worker(application: App, options: ServeOptions, sockets: BoundSockets) -> None:
    """Answer HTTP and SIP on the inherited sockets, with a keyring watch, verifier and
    call log of this process's own; renewals stay with the parent."""
    serving_only = replace(options, worker=False, workers=1)

    async def main() -> None:
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await run_server(application, serving_only, stop, sockets=sockets, first=False)

    run_server_loop(main())


def _restart_families(supervisor: Supervisor) -> list[Family]:
    """The workers started again, for ``/metrics``: a rise is a worker crashing."""
    restarts = Counter(
        "opensti_worker_restarts_total", "Workers started again after they ended, by slot."
    )
    for slot, count in supervisor.restarts().items():
        restarts.inc_at(labels(slot=str(slot)), count)
    return [restarts]


def _host_port(value: str) -> tuple[str, int]:
    try:
        return split_host_port(value)
    except ValueError as exc:
        raise InvalidInput(f"--sti-cr-listen: {exc}") from None


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


async def _serve(
    application: App, options: ServeOptions, sockets: BoundSockets, supervisor: Supervisor
) -> None:
    stop = asyncio.Event()
    scheme = "https" if options.tls_cert else "http"

    def announce(address: tuple[str, int], *, public: bool = False) -> None:
        host, port = address
        if public:
            console.print(f"STI-CR serving on {scheme}://{host}:{port}", highlight=False)
            return
        console.print(f"opensti serving on {scheme}://{host}:{port}", highlight=False)
        link = first_run_link(application, browser_url(application, scheme, host, port))
        if link is not None:
            console.print(f"No user yet: create the admin at {link}", highlight=False)

    with stop_on_signals(stop):
        supervising = asyncio.create_task(supervisor.run(stop))
        try:
            await run_server(
                application,
                options,
                stop,
                ready=announce,
                sockets=sockets,
                collectors=[functools.partial(_restart_families, supervisor)],
            )
        finally:
            stop.set()
            await supervising
