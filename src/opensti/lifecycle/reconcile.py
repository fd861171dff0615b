"""The reconcile loop: every enabled entry keeps an active certificate with life left.

Desired state: each enabled entry has an active certificate with more than its
``renew_before`` of life left (the entry's setting, else the global setting
``lifecycle.renew_before`` in seconds, else a third of the certificate's lifetime).
When it has not, the loop runs the next missing steps of the flow
(:mod:`opensti.lifecycle.flow`, resumable from the pending certificate row after a
crash), and so does ``opensti cert renew N --now`` through :meth:`Reconciler.reconcile`.

Every step is recorded as a :class:`~opensti.store.LifecycleEvent`. A failure sets the
entry's backoff (exponential with jitter, bounded by the policy) and failure episode
fields, which the notifier turns into one email per episode. Each entry is worked on
under a store lease, so several workers on one database never double-work, and in its
own task with a timeout, so one entry's trouble never stalls another.

Clocks: sleeps and timeouts use the monotonic clock; certificate validity, backoff
deadlines and leases use the wall clock (they are shared through the database). A
backoff deadline further away than the policy allows means the wall clock went back:
the entry is tried now instead of waiting out the jump.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.orm import Session

from opensti.config import Settings
from opensti.core.errors import Conflict, InvalidInput, LeaseLost, OpenSTIError, UpstreamError
from opensti.lifecycle.accounts import AccountService, Clock, utc_now
from opensti.lifecycle.deploy import run_deployment_tasks
from opensti.lifecycle.flow import (
    FORCE_PREFIX,
    HOLD_PREFIX,
    FlowAttempt,
    FlowContext,
    FlowStep,
    ReconcileHooks,
    run_flow,
)
from opensti.lifecycle.notify import Notifier
from opensti.repository import x5u_for
from opensti.store import (
    Certificate,
    CertificateEntry,
    Database,
    EventOutcome,
    Lease,
    SecretBox,
    acquire_lease,
    active_certificate,
    delete_setting,
    get_entry,
    get_entry_by_id,
    get_setting,
    list_deployment_tasks,
    list_entries,
    pending_certificate,
    put_setting,
    release_lease,
    setting_keys,
)

__all__ = [
    "RENEW_BEFORE_KEY",
    "WAITING",
    "AttemptResult",
    "EntryStatus",
    "FlowStep",
    "MarginSource",
    "ReconcileHooks",
    "ReconcilePolicy",
    "Reconciler",
    "backoff_delay",
    "check_renew_before",
    "default_holder",
    "entry_statuses",
    "get_renew_before",
    "held_entries",
    "hold_entry",
    "next_renewal",
    "reconciler_for",
    "release_hold",
    "renew_at",
    "renew_before",
    "renew_margin",
    "request_renewal",
    "set_entry_renew_before",
    "set_renew_before",
]

#: Global renewal margin in seconds (a setting row); unset: a third of the lifetime.
RENEW_BEFORE_KEY = "lifecycle.renew_before"
#: The longest renewal margin accepted (global or an entry's) (certificates live a year at most).
MAX_RENEW_BEFORE = dt.timedelta(days=365)
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    """How hard and how often to try; every duration is in seconds."""

    #: Share of a certificate's lifetime left when renewal starts (default margin).
    renew_fraction: float = 1 / 3
    backoff_initial: float = 30.0
    backoff_max: float = 3600.0
    #: The delay is drawn from [d * (1 - jitter), d].
    backoff_jitter: float = 0.25
    lease_ttl: float = 300.0
    #: One attempt on one entry, all steps; past it the attempt stops at the next step.
    attempt_timeout: float = 600.0
    #: How long the CA may take to validate a token or issue a certificate.
    acme_poll_timeout: float = 120.0
    #: Immediate retries of a transient CA/STI-PA failure before backing off.
    quick_retries: int = 3
    quick_retry_delay: float = 0.5
    concurrency: int = 8
    #: Seconds between passes over the entries.
    tick: float = 5.0
    #: Seconds between notifier looks at every entry (at-risk emails, summaries).
    observe_interval: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1:
            raise InvalidInput("renew_fraction is between 0 and 1", value=self.renew_fraction)
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise InvalidInput("backoff: 0 < initial <= max")
        if not 0 <= self.backoff_jitter < 1:
            raise InvalidInput("backoff jitter is between 0 and 1", value=self.backoff_jitter)
        if self.concurrency < 1 or min(self.tick, self.lease_ttl, self.attempt_timeout) <= 0:
            raise InvalidInput("concurrency, tick, lease TTL and timeout must be positive")


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one look at one entry did."""

    entry: str
    #: ``up-to-date``, ``waiting`` (backoff), ``busy`` (another worker's lease),
    #: ``activated``, ``failed``; ``deployed`` or ``deploy-failed`` for a retry of the
    #: deployment tasks of the active certificate.
    outcome: str
    certificate_id: int | None = None
    error: str | None = None
    steps: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": list(self.steps)}


