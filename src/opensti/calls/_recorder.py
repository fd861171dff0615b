"""The SIP message log writer: calls go on a bounded queue, a thread writes them in batches.

The signing and verification paths only call the SIP hook (:meth:`CallLog.__call__`)
or the REST API's ``record_*`` methods, which append a :class:`~opensti.sip.CallRecord`
(a tuple of the values the call had at hand) to a deque and return at once: no lock, no
wake-up of the writer per call (a thread switch per call cost more CPU than the call's
signature), and no row built there. The writer thread builds the rows (clipped to their
columns, our certificate's id found by x5u), counts them per minute and inserts them
with one executemany of plain tuples. It wakes every ``flush_interval`` seconds,
or as soon as ``batch_size`` records are waiting, and inserts them in batches of up to
``batch_size``, each in one transaction (one executemany), so the number of
transactions grows with time, not with the call rate. When the database lags and the
queue is full, records are dropped and counted rather than blocking a call: the log is
evidence, the call is the service.

A verified call carries the remote certificate its PASSporT was checked with; the
writer stores each such certificate once (keyed by fingerprint, remembered in a bounded
map so a known one costs a dict lookup) and points the call's row at it. Hashing and
PEM-encoding a certificate happen there too, never on the request path.

The same thread applies the retention setting (rows older than ``retention_days``
are deleted every ``retention_interval`` seconds), so the log has one writer.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from opensti.config import Settings
from opensti.core.call import RCDResult
from opensti.core.certs import ValidatedCertificate
from opensti.core.errors import (
    InvalidInput,
    OpenSTIError,
    StoreUnavailable,
    sip_service_response,
)
from opensti.core.verify import VerificationResult
from opensti.signing import Keyring, SignedCall
from opensti.sip import CallRecord
from opensti.store import (
    Database,
    RemoteCertificateRecord,
    SipAction,
    SipDirection,
    SipRecord,
    SipRow,
    append_sip_rows,
    delete_sip_messages_before,
    remote_certificate_ids,
)

__all__ = ["CallLog", "CallLogStats", "keyring_certificates"]

logger = logging.getLogger(__name__)
#: A batch that cannot be written is counted as lost, never the writer thread's end:
#: the store reports a database that refuses work as StoreUnavailable, and a record
#: with a naive time as ValueError.
_WRITE_FAILURES = (SQLAlchemyError, StoreUnavailable, ValueError)

#: Finds the certificate id of one of our x5u URLs (None for anyone else's).
CertificateLookup = Callable[[str], int | None]
Clock = Callable[[], float]
#: Rows deleted per retention transaction.
PURGE_BATCH = 5_000

#: (direction, action) of a call record's direction, then of one not signed.
_ACTIONS = {
    "outbound": (SipDirection.OUTBOUND.value, SipAction.SIGNED.value),
    "inbound": (SipDirection.INBOUND.value, SipAction.VERIFIED.value),
}
_NOT_SIGNED = SipAction.NOT_SIGNED.value
# Column widths of the sip_message table: a hostile Call-ID must not fail a whole batch.
_CALL_ID_MAX, _TN_MAX, _REASON_MAX, _URL_MAX = 255, 32, 255, 2048
_RCD_NAME_MAX = 256
#: Remote certificates whose row id the writer remembers.
KNOWN_CERTIFICATES = 4096
#: A queued call: the values a call had at hand, or a record given whole to
#: :meth:`CallLog.record` with the remote certificate of a verified call.
_Queued = CallRecord | tuple[SipRecord, ValidatedCertificate | None]


@dataclass(frozen=True, slots=True)
class CallLogStats:
    """Counters of the writer; ``dropped`` grows when the queue was full."""

    queued: int
    written: int
    dropped: int
    batches: int
    write_errors: int
    lost: int
    purged: int


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _certificate(item: _Queued) -> ValidatedCertificate | None:
    return item.certificate if isinstance(item, CallRecord) else item[1]


def describe_remote(certificate: ValidatedCertificate) -> RemoteCertificateRecord:
    """What the log keeps of another provider's certificate."""
    leaf = certificate.leaf
    return RemoteCertificateRecord(
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        spc=_clip(certificate.spc, _TN_MAX),
        serial=format(leaf.serial_number, "x"),
        not_before=certificate.not_before,
        not_after=certificate.not_after,
        pem=leaf.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    )


