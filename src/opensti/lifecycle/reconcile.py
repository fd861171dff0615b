"""The reconcile loop: every enabled entry keeps an active certificate with life left.

Desired state: each enabled entry has an active certificate with more than its
``renew_before`` of life left (the entry's setting, else the global setting
``lifecycle.renew_before`` in seconds, else a third of the certificate's lifetime).
When it has not, the loop does the next missing step of the flow::

    prepare (key, pending row) -> spc-token -> new-order (URL stored) -> tkauth-01
      -> finalize -> download -> validate (STI-PA trust list, SHAKEN profile)
      -> store -> publish -> deploy -> activate

The pending certificate row is the flow's memory: its key is stored before the CA is
asked, its order URL as soon as the CA names it, its chain once validated. A worker
killed at any point resumes from that row on restart (the stored order is polled and
reused, never placed again), so no certificate is issued twice or lost. A chain that
fails validation marks the row ``failed``: it is never activated nor published.

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
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from opensti.acme import AcmeClient, AcmeOrder, shaken_csr
from opensti.config import Settings
from opensti.core.certs import CertificateChain, TrustContext, validate_shaken_certificate
from opensti.core.errors import (
    AcmeProblem,
    Conflict,
    InvalidInput,
    LeaseLost,
    OpenSTIError,
    UpstreamError,
)
from opensti.core.passport import load_private_key
from opensti.core.tnauthlist import TNAuthList
from opensti.lifecycle.accounts import AccountService, Clock, load_pem_certificates, utc_now
from opensti.lifecycle.deploy import run_deployment_tasks
from opensti.lifecycle.notify import Notifier
from opensti.repository import x5u_for
from opensti.stipa import (
    DEFAULT_MIN_LIFE,
    SPCToken,
    StiPaClient,
    TokenBundle,
    TokenExpectation,
    token_trust,
    validate_spc_token,
)
from opensti.store import (
    Certificate,
    CertificateEntry,
    CertificateState,
    Database,
    EventOutcome,
    Lease,
    Secret,
    SecretBox,
    acquire_lease,
    activate_certificate,
    active_certificate,
    certificate_key,
    create_pending_certificate,
    delete_setting,
    entry_spc_token,
    get_certificate,
    get_entry,
    get_entry_by_id,
    get_setting,
    list_entries,
    pending_certificate,
    put_setting,
    record_event,
    record_issued_chain,
    release_lease,
    renew_lease,
    set_certificate_state,
)

__all__ = [
    "RENEW_BEFORE_KEY",
    "AttemptResult",
    "EntryStatus",
    "FlowStep",
    "ReconcileHooks",
    "ReconcilePolicy",
    "Reconciler",
    "backoff_delay",
    "default_holder",
    "entry_statuses",
    "renew_before",
    "request_renewal",
]

#: Global renewal margin in seconds (a setting row); unset: a third of the lifetime.
RENEW_BEFORE_KEY = "lifecycle.renew_before"
_FORCE_PREFIX = "lifecycle.force."
# Problems a CA answers while an order still exists (transient); others mean it is gone.
_TRANSIENT_PROBLEMS = ("serverInternal", "rateLimited", "badNonce")
_log = logging.getLogger(__name__)


class FlowStep(StrEnum):
    PREPARE = "prepare"
    SPC_TOKEN = "spc-token"  # noqa: S105  (a step name)
    NEW_ORDER = "new-order"
    RESUME_ORDER = "resume-order"
    CHALLENGE = "tkauth-01"
    FINALIZE = "finalize"
    DOWNLOAD = "download"
    VALIDATE = "validate"
    STORE = "store"
    PUBLISH = "publish"
    DEPLOY = "deploy"
    ACTIVATE = "activate"


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
class ReconcileHooks:
    """What the process around the loop wants to hear (``opensti serve`` wires these)."""

    #: A new chain was stored: reload the STI-CR snapshot so it is served at once.
    published: Callable[[], Awaitable[object]] | None = None
    #: A certificate became active: refresh the signing keyring.
    activated: Callable[[int], Awaitable[object]] | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one look at one entry did."""

    entry: str
    #: ``up-to-date``, ``waiting`` (backoff), ``busy`` (another worker's lease),
    #: ``activated``, ``failed``.
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
    seconds = entry.renew_before if entry.renew_before is not None else global_seconds
    margin = lifetime * fraction if seconds is None else dt.timedelta(seconds=seconds)
    return min(margin, lifetime / 2)