def default_holder() -> str:
    """This process's name in leases: host and pid."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}"


def backoff_delay(failures: int, policy: ReconcilePolicy, rng: random.Random) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1-based)."""
    exponent = min(max(failures, 1) - 1, 32)
    delay = min(policy.backoff_max, policy.backoff_initial * 2.0**exponent)
    return delay * (1 - policy.backoff_jitter * rng.random())


def renew_before(
    entry: CertificateEntry, cert: Certificate, global_seconds: float | None, fraction: float
) -> dt.timedelta:
    """The margin before ``cert`` expires at which the entry renews it.

    Never more than half the lifetime: a margin as long as the certificate's life would
    renew every new certificate at once, for ever.
    """
    assert cert.not_before is not None
    assert cert.not_after is not None
    lifetime = cert.not_after - cert.not_before
    seconds, _ = renew_margin(entry, global_seconds)
    margin = lifetime * fraction if seconds is None else dt.timedelta(seconds=seconds)
    return min(margin, lifetime / 2)


class MarginSource(StrEnum):
    """Where an entry's renewal margin comes from."""

    ENTRY = "entry"
    GLOBAL = "global"
    #: Neither is set: the policy's fraction of each certificate's lifetime.
    DEFAULT = "default"


def renew_margin(
    entry: CertificateEntry, global_seconds: float | None
) -> tuple[float | None, MarginSource]:
    """The entry's margin in seconds (None: a fraction of the lifetime), and its source."""
    if entry.renew_before is not None:
        return float(entry.renew_before), MarginSource.ENTRY
    if global_seconds is not None:
        return global_seconds, MarginSource.GLOBAL
    return None, MarginSource.DEFAULT


def renew_at(
    entry: CertificateEntry,
    cert: Certificate | None,
    global_seconds: float | None,
    fraction: float,
) -> dt.datetime | None:
    """When ``cert`` (the entry's active certificate) becomes due for renewal."""
    if cert is None or cert.not_after is None or cert.not_before is None:
        return None
    return cert.not_after - renew_before(entry, cert, global_seconds, fraction)


def get_renew_before(session: Session) -> float | None:
    """The global renewal margin in seconds; None: a third of each certificate's life."""
    value = get_setting(session, RENEW_BEFORE_KEY)
    return None if value is None else float(value)


def check_renew_before(margin: dt.timedelta | float) -> dt.timedelta:
    """A renewal margin (global or an entry's) as accepted: 1 second to 365 days."""
    if isinstance(margin, bool) or not isinstance(margin, dt.timedelta | int | float):
        raise InvalidInput("the renewal margin is a number of seconds", value=margin)
    if not isinstance(margin, dt.timedelta):
        if not math.isfinite(margin):
            raise InvalidInput("the renewal margin is a number of seconds", value=margin)
        margin = dt.timedelta(seconds=margin)
    if not dt.timedelta(seconds=1) <= margin <= MAX_RENEW_BEFORE:
        raise InvalidInput(
            "the renewal margin must be at least 1 second and at most 365 days",
            value=margin.total_seconds(),
        )
    return margin