class _RemoteCertificates:
    """Row ids of the remote certificates stored, newest used last, bounded."""

    def __init__(self, size: int = KNOWN_CERTIFICATES) -> None:
        self._size = size
        self._ids: collections.OrderedDict[x509.Certificate, int] = collections.OrderedDict()

    def resolve(
        self, session: Session, certificates: list[ValidatedCertificate]
    ) -> dict[x509.Certificate, int]:
        """The row id of every certificate, storing the ones not seen yet."""
        wanted = {certificate.leaf: certificate for certificate in certificates}
        ids = {leaf: self._ids[leaf] for leaf in wanted if leaf in self._ids}
        missing = {leaf: describe_remote(c) for leaf, c in wanted.items() if leaf not in ids}
        if missing:
            stored = remote_certificate_ids(session, missing.values())
            ids.update({leaf: stored[record.fingerprint] for leaf, record in missing.items()})
        return ids

    def remember(self, ids: dict[x509.Certificate, int]) -> None:
        """After the commit: rows of a rolled-back batch must not be remembered."""
        for leaf, ident in ids.items():
            self._ids[leaf] = ident
            self._ids.move_to_end(leaf)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)


def keyring_certificates(keyring: Keyring) -> CertificateLookup:
    """A lookup from the signing keyring: x5u -> id of the certificate it publishes.

    Rebuilt only when the keyring's generation changes, so a lookup is a dict get.
    """
    cached: dict[str, int] = {}
    seen = -1

    def lookup(x5u: str) -> int | None:
        nonlocal cached, seen
        if seen != keyring.generation:
            seen = keyring.generation
            cached = {
                entry.x5u: int(entry.certificate_id)
                for entry in keyring.snapshot.entries
                if entry.x5u and entry.certificate_id and entry.certificate_id.isdigit()
            }
        return cached.get(x5u)

    return lookup