def request_renewal(db: Database, name: str) -> int:
    """Ask the loop to renew entry ``name`` at its next pass, even if not yet due."""
    with db.session() as session:
        entry = get_entry(session, name)
        put_setting(session, f"{_FORCE_PREFIX}{entry.id}", True)
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
    return bool(get_setting(session, f"{_FORCE_PREFIX}{entry_id}", False))


@dataclass(frozen=True, slots=True)
class _Plan:
    """An entry's situation as one read of the store saw it."""

    entry_id: int
    name: str
    due: bool
    waiting_until: dt.datetime | None
    reason: str


def next_renewal(
    session: Session,
    entry: CertificateEntry,
    policy: ReconcilePolicy,
) -> dt.datetime | None:
    """When the entry's active certificate becomes due for renewal (None: no certificate)."""
    active = active_certificate(session, entry.id)
    if active is None or active.not_after is None or active.not_before is None:
        return None
    global_seconds = get_setting(session, RENEW_BEFORE_KEY)
    margin = renew_before(entry, active, global_seconds, policy.renew_fraction)
    return active.not_after - margin


def _plan(
    session: Session, entry: CertificateEntry, policy: ReconcilePolicy, now: dt.datetime
) -> _Plan:
    renew_at = next_renewal(session, entry, policy)
    if pending_certificate(session, entry.id) is not None:
        reason = "a pending certificate to finish"
    elif renew_at is None:
        reason = "no active certificate"
    elif now >= renew_at:
        reason = "the active certificate is due for renewal"
    elif _forced(session, entry.id):
        reason = "renewal requested"
    else:
        return _Plan(entry.id, entry.name, False, None, "up to date")
    waiting = entry.next_attempt_at
    # A deadline beyond the longest backoff is a wall clock that went back: go now.
    longest = dt.timedelta(seconds=policy.backoff_max)
    if waiting is not None and (waiting <= now or waiting - now > longest):
        waiting = None
    return _Plan(entry.id, entry.name, waiting is None, waiting, reason)


# -- one attempt ----------------------------------------------------------------------


@dataclass
class _Issued:
    chain_pem: bytes
    chain: CertificateChain = field(repr=False)
    x5u: str | None