def set_renew_before(session: Session, margin: dt.timedelta | float | None) -> None:
    """Set (or, with None, clear) the global renewal margin every entry without its own
    uses. A margin longer than half a certificate's life is cut to half when applied."""
    if margin is None:
        delete_setting(session, RENEW_BEFORE_KEY)
        return
    put_setting(session, RENEW_BEFORE_KEY, int(check_renew_before(margin).total_seconds()))


def set_entry_renew_before(session: Session, name: str, margin: dt.timedelta | None) -> None:
    """Give entry ``name`` its own renewal margin, or with None let it use the global one."""
    entry = get_entry(session, name)
    seconds = None if margin is None else int(check_renew_before(margin).total_seconds())
    entry.renew_before = seconds


def request_renewal(db: Database, name: str) -> int:
    """Ask the loop to renew entry ``name`` at its next pass, even if not yet due."""
    with db.session() as session:
        entry = get_entry(session, name)
        put_setting(session, f"{FORCE_PREFIX}{entry.id}", True)
        entry.next_attempt_at = None
        return entry.id


@dataclass(frozen=True, slots=True)
class EntryStatus:
    """One entry as ``opensti cert status`` shows it."""

    name: str
    spc: str
    enabled: bool
    certificate_id: int | None
    serial: str | None
    not_after: dt.datetime | None
    x5u: str | None
    next_renewal: dt.datetime | None
    pending_certificate_id: int | None
    failure_count: int
    next_attempt_at: dt.datetime | None
    failing_since: dt.datetime | None
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            key: value.isoformat() if isinstance(value, dt.datetime) else value
            for key, value in asdict(self).items()
        }


def entry_statuses(
    db: Database, policy: ReconcilePolicy, *, public_base_url: str | None = None
) -> list[EntryStatus]:
    """Every entry: its active certificate, next renewal, backoff and last error."""
    with db.read_session() as session:
        statuses = []
        for entry in list_entries(session):
            active = active_certificate(session, entry.id)
            pending = pending_certificate(session, entry.id)
            x5u = active.x5u_url if active is not None else None
            if active is not None and x5u is None and public_base_url:
                x5u = x5u_for(active.id, public_base_url)
            statuses.append(
                EntryStatus(
                    name=entry.name,
                    spc=entry.spc,
                    enabled=entry.enabled,
                    certificate_id=active.id if active else None,
                    serial=active.serial if active else None,
                    not_after=active.not_after if active else None,
                    x5u=x5u,
                    next_renewal=next_renewal(session, entry, policy),
                    pending_certificate_id=pending.id if pending else None,
                    failure_count=entry.failure_count,
                    next_attempt_at=entry.next_attempt_at,
                    failing_since=entry.failing_since,
                    last_error=entry.last_error,
                )
            )
        return statuses


def _forced(session: Session, entry_id: int) -> bool:
    return bool(get_setting(session, f"{FORCE_PREFIX}{entry_id}", False))


def hold_entry(session: Session, entry_id: int) -> None:
    """Keep the loop off a new entry until its first certificate is requested (by a
    request, Renew now, or ``opensti cert renew``); activation lifts the hold."""
    put_setting(session, f"{HOLD_PREFIX}{entry_id}", True)


def release_hold(session: Session, entry_id: int) -> None:
    delete_setting(session, f"{HOLD_PREFIX}{entry_id}")


def held_entries(session: Session) -> set[int]:
    """The ids of the entries waiting for a first request (one query)."""
    return {int(key.removeprefix(HOLD_PREFIX)) for key in setting_keys(session, HOLD_PREFIX)}


@dataclass(frozen=True, slots=True)
class _Plan:
    """An entry's situation as one read of the store saw it."""

    entry_id: int
    name: str
    due: bool
    waiting_until: dt.datetime | None
    reason: str
    #: The active certificate has deployment tasks that have not succeeded for it.
    deploy_pending: bool = False


