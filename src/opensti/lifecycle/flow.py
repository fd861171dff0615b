"""One attempt at an entry's next certificate, step by step, resumable after a crash.

    spc-token -> prepare (key, pending row) -> new-order (URL stored) -> tkauth-01
      -> finalize -> download -> validate (STI-PA trust list, SHAKEN profile)
      -> store -> publish -> deploy -> activate

The pending certificate row is the flow's memory: its key is stored before the CA is
asked, its order URL as soon as the CA names it, its chain once validated. An attempt
killed at any point resumes from that row (the stored order is polled and reused,
never placed again), so no certificate is issued twice or lost. A chain that fails
validation marks the row ``failed``: it is never activated nor published. Every step
is recorded as a :class:`~opensti.store.LifecycleEvent`, a failure against the step
under way. The caller holds the entry's lease; each step renews it, and stops the
attempt with :class:`LeaseLost` if another worker took the entry over.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from opensti.acme import AcmeClient, AcmeOrder, shaken_csr
from opensti.config import Settings
from opensti.core.certs import (
    CertificateChain,
    TrustContext,
    check_shaken_ee_profile,
    validate_shaken_certificate,
)
from opensti.core.errors import (
    AcmeProblem,
    Conflict,
    InvalidInput,
    LeaseLost,
    OpenSTIError,
    ServiceUnreachable,
    StiPaRefused,
    UpstreamError,
)
from opensti.core.passport import load_private_key
from opensti.core.tnauthlist import TNAuthList
from opensti.lifecycle.accounts import (
    AccountService,
    Clock,
    load_pem_certificates,
    private_key_secret,
)
from opensti.lifecycle.deploy import run_deployment_tasks
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
    activate_certificate,
    certificate_key,
    create_pending_certificate,
    delete_setting,
    entry_spc_token,
    get_certificate,
    get_entry_by_id,
    pending_certificate,
    record_event,
    record_issued_chain,
    renew_lease,
    set_certificate_state,
)

__all__ = [
    "DEFAULT_SIGNER_STEP",
    "FORCE_PREFIX",
    "HOLD_PREFIX",
    "FlowAttempt",
    "FlowContext",
    "FlowStep",
    "IssuedChain",
    "ReconcileHooks",
    "is_transient",
    "run_flow",
]

#: The lifecycle event of an entry made the default signer by its first certificate.
DEFAULT_SIGNER_STEP = "default-signer"
#: Setting rows ``lifecycle.force.<entry id>``: renew that entry even if not due.
FORCE_PREFIX = "lifecycle.force."
#: Setting rows ``lifecycle.hold.<entry id>``: an entry added without "request now";
#: the loop leaves it alone until its first certificate is asked for.
HOLD_PREFIX = "lifecycle.hold."
# Problems a CA answers while an order still exists (transient); others mean it is gone.
_TRANSIENT_PROBLEMS = ("serverInternal", "rateLimited", "badNonce")
_log = logging.getLogger(__name__)


class FlowStep(StrEnum):
    SPC_TOKEN = "spc-token"  # noqa: S105  (a step name)
    PREPARE = "prepare"
    NEW_ORDER = "new-order"
    RESUME_ORDER = "resume-order"
    CHALLENGE = "tkauth-01"
    FINALIZE = "finalize"
    DOWNLOAD = "download"
    #: Our key, our SPC in the TNAuthList, the SHAKEN end-entity profile; ``validate``
    #: then checks the chain, so a failure names which of the two it was.
    PROFILE = "profile"
    VALIDATE = "validate"
    STORE = "store"
    PUBLISH = "publish"
    DEPLOY = "deploy"
    ACTIVATE = "activate"


@dataclass(frozen=True, slots=True)
class ReconcileHooks:
    """What the process around the loop wants to hear (``opensti serve`` wires these)."""

    #: A new chain was stored: reload the STI-CR snapshot so it is served at once.
    published: Callable[[], Awaitable[object]] | None = None
    #: A certificate became active: refresh the signing keyring.
    activated: Callable[[int], Awaitable[object]] | None = None


@dataclass(frozen=True, slots=True)
class FlowContext:
    """What an attempt works with: the store, the services and the limits."""

    db: Database
    box: SecretBox
    settings: Settings
    accounts: AccountService
    clock: Clock
    #: Seconds each step extends the entry's lease by.
    lease_ttl: float
    #: How long the CA may take to validate a token or issue a certificate.
    acme_poll_timeout: float
    #: Seconds to wait after the n-th failure in a row (the caller's backoff).
    retry_delay: Callable[[int], float]
    #: Immediate retries of a transient failure within one attempt, and the first delay.
    quick_retries: int = 3
    quick_retry_delay: float = 0.5


@dataclass
class IssuedChain:
    chain_pem: bytes
    chain: CertificateChain = field(repr=False)
    x5u: str | None


class FlowAttempt:
    """The steps of one attempt on one entry; every step method runs in a worker thread."""

    def __init__(
        self,
        context: FlowContext,
        lease: Lease,
        cancel: threading.Event,
        progress: Callable[[FlowStep], object] | None = None,
    ) -> None:
        self.ctx = context
        self.progress = progress
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
        return self.ctx.clock()

    def begin(self, step: FlowStep) -> None:
        self.current = step
        if self.progress is not None:
            self.progress(step)

    def checkpoint(self) -> None:
        """Between steps: stop if timed out, and keep the lease (or learn it is lost)."""
        if self.cancel.is_set():
            raise UpstreamError("the attempt took longer than its timeout")
        ttl = dt.timedelta(seconds=self.ctx.lease_ttl)
        with self.ctx.db.session() as session:
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
        with self.ctx.db.session() as session:
            self.record(session, step, certificate_id=certificate_id, detail=detail or None)

    def close(self) -> None:
        if self._stipa is not None:
            self._stipa.close()

    # -- clients ----------------------------------------------------------------------

    def _entry(self, session: Session) -> CertificateEntry:
        return get_entry_by_id(session, self.entry_id)

    def acme(self) -> AcmeClient:
        if self._acme is None:
            with self.ctx.db.read_session() as session:
                account = self._entry(session).acme_account
                poll_timeout = dt.timedelta(seconds=self.ctx.acme_poll_timeout)
                self._acme = self.ctx.accounts.acme_client(account, poll_timeout=poll_timeout)
        return self._acme

    def stipa(self) -> StiPaClient | None:
        if self._stipa is None:
            with self.ctx.db.read_session() as session:
                entry = self._entry(session)
                if entry.stipa_account is None:
                    return None
                self._stipa = self.ctx.accounts.stipa_client(
                    entry.stipa_account, expected_crl_url=entry.crl_url
                )
        return self._stipa

    # -- the steps --------------------------------------------------------------------

    def prepare(self) -> Certificate:
        """The pending row: resumed if one exists, else (once the SPC token is in hand) a
        new key, stored before any order is placed."""
        with self.ctx.db.session() as session:
            pending = pending_certificate(session, self.entry_id)
            if pending is not None:
                self.certificate_id = pending.id
                return pending
        # The token first: a refusal then leaves nothing behind.
        self._token = self.spc_token()
        self.begin(FlowStep.PREPARE)
        acme = self.acme()
        key = (
            acme.key
            if acme.profile.cert_key_is_account_key
            else ec.generate_private_key(ec.SECP256R1())
        )
        with self.ctx.db.session() as session:
            pending = create_pending_certificate(
                session,
                self.ctx.box,
                self.entry_id,
                key_pem=private_key_secret(key),
                now=self.now(),
            )
            self.record(session, FlowStep.PREPARE, certificate_id=pending.id)
            self.certificate_id = pending.id
            return pending

    def spc_token(self) -> SPCToken:
        self.begin(FlowStep.SPC_TOKEN)
        acme = self.acme()
        with self.ctx.db.read_session() as session:
            entry = self._entry(session)
            spc, crl_url = entry.spc, entry.crl_url
            brought = entry_spc_token(self.ctx.box, entry)
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
        accounts = self.ctx.accounts
        trust = token_trust(accounts.stipa_trust_anchors(), verify=accounts.http_verify)
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
        token = self._token or self.spc_token()
        self.checkpoint()
        self.begin(FlowStep.NEW_ORDER)
        order = acme.new_order(token.tkvalue)
        with self.ctx.db.session() as session:
            row = get_certificate(session, pending.id)
            row.order_url = order.url
            self.record(session, FlowStep.NEW_ORDER, certificate_id=pending.id)
        pending.order_url = order.url
        self._token = token
        return order

    def _forget_order(self, pending: Certificate, why: str) -> None:
        """The CA no longer has a usable order: the next attempt places a new one."""
        with self.ctx.db.session() as session:
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

    def issue(self, pending: Certificate, order: AcmeOrder) -> IssuedChain:
        self.begin(FlowStep.FINALIZE)
        acme = self.acme()
        with self.ctx.db.read_session() as session:
            spc = self._entry(session).spc
            key = load_private_key(certificate_key(self.ctx.box, pending).reveal())
        csr = shaken_csr(key, TNAuthList.for_spc(spc), organization=self.ctx.settings.organization)
        body = acme.finalize(order, csr)
        self.done(FlowStep.FINALIZE, pending.id)
        self.checkpoint()
        self.begin(FlowStep.DOWNLOAD)
        assert body.certificate is not None
        pem, chain = acme.download_chain(body.certificate)
        self.done(FlowStep.DOWNLOAD, pending.id, serial=format(chain.leaf.serial_number, "x"))
        return IssuedChain(pem, chain, getattr(body, "x5u", None))

    def validate_and_store(self, pending: Certificate, issued: IssuedChain) -> Certificate:
        """Check the certificate, then its chain, then store it; a certificate that
        fails is stored as ``failed``. Two steps, so a failure names which check."""
        self.begin(FlowStep.PROFILE)
        with self.ctx.db.read_session() as session:
            spc = self._entry(session).spc
            key = load_private_key(certificate_key(self.ctx.box, pending).reveal())
        rsa = self.ctx.settings.verify_rsa_ca
        self._refuse_unless(pending, issued, lambda: _check_profile(issued.chain, spc, key, rsa))
        self.done(FlowStep.PROFILE, pending.id)
        self.begin(FlowStep.VALIDATE)
        # Fetched first: the STI-PA being down is its failure, not the certificate's.
        anchors = self._ca_anchors()
        self._refuse_unless(
            pending, issued, lambda: _check_chain(issued.chain, anchors, self.now(), rsa)
        )
        self.done(FlowStep.VALIDATE, pending.id)
        self.begin(FlowStep.STORE)
        with self.ctx.db.session() as session:
            row = get_certificate(session, pending.id)
            record_issued_chain(session, self.ctx.box, row, issued.chain_pem)
            base = self.ctx.settings.public_base_url
            row.x5u_url = x5u_for(row.id, base) if base else issued.x5u
            self.record(session, FlowStep.STORE, certificate_id=row.id)
            return row

    def _ca_anchors(self) -> tuple[x509.Certificate, ...]:
        path = self.ctx.settings.ca_trust_anchors
        if path is not None:
            # Read one by one: an unreadable root is skipped (and logged), not fatal.
            return load_pem_certificates(path, "STI-CA trust anchors file")
        stipa = self.stipa()
        if stipa is None:
            raise InvalidInput(
                "no STI-CA trust list to check certificates against: set "
                "OPENSTI_CA_TRUST_ANCHORS or give the entry an STI-PA account"
            )
        return tuple(stipa.ca_list())

    def _refuse_unless(
        self, pending: Certificate, issued: IssuedChain, check: Callable[[], None]
    ) -> None:
        """Run ``check``; a certificate it refuses is stored as ``failed``, never used."""
        try:
            check()
        except OpenSTIError as exc:
            self._store_failed(pending, issued)
            raise UpstreamError(
                f"the CA issued a certificate that fails validation: {exc}"
            ) from None

    def _store_failed(self, pending: Certificate, issued: IssuedChain) -> None:
        with self.ctx.db.session() as session:
            row = get_certificate(session, pending.id)
            with contextlib.suppress(OpenSTIError):
                # Kept for the audit trail when it fits our key; it is never published.
                record_issued_chain(session, self.ctx.box, row, issued.chain_pem)
            set_certificate_state(session, row.id, CertificateState.FAILED, now=self.now())

    def activate(self, certificate_id: int) -> None:
        self.begin(FlowStep.ACTIVATE)
        with self.ctx.db.session() as session:
            was_default = self._entry(session).is_default_signer
            activate_certificate(session, certificate_id, now=self.now())
            entry = self._entry(session)
            entry.failure_count, entry.failing_since = 0, None
            entry.last_error, entry.next_attempt_at = None, None
            delete_setting(session, f"{FORCE_PREFIX}{self.entry_id}")
            delete_setting(session, f"{HOLD_PREFIX}{self.entry_id}")
            self.record(session, FlowStep.ACTIVATE, certificate_id=certificate_id)
            if entry.is_default_signer and not was_default:
                self._note_first_default(session, entry, certificate_id)

    def _note_first_default(
        self, session: Session, entry: CertificateEntry, certificate_id: int
    ) -> None:
        """The entry became the default signer (one obvious start): unattended, in the
        loop, only the audit trail and the log can say so."""
        record_event(
            session,
            self.entry_id,
            DEFAULT_SIGNER_STEP,
            EventOutcome.SUCCEEDED,
            at=self.now(),
            certificate_id=certificate_id,
            detail={"reason": "first entry with an active certificate"},
        )
        _log.info(
            "entry %s is now the default signer: the first entry with a certificate, it "
            "signs every call no entry's prefix claims",
            entry.name,
        )

    def expire(self, pending: Certificate) -> None:
        """An issued certificate that outlived the outage before activation: drop it."""
        with self.ctx.db.session() as session:
            set_certificate_state(session, pending.id, CertificateState.EXPIRED, now=self.now())

    def note_retry(self, error: OpenSTIError) -> None:
        """A transient failure retried at once: recorded, but no backoff nor episode."""
        with self.ctx.db.session() as session:
            record_event(
                session,
                self.entry_id,
                self.current.value,
                EventOutcome.FAILED,
                at=self.now(),
                error=str(error),
                certificate_id=self.certificate_id,
                detail={"retry": "at once"},
            )

    def fail(self, error: OpenSTIError) -> None:
        """Record the failure and set the entry's backoff and failure episode."""
        now = self.now()
        with self.ctx.db.session() as session:
            entry = self._entry(session)
            entry.failure_count += 1
            entry.failing_since = entry.failing_since or now
            entry.last_error = str(error)
            delay = self.ctx.retry_delay(entry.failure_count)
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