class _Attempt:
    """The steps of one attempt on one entry; every method runs in a worker thread."""

    def __init__(self, reconciler: Reconciler, lease: Lease, cancel: threading.Event) -> None:
        self.r = reconciler
        self.lease = lease
        self.cancel = cancel
        self.entry_id = lease.entry_id
        self.steps: list[str] = []
        #: The step under way: a failure is recorded against it.
        self.current = FlowStep.PREPARE
        self._token: SPCToken | None = None
        self.certificate_id: int | None = None
        self._acme: AcmeClient | None = None
        self._stipa: StiPaClient | None = None

    # -- bookkeeping ------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.r.clock()

    def begin(self, step: FlowStep) -> None:
        self.current = step

    def checkpoint(self) -> None:
        """Between steps: stop if timed out, and keep the lease (or learn it is lost)."""
        if self.cancel.is_set():
            raise UpstreamError("the attempt took longer than its timeout")
        ttl = dt.timedelta(seconds=self.r.policy.lease_ttl)
        with self.r.db.session() as session:
            lease = renew_lease(session, self.lease, now=self.now(), ttl=ttl)
        if lease is None:
            raise LeaseLost(f"lost the lease on entry {self.entry_id}")
        self.lease = lease

    def record(
        self,
        session: Session,
        step: FlowStep,
        *,
        certificate_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.steps.append(step.value)
        record_event(
            session,
            self.entry_id,
            step.value,
            EventOutcome.SUCCEEDED,
            at=self.now(),
            certificate_id=certificate_id,
            detail=detail,
        )

    def done(self, step: FlowStep, certificate_id: int | None = None, **detail: Any) -> None:
        with self.r.db.session() as session:
            self.record(session, step, certificate_id=certificate_id, detail=detail or None)

    def close(self) -> None:
        if self._stipa is not None:
            self._stipa.close()

    # -- clients ----------------------------------------------------------------------

    def _entry(self, session: Session) -> CertificateEntry:
        return get_entry_by_id(session, self.entry_id)

    def acme(self) -> AcmeClient:
        if self._acme is None:
            with self.r.db.read_session() as session:
                account = self._entry(session).acme_account
                client = self.r.accounts.acme_client(account)
            client._poll_timeout = dt.timedelta(seconds=self.r.policy.acme_poll_timeout)
            self._acme = client
        return self._acme

    def stipa(self) -> StiPaClient | None:
        if self._stipa is None:
            with self.r.db.read_session() as session:
                entry = self._entry(session)
                if entry.stipa_account is None:
                    return None
                self._stipa = self.r.accounts.stipa_client(
                    entry.stipa_account, expected_crl_url=entry.crl_url
                )
        return self._stipa

    # -- the steps --------------------------------------------------------------------

    def prepare(self) -> Certificate:
        """The pending row: resumed if one exists, else a new key stored before any order."""
        with self.r.db.session() as session:
            pending = pending_certificate(session, self.entry_id)
            if pending is not None:
                self.certificate_id = pending.id
                return pending
        self.begin(FlowStep.PREPARE)
        acme = self.acme()
        key = (
            acme.key
            if acme.profile.cert_key_is_account_key
            else ec.generate_private_key(ec.SECP256R1())
        )
        with self.r.db.session() as session:
            pending = create_pending_certificate(
                session, self.r.box, self.entry_id, key_pem=_pem(key), now=self.now()
            )
            self.record(session, FlowStep.PREPARE, certificate_id=pending.id)
            self.certificate_id = pending.id
            return pending

    def spc_token(self) -> SPCToken:
        self.begin(FlowStep.SPC_TOKEN)
        acme = self.acme()
        with self.r.db.read_session() as session:
            entry = self._entry(session)
            spc, crl_url = entry.spc, entry.crl_url
            brought = entry_spc_token(self.r.box, entry)
        tnauthlist = TNAuthList.for_spc(spc)
        if brought is not None:
            token = self._brought_token(brought, crl_url, tnauthlist, acme.fingerprint)
        else:
            stipa = self.stipa()
            if stipa is None:
                raise InvalidInput("the entry has neither an STI-PA account nor an SPC token")
            padded = acme.profile.padded_identifiers
            token = stipa.request_token(tnauthlist, acme.fingerprint, padded=padded)
        self.done(FlowStep.SPC_TOKEN)
        return token

    def _brought_token(
        self, token: Secret, crl_url: str | None, tnauthlist: TNAuthList, fingerprint: str
    ) -> SPCToken:
        expected = TokenExpectation(tnauthlist, fingerprint, False, DEFAULT_MIN_LIFE)
        trust = token_trust(self.r.accounts.stipa_trust_anchors(), verify=self.r.tls_verify)
        return validate_spc_token(
            TokenBundle(token.reveal_text(), crl_url), expected, trust=trust, now=self.now()
        )

    def order(self, pending: Certificate) -> AcmeOrder:
        """The pending row's order: polled if stored, else placed and stored at once."""
        acme = self.acme()
        if pending.order_url is not None:
            self.begin(FlowStep.RESUME_ORDER)
            try:
                order = acme.get_order(pending.order_url)
            except AcmeProblem as exc:
                if exc.problem_type.rsplit(":", 1)[-1] in _TRANSIENT_PROBLEMS:
                    raise
                self._forget_order(pending, str(exc))
                raise
            self.done(FlowStep.RESUME_ORDER, pending.id, status=str(order.body.status))
            if order.body.status == messages.STATUS_INVALID:
                self._forget_order(pending, "the CA marked the order invalid")
                raise UpstreamError(f"the CA marked order {order.url} invalid")
            return order
        token = self.spc_token()
        self.checkpoint()
        self.begin(FlowStep.NEW_ORDER)
        order = acme.new_order(token.tkvalue)
        with self.r.db.session() as session:
            row = get_certificate(session, pending.id)
            row.order_url = order.url
            self.record(session, FlowStep.NEW_ORDER, certificate_id=pending.id)
        pending.order_url = order.url
        self._token = token
        return order

    def _forget_order(self, pending: Certificate, why: str) -> None:
        """The CA no longer has a usable order: the next attempt places a new one."""
        with self.r.db.session() as session:
            get_certificate(session, pending.id).order_url = None
            record_event(
                session,
                self.entry_id,
                FlowStep.RESUME_ORDER.value,
                EventOutcome.FAILED,
                at=self.now(),
                error=f"order {pending.order_url} abandoned: {why}",
                certificate_id=pending.id,
            )

    def challenge(self, pending: Certificate, order: AcmeOrder) -> None:
        if all(a.body.status == messages.STATUS_VALID for a in order.authorizations):
            return
        token = self._token or self.spc_token()
        self.checkpoint()
        self.begin(FlowStep.CHALLENGE)
        self.acme().answer_tkauth(order, token.jwt)
        self.done(FlowStep.CHALLENGE, pending.id)

    def issue(self, pending: Certificate, order: AcmeOrder) -> _Issued:
        self.begin(FlowStep.FINALIZE)
        acme = self.acme()
        with self.r.db.read_session() as session:
            spc = self._entry(session).spc
            key = load_private_key(certificate_key(self.r.box, pending).reveal())
        csr = shaken_csr(key, TNAuthList.for_spc(spc), organization=self.r.settings.organization)
        body = acme.finalize(order, csr)
        self.done(FlowStep.FINALIZE, pending.id)
        self.checkpoint()
        self.begin(FlowStep.DOWNLOAD)
        assert body.certificate is not None
        pem, chain = acme.download_chain(body.certificate)
        self.done(FlowStep.DOWNLOAD, pending.id, serial=format(chain.leaf.serial_number, "x"))
        return _Issued(pem, chain, getattr(body, "x5u", None))

    def validate_and_store(self, pending: Certificate, issued: _Issued) -> Certificate:
        """Check the chain, then store it; a chain that fails is stored as ``failed``."""
        self.begin(FlowStep.VALIDATE)
        try:
            self._validate(issued.chain)
        except OpenSTIError as exc:
            self._store_failed(pending, issued, exc)
            raise UpstreamError(
                f"the CA issued a certificate that fails validation: {exc}"
            ) from None
        self.done(FlowStep.VALIDATE, pending.id)
        self.begin(FlowStep.STORE)
        with self.r.db.session() as session:
            row = get_certificate(session, pending.id)
            record_issued_chain(session, self.r.box, row, issued.chain_pem)
            base = self.r.settings.public_base_url
            row.x5u_url = x5u_for(row.id, base) if base else issued.x5u
            self.record(session, FlowStep.STORE, certificate_id=row.id)
            return row

    def _validate(self, chain: CertificateChain) -> None:
        with self.r.db.read_session() as session:
            spc = self._entry(session).spc
        validated = validate_shaken_certificate(
            chain, TrustContext(anchors=self._ca_anchors()), self.now()
        )
        if validated.spc != spc:
            raise UpstreamError(f"the certificate is for SPC {validated.spc}, not {spc}")

    def _ca_anchors(self) -> tuple[x509.Certificate, ...]:
        path = self.r.settings.ca_trust_anchors
        if path is not None:
            return load_pem_certificates(path, "STI-CA trust anchors file")
        stipa = self.stipa()
        if stipa is None:
            raise InvalidInput(
                "no STI-CA trust list to check certificates against: set "
                "OPENSTI_CA_TRUST_ANCHORS or give the entry an STI-PA account"
            )
        return tuple(stipa.ca_list())

    def _store_failed(self, pending: Certificate, issued: _Issued, error: OpenSTIError) -> None:
        with self.r.db.session() as session:
            row = get_certificate(session, pending.id)
            with contextlib.suppress(OpenSTIError):
                # Kept for the audit trail when it fits our key; it is never published.
                record_issued_chain(session, self.r.box, row, issued.chain_pem)
            set_certificate_state(session, row.id, CertificateState.FAILED, now=self.now())

    def activate(self, certificate_id: int) -> None:
        self.begin(FlowStep.ACTIVATE)
        with self.r.db.session() as session:
            activate_certificate(session, certificate_id, now=self.now())
            entry = self._entry(session)
            entry.failure_count, entry.failing_since = 0, None
            entry.last_error, entry.next_attempt_at = None, None
            delete_setting(session, f"{_FORCE_PREFIX}{self.entry_id}")
            self.record(session, FlowStep.ACTIVATE, certificate_id=certificate_id)

    def fail(self, error: OpenSTIError) -> None:
        """Record the failure and set the entry's backoff and failure episode."""
        now = self.now()
        with self.r.db.session() as session:
            entry = self._entry(session)
            entry.failure_count += 1
            entry.failing_since = entry.failing_since or now
            entry.last_error = str(error)
            delay = backoff_delay(entry.failure_count, self.r.policy, self.r.rng)
            entry.next_attempt_at = now + dt.timedelta(seconds=delay)
            record_event(
                session,
                self.entry_id,
                self.current.value,
                EventOutcome.FAILED,
                at=now,
                error=str(error),
                certificate_id=self.certificate_id,
                detail={"retry_in": round(delay, 1), "failures": entry.failure_count},
            )


def _pem(key: ec.EllipticCurvePrivateKey) -> Secret:
    return Secret(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


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
        self._running: dict[int, asyncio.Task[AttemptResult]] = {}
        self._semaphore = asyncio.Semaphore(self.policy.concurrency)

    @property
    def tls_verify(self) -> bool | str:
        return self.accounts.tls_verify

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
            if plan.due and plan.entry_id not in self._running:
                task = asyncio.create_task(self._guarded(plan.entry_id, force=False))
                self._running[plan.entry_id] = task
                task.add_done_callback(functools.partial(self._finished, plan.entry_id))
                started.append(task)
        return started

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
        """Wait for attempts in flight (each stops at its next step once cancelled)."""
        tasks = list(self._running.values())
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
        cancel = threading.Event()
        attempt = _Attempt(self, lease, cancel)
        try:
            certificate_id = await asyncio.wait_for(
                self._flow(attempt), timeout=self.policy.attempt_timeout
            )
        except (OpenSTIError, TimeoutError) as exc:
            cancel.set()
            error = exc if isinstance(exc, OpenSTIError) else UpstreamError("attempt timed out")
            if not isinstance(error, LeaseLost):
                await asyncio.to_thread(attempt.fail, error)
            _log.warning("entry %s: %s", name, error)
            return AttemptResult(name, "failed", error=str(error), steps=tuple(attempt.steps))
        finally:
            await asyncio.to_thread(attempt.close)
        return AttemptResult(name, "activated", certificate_id, steps=tuple(attempt.steps))

    async def _flow(self, a: _Attempt) -> int:
        step = asyncio.to_thread
        pending = await step(a.prepare)
        if pending.chain_pem is None:
            await step(a.checkpoint)
            order = await step(a.order, pending)
            await step(a.checkpoint)
            await step(a.challenge, pending, order)
            await step(a.checkpoint)
            issued = await step(a.issue, pending, order)
            pending = await step(a.validate_and_store, pending, issued)
        elif pending.not_after is not None and pending.not_after <= a.now():
            await step(self._expire_pending, a, pending)
            raise Conflict(f"certificate {pending.id} expired before it could be activated")
        await step(a.checkpoint)
        a.begin(FlowStep.PUBLISH)
        if self.hooks.published is not None:
            await self.hooks.published()
        await step(a.done, FlowStep.PUBLISH, pending.id)
        await self._deploy(a, pending.id)
        await step(a.checkpoint)
        await step(a.activate, pending.id)
        if self.hooks.activated is not None:
            await self.hooks.activated(a.entry_id)
        return pending.id

    def _expire_pending(self, a: _Attempt, pending: Certificate) -> None:
        with self.db.session() as session:
            set_certificate_state(session, pending.id, CertificateState.EXPIRED, now=a.now())

    async def _deploy(self, a: _Attempt, certificate_id: int) -> None:
        """Deployment tasks for the new certificate; a failure is recorded (by the task
        runner) and retried later, and never holds back the activation."""
        try:
            await run_deployment_tasks(
                self.db,
                self.box,
                a.entry_id,
                now=self.clock(),
                certificate_id=certificate_id,
                only_pending=True,
                public_base_url=self.settings.public_base_url,
            )
        except OpenSTIError as exc:
            _log.warning("entry %d: deployment tasks not run: %s", a.entry_id, exc)
        a.steps.append(FlowStep.DEPLOY.value)