def _deploy_pending(session: Session, entry_id: int) -> bool:
    active = active_certificate(session, entry_id)
    return active is not None and any(
        task.enabled
        and (
            task.last_certificate_id != active.id or task.last_outcome is not EventOutcome.SUCCEEDED
        )
        for task in list_deployment_tasks(session, entry_id)
    )


def next_renewal(
    session: Session,
    entry: CertificateEntry,
    policy: ReconcilePolicy,
) -> dt.datetime | None:
    """When the entry's active certificate becomes due for renewal (None: no certificate)."""
    active = active_certificate(session, entry.id)
    return renew_at(entry, active, get_renew_before(session), policy.renew_fraction)


#: The plan of an entry held for a first request.
WAITING = "waiting for its certificate to be requested"


def _plan(
    session: Session, entry: CertificateEntry, policy: ReconcilePolicy, now: dt.datetime
) -> _Plan:
    renew_at = next_renewal(session, entry, policy)
    if pending_certificate(session, entry.id) is not None:
        reason = "a pending certificate to finish"
    elif renew_at is None:
        if not _forced(session, entry.id) and get_setting(session, f"{HOLD_PREFIX}{entry.id}"):
            return _Plan(entry.id, entry.name, False, None, WAITING)
        reason = "no active certificate"
    elif now >= renew_at:
        reason = "the active certificate is due for renewal"
    elif _forced(session, entry.id):
        reason = "renewal requested"
    else:
        deploy = _deploy_pending(session, entry.id)
        return _Plan(entry.id, entry.name, False, None, "up to date", deploy)
    waiting = entry.next_attempt_at
    # A deadline beyond the longest backoff is a wall clock that went back: go now.
    longest = dt.timedelta(seconds=policy.backoff_max)
    if waiting is not None and (waiting <= now or waiting - now > longest):
        waiting = None
    return _Plan(entry.id, entry.name, waiting is None, waiting, reason)


# -- the loop ---------------------------------------------------------------------------


