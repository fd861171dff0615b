"""``opensti worker``, ``opensti cert status`` and ``opensti cert renew``: the reconcile loop.

``opensti serve`` (:mod:`opensti.cli.serve`) runs the same loop beside the servers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from opensti.cli._app import app, console, print_json
from opensti.cli._context import open_app
from opensti.cli.cert import cert_app
from opensti.core.errors import UpstreamError
from opensti.lifecycle.reconcile import (
    AttemptResult,
    EntryStatus,
    ReconcilePolicy,
    Reconciler,
    entry_statuses,
    reconciler_for,
    request_renewal,
)

__all__ = ["configure_logging", "policy_from", "stop_on_signals"]

JSONOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TickOption = Annotated[float, typer.Option(help="Seconds between passes over the entries.")]
BackoffInitialOption = Annotated[
    float, typer.Option(help="First retry delay after a failure, in seconds (then doubled).")
]
BackoffMaxOption = Annotated[float, typer.Option(help="Longest retry delay, in seconds.")]
LeaseTTLOption = Annotated[
    float, typer.Option(help="Seconds a worker holds an entry between two steps.")
]
ConcurrencyOption = Annotated[int, typer.Option(help="Entries worked on at once.")]
WorkerIdOption = Annotated[
    str | None,
    typer.Option(
        help="This worker's name in leases (default: host:pid); keep it across "
        "restarts to resume an entry at once instead of after the lease TTL."
    ),
]

_DEFAULTS = ReconcilePolicy()


def policy_from(
    tick: float, backoff_initial: float, backoff_max: float, lease_ttl: float, concurrency: int
) -> ReconcilePolicy:
    return ReconcilePolicy(
        tick=tick,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        lease_ttl=lease_ttl,
        attempt_timeout=max(_DEFAULTS.attempt_timeout, lease_ttl),
        concurrency=concurrency,
    )


@contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop``: the loop finishes its step and exits cleanly."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("worker")
def worker_command(
    ctx: typer.Context,
    tick: TickOption = _DEFAULTS.tick,
    backoff_initial: BackoffInitialOption = _DEFAULTS.backoff_initial,
    backoff_max: BackoffMaxOption = _DEFAULTS.backoff_max,
    lease_ttl: LeaseTTLOption = _DEFAULTS.lease_ttl,
    concurrency: ConcurrencyOption = _DEFAULTS.concurrency,
    worker_id: WorkerIdOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="One pass over the entries, then exit.")
    ] = False,
) -> None:
    """Run the reconcile loop alone: renew certificates before they expire (until SIGTERM)."""
    policy = policy_from(tick, backoff_initial, backoff_max, lease_ttl, concurrency)
    with open_app(ctx) as application:
        configure_logging(application.settings.log_level)
        reconciler = reconciler_for(application, policy, holder=worker_id)
        if once:
            results = asyncio.run(reconciler.pass_once())
            _print_results(results)
            return
        asyncio.run(_run_worker(reconciler))


async def _run_worker(reconciler: Reconciler) -> None:
    stop = asyncio.Event()
    with stop_on_signals(stop):
        await reconciler.run(stop)


def _print_results(results: list[AttemptResult]) -> None:
    for result in results:
        line = f"{result.entry}: {result.outcome}"
        if result.certificate_id is not None:
            line += f" (certificate #{result.certificate_id})"
        if result.error:
            line += f": {result.error}"
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _state(status: EntryStatus) -> str:
    if not status.enabled:
        return "disabled"
    if status.failing_since is not None:
        return f"failing ({status.failure_count}x), retry {_when(status.next_attempt_at)}"
    if status.pending_certificate_id is not None:
        return f"renewing (#{status.pending_certificate_id})"
    return "ok" if status.certificate_id is not None else "no certificate"


@cert_app.command("status")
def cert_status(ctx: typer.Context, json_output: JSONOption = False) -> None:
    """Each entry: active certificate, expiry, next renewal, state and last error."""
    with open_app(ctx) as application:
        statuses = entry_statuses(
            application.database,
            ReconcilePolicy(),
            public_base_url=application.settings.public_base_url,
        )
    if json_output:
        print_json([status.to_dict() for status in statuses])
        return
    table = Table("entry", "SPC", "active", "expires", "next renewal", "state", "last error")
    for status in statuses:
        table.add_row(
            status.name,
            status.spc,
            f"#{status.certificate_id}" if status.certificate_id else "none",
            _when(status.not_after),
            _when(status.next_renewal),
            _state(status),
            status.last_error or "",
        )
    console.print(table)


@cert_app.command("renew")
def cert_renew(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The entry's name.")],
    now: Annotated[
        bool,
        typer.Option("--now", help="Renew here and now instead of asking the running loop."),
    ] = False,
    json_output: JSONOption = False,
) -> None:
    """Renew an entry's certificate even if it is not due yet."""
    with open_app(ctx) as application:
        if not now:
            request_renewal(application.database, name)
            message = f"{name}: renewal requested; the running worker takes it at its next pass"
            if json_output:
                print_json({"entry": name, "outcome": "requested"})
            else:
                console.print(message, highlight=False, markup=False)
            return
        reconciler = reconciler_for(application, _DEFAULTS)
        result = asyncio.run(reconciler.reconcile(name, force=True))
    if json_output:
        print_json(result.to_dict())
    else:
        _print_results([result])
    if result.outcome == "busy":
        raise UpstreamError(f"entry {name!r} is being worked on by another worker; try later")
    if result.outcome == "failed":
        raise UpstreamError(f"renewing {name!r} failed: {result.error}")