class CallLog:
    """Records signed and verified calls off the request path; see the module docstring.

    Use as a context manager (or :meth:`start`/:meth:`stop`). :meth:`record` never blocks
    and never raises for a full queue; :meth:`flush` waits for what was queued so far.
    """

    def __init__(
        self,
        database: Database,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        retention_days: int | None = None,
        retention_interval: float = 3600.0,
        certificate_for_x5u: CertificateLookup | None = None,
        clock: Clock = time.time,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise InvalidInput("the call log needs a queue and batches of at least one")
        if retention_days is not None and retention_days < 1:
            raise InvalidInput("call log retention is a number of days, at least 1")
        self.database = database
        self.batch_size = batch_size
        self.retention_days = retention_days
        self.certificate_for_x5u = certificate_for_x5u
        self._max_queue = max_queue
        # deque.append and popleft are atomic: producers on any thread need no lock.
        self._queue: collections.deque[_Queued] = collections.deque()
        #: Records taken off the queue by the writer and not yet counted written or lost.
        self._in_flight = 0
        self._wake = threading.Event()
        self._remote = _RemoteCertificates()
        self._flush_interval = flush_interval
        self._retention_interval = retention_interval
        self._clock = clock
        self._next_purge = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        #: Callers waiting in flush(): the writer then writes a partial batch at once.
        self._flushing = 0
        self._counts = {
            "written": 0,
            "dropped": 0,
            "batches": 0,
            "write_errors": 0,
            "lost": 0,
            "purged": 0,
        }

    @classmethod
    def from_settings(
        cls,
        database: Database,
        settings: Settings,
        *,
        certificate_for_x5u: CertificateLookup | None = None,
        purges: bool = True,
    ) -> CallLog:
        """The log as configured (``call_log_*`` settings); start it with :meth:`start`.
        ``purges``: whether this log applies the retention; of a server's processes one
        does, as the others would only repeat its deletes and wait on its lock."""
        return cls(
            database,
            max_queue=settings.call_log_queue_size,
            batch_size=settings.call_log_batch_size,
            retention_days=(settings.call_log_retention_days or None) if purges else None,
            certificate_for_x5u=certificate_for_x5u,
        )

    # -- recording (any thread, any event loop) -------------------------------------

    def _enqueue(self, item: _Queued) -> bool:
        waiting = len(self._queue)
        if waiting >= self._max_queue:
            with self._progress:
                self._counts["dropped"] += 1
            return False
        self._queue.append(item)
        if waiting + 1 == self.batch_size:
            self._wake.set()  # a full batch: write it now rather than at the next tick
        return True

    def record(self, record: SipRecord, certificate: ValidatedCertificate | None = None) -> bool:
        """Queue one record (with the remote ``certificate`` of a verified call); False
        when the queue was full and it was dropped."""
        return self._enqueue((record, certificate))

    def __call__(self, call: CallRecord) -> None:
        """The SIP redirect server's message-log hook (:data:`opensti.sip.CallLog`)."""
        self._enqueue(call)

    def record_signed(self, signed: SignedCall, *, call_id: str | None = None) -> bool:
        """A call the REST API signed."""
        claims = signed.claims
        return self._enqueue(
            CallRecord(
                self._clock(),
                call_id or "",
                "outbound",
                claims.orig,
                claims.dest,
                claims.attest,
                None,
                None,
                signed.x5u,
                certificate_id=signed.certificate_id,
            )
        )

    def record_sign_failure(
        self, error: OpenSTIError, orig: str | None, dest: Sequence[str], call_id: str | None
    ) -> bool:
        """A call the REST API could not sign (no entry, no active certificate)."""
        code = sip_service_response(error)[0]
        return self._enqueue(
            CallRecord(
                self._clock(),
                call_id or "",
                "outbound",
                orig,
                tuple(dest),
                None,
                None,
                code,
                None,
                signed=False,
                reason=error.message,
            )
        )

    def record_verified(
        self,
        result: VerificationResult,
        *,
        orig: str | None,
        dest: Sequence[str],
        call_id: str | None = None,
        rcd: RCDResult | None = None,
    ) -> bool:
        """A call the REST API verified; ``orig``/``dest`` as the request gave them;
        ``rcd`` the Rich Call Data, whose name and logo are kept only if verified."""
        claims = result.claims
        shown = rcd if rcd is not None and rcd.verified and result.passed else None
        return self._enqueue(
            CallRecord(
                self._clock(),
                call_id or "",
                "inbound",
                claims.orig if claims else orig,
                tuple(dest),
                claims.attest if claims else None,
                result.verstat.value,
                result.sip_code,
                result.x5u,
                result.certificate,
                rcd_name=shown.name if shown else None,
                rcd_icon=shown.icon if shown else None,
                reason=result.reason,
            )
        )

    # -- rows (the writer thread) ---------------------------------------------------

    def _certificate_id(self, given: str | None, x5u: str | None) -> int | None:
        """Our certificate's store id: as the signer gave it, else found by its x5u."""
        if given is not None and given.isdigit():
            return int(given)
        if x5u and self.certificate_for_x5u is not None:
            return self.certificate_for_x5u(x5u)
        return None

    def _row(self, item: _Queued, remote: dict[x509.Certificate, int]) -> SipRow:
        """The row of one queued call, every text clipped to its column (hostile input
        is not fatal)."""
        if not isinstance(item, CallRecord):
            record, certificate = item
            row = SipRow.of(record)
            if record.certificate_id is None and record.x5u:
                row = row._replace(certificate_id=self._certificate_id(None, record.x5u))
            if certificate is not None:
                row = row._replace(remote_certificate_id=remote[certificate.leaf])
            return row
        (at, call_id, direction, orig, dest, attest, verstat, code, x5u, certificate,
         rcd_name, rcd_icon, signed, reason, certificate_id) = item  # fmt: skip
        row_direction, action = _ACTIONS[direction]
        x5u = x5u and x5u[:_URL_MAX]
        return SipRow(
            _when(at),
            row_direction,
            action if signed else _NOT_SIGNED,
            call_id[:_CALL_ID_MAX],
            orig and orig[:_TN_MAX],
            dest[0][:_TN_MAX] if dest else None,
            attest,
            verstat,
            code,
            reason and reason[:_REASON_MAX],
            self._certificate_id(certificate_id, x5u),
            x5u,
            remote[certificate.leaf] if certificate is not None else None,
            rcd_name and rcd_name[:_RCD_NAME_MAX],
            rcd_icon and rcd_icon[:_URL_MAX],
        )

    # -- the writer ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="opensti-call-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the writer thread."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> CallLog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written (or lost); False on timeout."""
        with self._progress:
            target = self._counts["written"] + self._counts["lost"] + self._in_flight
            target += len(self._queue)
            self._flushing += 1
            self._wake.set()
            try:
                return self._progress.wait_for(
                    lambda: self._counts["written"] + self._counts["lost"] >= target, timeout
                )
            finally:
                self._flushing -= 1

    def _run(self) -> None:
        """Full batches as soon as they are queued; what is left (less than a batch)
        once per interval, or at once for :meth:`flush` and :meth:`stop`. Under load
        the calls that arrive while a batch is written wait for the next full one
        instead of going out in small batches, each a transaction of its own."""
        due = time.monotonic() + self._flush_interval
        while True:
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            partial = time.monotonic() >= due or self._flushing > 0 or self._stopping.is_set()
            # A partial write covers what is queued now, not what arrives meanwhile.
            ready = len(self._queue) if partial else 0
            while batch := self._take(ready):
                ready = max(0, ready - len(batch))
                self._write(batch)
            if partial:
                # From the end of the writes: a writer slowed down (a busy process
                # holds the GIL) must not fall back to a partial batch each time.
                due = time.monotonic() + self._flush_interval
            self._purge_when_due()
            if self._stopping.is_set() and not self._queue:
                return

    def _take(self, ready: int) -> list[_Queued]:
        """The next batch: a full one, else up to ``ready`` calls (a partial write)."""
        with self._progress:
            queued = len(self._queue)
            count = self.batch_size if queued >= self.batch_size else min(ready, queued)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
        return batch

    def _write(self, batch: list[_Queued]) -> None:
        try:
            with self.database.session() as session:
                certificates = [c for c in map(_certificate, batch) if c is not None]
                remote = self._remote.resolve(session, certificates)
                append_sip_rows(session, [self._row(item, remote) for item in batch])
        except _WRITE_FAILURES as exc:
            logger.warning("call log: %d records not written: %s", len(batch), type(exc).__name__)
            self._count(write_errors=1, lost=len(batch))
            return
        self._remote.remember(remote)
        self._count(batches=1, written=len(batch))

    def _count(self, **amounts: int) -> None:
        with self._progress:
            for name, amount in amounts.items():
                self._counts[name] += amount
            if "written" in amounts or "lost" in amounts:
                self._in_flight = 0
            self._progress.notify_all()

    # -- retention ----------------------------------------------------------------------

    def _purge_when_due(self) -> None:
        if self.retention_days is None:
            return
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + self._retention_interval
        try:
            self.purge(now)
        except _WRITE_FAILURES as exc:
            logger.warning("call log retention failed: %s", type(exc).__name__)

    def purge(self, now: float | None = None, *, days: int | None = None) -> int:
        """Delete calls older than the retention (or ``days``); returns how many."""
        days = self.retention_days if days is None else days
        if days is None:
            return 0
        cutoff = _when(self._clock() if now is None else now) - dt.timedelta(days=days)
        deleted = 0
        while True:  # short transactions: a purge never holds the write lock for long
            with self.database.session() as session:
                batch = delete_sip_messages_before(session, cutoff, limit=PURGE_BATCH)
            deleted += batch
            self._count(purged=batch)
            if batch < PURGE_BATCH:
                return deleted

    def stats(self) -> CallLogStats:
        with self._progress:
            done = self._counts["written"] + self._counts["lost"]
            queued = done + self._in_flight + len(self._queue)
            return CallLogStats(queued=queued, **self._counts)

    def metrics_lines(self) -> list[str]:
        """The counters in the Prometheus text format (a :class:`Metrics` collector)."""
        stats = self.stats()
        lines = []
        for name in ("written", "dropped", "batches", "write_errors", "lost", "purged"):
            metric = f"opensti_call_log_{name}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {getattr(stats, name)}"]
        lines += ["# TYPE opensti_call_log_queue gauge", f"opensti_call_log_queue {self.pending}"]
        return lines

    @property
    def pending(self) -> int:
        return len(self._queue)