class Reconciler:
    """Drives every enabled entry toward an active certificate with life left.

    :meth:`run` loops until its stop event is set; :meth:`reconcile` does one entry now
    (``opensti cert renew N --now``); :meth:`pass_once` looks at every entry once.
    """

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        settings: Settings,
        accounts: AccountService,
        *,
        policy: ReconcilePolicy | None = None,
        notifier: Notifier | None = None,
        hooks: ReconcileHooks | None = None,
        holder: str | None = None,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.settings = settings
        self.accounts = accounts
        self.policy = policy or ReconcilePolicy()
        self.notifier = notifier
        self.hooks = hooks or ReconcileHooks()
        self.holder = holder or default_holder()
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not a secret)
        self.context = FlowContext(
            db=db,
            box=box,
            settings=settings,
            accounts=accounts,
            clock=clock,
            lease_ttl=self.policy.lease_ttl,
            acme_poll_timeout=self.policy.acme_poll_timeout,
            retry_delay=lambda failures: backoff_delay(failures, self.policy, self.rng),
            quick_retries=self.policy.quick_retries,
            quick_retry_delay=self.policy.quick_retry_delay,
        )
        self._running: dict[int, asyncio.Task[AttemptResult]] = {}
        #: Per entry: deployment failures in a row and when to retry (monotonic).
        self._deploy_backoff: dict[int, tuple[int, float]] = {}
        self._semaphore = asyncio.Semaphore(self.policy.concurrency)

    # -- passes -------------------------------------------------------------------------

    def plans(self) -> list[_Plan]:
        now = self.clock()
        with self.db.read_session() as session:
            return [
                _plan(session, entry, self.policy, now)
                for entry in list_entries(session, enabled_only=True)
            ]

    async def pass_once(self) -> list[AttemptResult]:
        """Start work on every due entry not already in hand; wait for those started."""
        started = self.start_due()
        return list(await asyncio.gather(*started)) if started else []

    def start_due(self) -> list[asyncio.Task[AttemptResult]]:
        started = []
        for plan in self.plans():
            if plan.entry_id in self._running:
                continue
            if plan.due:
                work = self._guarded(plan.entry_id, force=False)
            elif plan.deploy_pending and self._deploy_retry_due(plan.entry_id):
                work = self._guarded_deploy(plan.entry_id)
            else:
                continue
            task = asyncio.create_task(work)
            self._running[plan.entry_id] = task
            task.add_done_callback(functools.partial(self._finished, plan.entry_id))
            started.append(task)
        return started

    def _deploy_retry_due(self, entry_id: int) -> bool:
        _failures, due = self._deploy_backoff.get(entry_id, (0, 0.0))
        return time.monotonic() >= due

    async def _guarded_deploy(self, entry_id: int) -> AttemptResult:
        """Run the deployment tasks that failed (or never ran) for the active certificate,
        under the lease; their own backoff is kept here, apart from the entry's."""
        ttl = dt.timedelta(seconds=self.policy.lease_ttl)
        async with self._semaphore:
            with self.db.session() as session:
                lease = acquire_lease(session, entry_id, self.holder, now=self.clock(), ttl=ttl)
                name = get_entry_by_id(session, entry_id).name
            if lease is None:
                return AttemptResult(name, "busy")
            try:
                results = await run_deployment_tasks(
                    self.db,
                    self.box,
                    entry_id,
                    now=self.clock(),
                    only_pending=True,
                    public_base_url=self.settings.public_base_url,
                )
            except OpenSTIError as exc:
                error: str | None = str(exc)
            else:
                error = "; ".join(r.error or r.task_name for r in results if not r.ok) or None
            finally:
                with self.db.session() as session:
                    release_lease(session, lease)
        if error is None:
            self._deploy_backoff.pop(entry_id, None)
            return AttemptResult(name, "deployed", steps=(FlowStep.DEPLOY.value,))
        failures = self._deploy_backoff.get(entry_id, (0, 0.0))[0] + 1
        retry = time.monotonic() + backoff_delay(failures, self.policy, self.rng)
        self._deploy_backoff[entry_id] = (failures, retry)
        return AttemptResult(name, "deploy-failed", error=error, steps=(FlowStep.DEPLOY.value,))

    def _finished(self, entry_id: int, _task: asyncio.Task[AttemptResult]) -> None:
        self._running.pop(entry_id, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Pass over the entries every ``tick`` seconds until ``stop`` is set."""
        last_observe = float("-inf")
        while not stop.is_set():
            try:
                self.start_due()
                if time.monotonic() - last_observe >= self.policy.observe_interval:
                    last_observe = time.monotonic()
                    await self.observe_all()
            except Exception:
                # A database hiccup must not end the loop: log it and try next tick.
                _log.exception("reconcile pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.policy.tick)
        await self.drain()

    async def drain(self) -> None:
        """Stop the attempts in flight after their current step, and wait for them.

        Every step commits on its own, so the store is consistent wherever an attempt
        stops; the next worker resumes from the pending row. A stop is not a failure:
        no backoff, no email.
        """
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def observe_all(self) -> None:
        if self.notifier is None:
            return
        now = self.clock()
        with self.db.read_session() as session:
            ids = [entry.id for entry in list_entries(session)]
        for entry_id in ids:
            await self.notifier.observe_entry(entry_id, now=now)
        await self.notifier.send_summary_if_due(now=now)

    # -- one entry ----------------------------------------------------------------------

    async def reconcile(self, name: str, *, force: bool = False) -> AttemptResult:
        """Work on entry ``name`` now (``force``: renew even if not due, ignore backoff)."""
        with self.db.read_session() as session:
            entry_id = get_entry(session, name).id
        if force:
            request_renewal(self.db, name)
        return await self._guarded(entry_id, force=force)

    async def _guarded(self, entry_id: int, *, force: bool) -> AttemptResult:
        async with self._semaphore:
            try:
                return await self._attempt(entry_id, force=force)
            except Exception as exc:
                # One entry's unexpected failure (a bug, the database) is logged and
                # retried at the next pass; it must not end the loop or other entries.
                _log.exception("entry %d: attempt failed unexpectedly", entry_id)
                return AttemptResult(str(entry_id), "failed", error=repr(exc))

    async def _attempt(self, entry_id: int, *, force: bool) -> AttemptResult:
        ttl = dt.timedelta(seconds=self.policy.lease_ttl)
        with self.db.session() as session:
            lease = acquire_lease(session, entry_id, self.holder, now=self.clock(), ttl=ttl)
            entry = get_entry_by_id(session, entry_id)
            name = entry.name
            plan = _plan(session, entry, self.policy, self.clock())
        if lease is None:
            return AttemptResult(name, "busy")
        try:
            if not (plan.due or force):
                outcome = "waiting" if plan.waiting_until else "up-to-date"
                return AttemptResult(name, outcome)
            result = await self._run_flow(lease, name)
        finally:
            with self.db.session() as session:
                release_lease(session, lease)
        if self.notifier is not None:
            await self.notifier.observe_entry(entry_id, now=self.clock())
        return result

    async def _run_flow(self, lease: Lease, name: str) -> AttemptResult:
        attempt = FlowAttempt(self.context, lease, threading.Event())
        try:
            certificate_id = await self._execute(attempt, name)
        except OpenSTIError as error:
            # Logged here, not in _execute: run_now's caller reports the error itself
            # (the CLI prints it once, the web shows it), and both are recorded as events.
            _log.warning("entry %s: %s", name, error)
            return AttemptResult(name, "failed", error=str(error), steps=tuple(attempt.steps))
        return AttemptResult(name, "activated", certificate_id, steps=tuple(attempt.steps))

    async def _execute(self, attempt: FlowAttempt, name: str) -> int:
        """The flow under the attempt's lease; a failure is recorded, then raised."""
        try:
            return await asyncio.wait_for(
                run_flow(attempt, self.hooks), timeout=self.policy.attempt_timeout
            )
        except (OpenSTIError, TimeoutError) as exc:
            attempt.cancel.set()
            error = exc if isinstance(exc, OpenSTIError) else UpstreamError("attempt timed out")
            if not isinstance(error, LeaseLost):
                await asyncio.to_thread(attempt.fail, error)
            raise error from None
        finally:
            await asyncio.to_thread(attempt.close)

    async def run_now(
        self, name: str, *, progress: Callable[[FlowStep], object] | None = None
    ) -> tuple[int, tuple[str, ...]]:
        """A new certificate for entry ``name`` now, due or not (``opensti cert request``):
        the same resumable flow as the loop's, under the entry's lease. Returns the id of
        the certificate made active and the steps done; raises the failing step's error
        (recorded, with the entry's backoff, as the loop would)."""
        ttl = dt.timedelta(seconds=self.policy.lease_ttl)
        with self.db.session() as session:
            entry_id = get_entry(session, name).id
            lease = acquire_lease(session, entry_id, self.holder, now=self.clock(), ttl=ttl)
        if lease is None:
            raise Conflict(f"entry {name!r} is being worked on by another worker; try later")
        attempt = FlowAttempt(self.context, lease, threading.Event(), progress)
        try:
            certificate_id = await self._execute(attempt, name)
        finally:
            with self.db.session() as session:
                release_lease(session, lease)
            if self.notifier is not None:
                await self.notifier.observe_entry(entry_id, now=self.clock())
        return certificate_id, tuple(attempt.steps)


class _Services(Protocol):
    """What :func:`reconciler_for` needs of the application (:class:`opensti.app.App`)."""

    @property
    def database(self) -> Database: ...
    @property
    def box(self) -> SecretBox: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def accounts(self) -> AccountService: ...


def reconciler_for(
    application: _Services,
    policy: ReconcilePolicy | None = None,
    *,
    holder: str | None = None,
    hooks: ReconcileHooks | None = None,
) -> Reconciler:
    """The loop over an application's store, emailing the contact through its settings."""
    return Reconciler(
        application.database,
        application.box,
        application.settings,
        application.accounts,
        policy=policy,
        notifier=Notifier(application.database, application.box),
        hooks=hooks,
        holder=holder,
    )