def _check_profile(
    chain: CertificateChain, spc: str, key: ec.EllipticCurvePrivateKey, allow_rsa_ca: bool
) -> None:
    """Our key, the SHAKEN end-entity profile (TNAuthList, key usage, policy), our SPC."""
    if chain.leaf.public_key() != key.public_key():
        raise UpstreamError("the CA certified another key than ours")
    found = check_shaken_ee_profile(chain.leaf, allow_rsa_ca=allow_rsa_ca)
    if found != spc:
        raise UpstreamError(f"the certificate is for SPC {found}, not {spc}")


def _check_chain(
    chain: CertificateChain,
    anchors: tuple[x509.Certificate, ...],
    now: dt.datetime,
    allow_rsa_ca: bool,
) -> None:
    """A path to the STI-PA trust list, valid now, nothing on the CRLs we hold."""
    validate_shaken_certificate(
        chain, TrustContext(anchors=anchors, allow_rsa_ca=allow_rsa_ca), now
    )


async def run_flow(a: FlowAttempt, hooks: ReconcileHooks) -> int:
    """Every missing step, in order, from wherever the pending row stands; returns the
    id of the certificate made active. Raises the failing step's error (the caller
    records it with :meth:`FlowAttempt.fail`)."""
    step = asyncio.to_thread
    pending = await _issued(a)
    await step(a.checkpoint)
    a.begin(FlowStep.PUBLISH)
    if hooks.published is not None:
        await hooks.published()
    await step(a.done, FlowStep.PUBLISH, pending.id)
    await _deploy(a, pending.id)
    await step(a.checkpoint)
    await step(a.activate, pending.id)
    if hooks.activated is not None:
        await hooks.activated(a.entry_id)
    return pending.id


async def _issued(a: FlowAttempt) -> Certificate:
    """The pending certificate with its validated chain stored: resumed, ordered, issued.

    A transient failure (the CA or STI-PA unreachable or answering 5xx) is retried a
    few times at once, resuming from the stored order each time, before the attempt
    gives up and the entry backs off: most outages are shorter than a backoff.
    """
    step = asyncio.to_thread
    retries, delay = a.ctx.quick_retries, a.ctx.quick_retry_delay
    for quick in range(retries + 1):
        try:
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
                await step(a.expire, pending)
                raise Conflict(f"certificate {pending.id} expired before it could be activated")
            return pending
        except OpenSTIError as exc:
            if quick == retries or not is_transient(exc) or a.cancel.is_set():
                raise
            await step(a.note_retry, exc)
            await asyncio.sleep(delay * 2**quick)
    raise AssertionError("unreachable")  # pragma: no cover


def is_transient(error: OpenSTIError) -> bool:
    """A failure worth an immediate retry: the service was down or overloaded."""
    if isinstance(error, ServiceUnreachable):
        return True
    if isinstance(error, AcmeProblem):
        return error.problem_type.rsplit(":", 1)[-1] in _TRANSIENT_PROBLEMS
    if isinstance(error, StiPaRefused):
        return error.status is None or error.status >= 500
    return False


async def _deploy(a: FlowAttempt, certificate_id: int) -> None:
    """Deployment tasks for the new certificate; a failure is recorded (by the task
    runner) and retried later, and never holds back the activation."""
    a.begin(FlowStep.DEPLOY)
    try:
        await run_deployment_tasks(
            a.ctx.db,
            a.ctx.box,
            a.entry_id,
            now=a.now(),
            certificate_id=certificate_id,
            only_pending=True,
            public_base_url=a.ctx.settings.public_base_url,
        )
    except OpenSTIError as exc:
        _log.warning("entry %d: deployment tasks not run: %s", a.entry_id, exc)
    a.steps.append(FlowStep.DEPLOY.value)
