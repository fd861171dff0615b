"""The redirect server's behaviour: what each request gets, independent of transport.

Sign mode (STI-AS): an INVITE gets ``302 Moved Temporarily`` whose Contact is the
Request-URI and which carries the ``Identity`` header to copy into the onward INVITE.
A call that cannot be signed (no entry covers the calling number, the entry has no
certificate, the caller is not a TN) gets the same 302 without ``Identity`` and with a
``Warning`` saying why, so the SBC sends it on unsigned; the ``reject`` failure policy
answers the failure's 4xx/5xx instead.
The calling TN comes from P-Asserted-Identity (else From), the called TN from To (or
the Request-URI by policy), and the attestation from the ``X-Attest`` header (A, B or C)
or, without it, the signer's default.

Verify mode (STI-VS): an INVITE's Identity headers go to the verifier; the 302 carries
the P-Asserted-Identity values (or, with no PAI, the From) with ``verstat`` in the URI,
and under ``continue-with-reason`` a ``Reason: STIR`` header (RFC 9410). Under
``reject`` a failed call gets the RFC 8224 code instead (403/428/436/437/438).

Signing and verification are injected (:class:`CallSigner`, :class:`CallVerifier`), as
is the call log (:data:`CallLog`), which is called after the response has been sent
with a :class:`CallRecord`: a tuple of the values the call had at hand, nothing more.

Over UDP each INVITE is a server transaction (:mod:`opensti.sip.transaction`): a
retransmission gets the response already sent, byte for byte, and is neither signed
nor verified nor logged again; a verification still running after ``trying_delay``
sends 100 Trying first, so the SBC stops retransmitting.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from opensti.core.call import CallVerification
from opensti.core.certs import ValidatedCertificate
from opensti.core.errors import (
    InvalidInput,
    InvalidTN,
    OpenSTIError,
    ResultClass,
    SIPParseError,
    sip_response,
    sip_service_response,
)
from opensti.core.identity import parse_identity
from opensti.core.passport import ATTESTATION_LEVELS, b64url_decode, decode_passport
from opensti.core.verify import VerificationResult, Verstat
from opensti.sip.address import NameAddr, parse_name_addr, uri_tn, with_verstat
from opensti.sip.diversion import diverting_tn
from opensti.sip.message import REASON_PHRASES, PlainACK, SIPRequest, build_response
from opensti.sip.transaction import (
    MAX_COMPLETED,
    TIMER_H,
    PendingTransaction,
    ServerTransactions,
    TransactionKey,
    key_of,
    transaction_key,
)

__all__ = [
    "ALLOWED_METHODS",
    "CallLog",
    "CallRecord",
    "CallSigner",
    "CallVerifier",
    "FailurePolicy",
    "Mode",
    "RedirectHandler",
    "RedirectPolicy",
    "Send",
    "SignedIdentity",
]

logger = logging.getLogger(__name__)

#: A full-form PASSporT (header.payload.signature), its payload segment captured.
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_-]*\.([A-Za-z0-9_-]*)\.[A-Za-z0-9_-]+")
#: What a JSON payload holding an ``rcd`` key must contain.
_MAY_SPELL_RCD = (b"rcd", b"\\", b"\x00")

ALLOWED_METHODS = "INVITE, ACK, CANCEL, OPTIONS"
ATTEST_HEADER = "x-attest"


class Mode(StrEnum):
    SIGN = "sign"
    VERIFY = "verify"


class FailurePolicy(StrEnum):
    """What a verify listener does with a call that fails verification."""

    REJECT = "reject"
    CONTINUE = "continue"
    CONTINUE_WITH_REASON = "continue-with-reason"


class SignedIdentity(Protocol):
    """A signed call: the Identity header value, and what the call log keeps of it
    (``attest`` is None for a PASSporT without one, e.g. div)."""

    @property
    def identity(self) -> str: ...
    @property
    def attest(self) -> str | None: ...
    @property
    def x5u(self) -> str | None: ...
    @property
    def certificate_id(self) -> str | None: ...


class CallSigner(Protocol):
    """The STI-AS seam: sign one call, return the Identity header value.

    ``orig_tn``/``dest_tns`` are canonical TNs; ``attest`` is None for "the signer's
    default". Raises an :class:`OpenSTIError` (e.g. NoActiveCertificate) when it cannot.
    A signer may also have ``sign_call`` with the same arguments, returning a
    :class:`SignedIdentity` (as :class:`~opensti.signing.CallSignerAdapter` does): the
    call log then takes attest and x5u from it instead of decoding the PASSporT again.
    A ``sign_div`` method (the div PASSporT, RFC 8946) returns a SignedIdentity too.
    """

    def sign(
        self, orig_tn: str, dest_tns: Sequence[str], attest: str | None, call_id: str
    ) -> str: ...


class CallVerifier(Protocol):
    """The STI-VS seam: verify a call's Identity header values (possibly none).

    Failures are reported in the result (verstat, sip_code, error), not raised. A
    verifier may also have ``verify_cached`` with the same arguments, returning the
    result at once or None when it would have to wait (as
    :meth:`~opensti.verification.VerificationService.verify_cached` does): the usual
    call is then answered without a task, a timeout or a 100 Trying timer.
    """

    async def verify(
        self, identities: Sequence[str], orig_tn: str, dest_tns: Sequence[str]
    ) -> VerificationResult: ...


class CallRecord(NamedTuple):
    """One signed or verified call, for the SIP message log.

    A tuple of what the call had at hand, built per call on the hot path; the log
    makes its row (clipping, ids, the time as a date) off that path.
    """

    time: float
    call_id: str
    #: "outbound" for a call we signed, "inbound" for one we verified.
    direction: str
    orig: str | None
    dest: tuple[str, ...]
    attest: str | None
    verstat: str | None
    #: The SIP status sent (None for a call from the REST API).
    sip_code: int | None
    x5u: str | None
    #: The remote certificate that a verified call's PASSporT was checked against.
    certificate: ValidatedCertificate | None = None
    #: A verified call's Rich Call Data (RFC 9795), only when it verified.
    rcd_name: str | None = None
    rcd_icon: str | None = None
    #: False for an outbound call that could not be signed (``reason`` says why).
    signed: bool = True
    reason: str | None = None
    #: The store id of our certificate that signed, when the signer says it.
    certificate_id: str | None = None


#: Must return at once (e.g. put the record on a bounded queue).
CallLog = Callable[[CallRecord], None]
#: Sends one response on the transport the request came in on.
Send = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class RedirectPolicy:
    mode: Mode = Mode.SIGN
    failure_policy: FailurePolicy = FailurePolicy.CONTINUE
    #: Take the called TN from the Request-URI instead of To.
    dest_from_request_uri: bool = False
    nanp: bool = True
    #: A verification slower than this is answered with No-TN-Validation.
    verify_timeout: float = 5.0
    #: Concurrent verifications; beyond it INVITEs get 503 (overload, not a crash).
    max_in_flight: int = 10000
    server_name: str = "opensti"
    #: Over UDP, a verification still running after this many seconds sends 100 Trying
    #: first (RFC 3261 section 17.2.1: within 200 ms); None sends none.
    trying_delay: float | None = 0.2
    #: How long a final response is kept for retransmissions (Timer H, 64*T1).
    transaction_lifetime: float = TIMER_H
    #: Completed transactions kept per UDP listener; the oldest go first beyond it.
    max_transactions: int = MAX_COMPLETED


class _Verifying(NamedTuple):
    """An INVITE being verified and what was read from it (a tuple: built per call)."""

    request: SIPRequest
    peer: tuple[str, int] | None
    send: Send
    orig: str | None
    dests: tuple[str, ...]
    pai: list[NameAddr] | None


class _Described(NamedTuple):
    """A :class:`SignedIdentity` read back from a bare Identity value."""

    identity: str
    attest: str | None
    x5u: str | None
    certificate_id: str | None = None


def _described(signed: str | SignedIdentity) -> SignedIdentity:
    """A signer's answer as a SignedIdentity; a bare Identity value (a signer without
    ``sign_call``) is decoded for what the call log keeps of it."""
    if not isinstance(signed, str):
        return signed
    attest = x5u = None
    try:
        passport = decode_passport(signed.split(";", 1)[0])
        attest, x5u = passport.payload.get("attest"), passport.x5u
    except OpenSTIError:
        logger.debug("signer returned an Identity we cannot decode", exc_info=True)
    return _Described(signed, attest, x5u)


def _carries_rcd(identity: str) -> bool:
    """Whether an Identity value's PASSporT has rcd claims (RFC 9795); False if unreadable.

    The payload's bytes are looked at first: JSON text without ``rcd``, without an
    escape (which could spell it) and without a NUL byte (UTF-16 or -32 JSON) has no
    such key, which spares the usual call decoding the whole PASSporT once more.
    """
    plain = _PLAIN_TOKEN.fullmatch(identity.partition(";")[0].strip(" \t"))
    if plain is not None:
        try:
            payload = b64url_decode(plain.group(1))
        except ValueError:
            return False  # the PASSporT cannot be decoded either
        if not any(mark in payload for mark in _MAY_SPELL_RCD):
            return False
    try:
        return "rcd" in decode_passport(parse_identity(identity).token).payload
    except OpenSTIError:
        return False


def _no_validation(reason: str) -> VerificationResult:
    return VerificationResult(
        verstat=Verstat.NO_VALIDATION,
        sip_code=None,
        reason=reason,
        result_class=ResultClass.NO_PASSPORT,
    )


def _sent(line: bytes, response: bytes) -> bool:
    """Whether ``line`` (``Name: value``) is one of the response's header lines."""
    return b"\r\n" + line + b"\r\n" in response


def _repeats(request: SIPRequest, name: str, response: bytes) -> bool:
    """Whether the request's one ``name`` header is the response's, byte for byte."""
    values = request.headers.get(name.lower())
    if values is None or len(values) != 1:
        return False
    return _sent(f"{name}: {values[0]}".encode(), response)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _failure_phrase(result: VerificationResult, code: int) -> str:
    if result.error is not None:
        return sip_response(result.error)[1]
    return REASON_PHRASES.get(code, "Verification Failed")


class RedirectHandler:
    """Answers requests for one listener (its mode and failure policy).

    ``reliable`` is True on TCP, where nothing is retransmitted: no final responses are
    kept and no 100 Trying is sent.
    """

    def __init__(
        self,
        policy: RedirectPolicy,
        *,
        signer: CallSigner | None = None,
        verifier: CallVerifier | None = None,
        log: CallLog | None = None,
        reliable: bool = False,
    ) -> None:
        if policy.mode is Mode.SIGN and signer is None:
            raise InvalidInput("a sign listener needs a signer")
        if policy.mode is Mode.VERIFY and verifier is None:
            raise InvalidInput("a verify listener needs a verifier")
        self.policy = policy
        self._signer = signer
        #: The signer's richer answer, when it has one (see CallSigner).
        self._sign_call: Callable[..., SignedIdentity] | None = getattr(signer, "sign_call", None)
        self._sign_div: Callable[..., str | SignedIdentity] | None = getattr(
            signer, "sign_div", None
        )
        self._verifier = verifier
        #: The verifier's answer without an await, when it has one (see CallVerifier).
        self._verify_cached: Callable[..., VerificationResult | None] | None = getattr(
            verifier, "verify_cached", None
        )
        self._log = log
        self._reliable = reliable
        #: Responses sent on this listener by status code (b"302"), for ``/metrics``:
        #: counted by the transport that sends them.
        self.sent: dict[bytes, int] = {}
        self.transactions = ServerTransactions(
            lifetime=policy.transaction_lifetime,
            max_completed=0 if reliable else policy.max_transactions,
        )

    def handle(
        self, request: SIPRequest, peer: tuple[str, int] | None, send: Send
    ) -> Coroutine[Any, Any, None] | None:
        """Answer a validated request; return a coroutine when the answer must wait."""
        method = request.method
        if method == "INVITE":
            return self._invite(request, peer, send)
        if method == "ACK":
            self.acknowledge(request)
            return None
        if method == "OPTIONS":
            send(self._response(request, 200, peer, [("Allow", ALLOWED_METHODS)]))
        elif method == "CANCEL":
            self._cancel(request, peer, send)
        else:
            send(self._response(request, 405, peer, [("Allow", ALLOWED_METHODS)]))
        return None

    def _invite(
        self, request: SIPRequest, peer: tuple[str, int] | None, send: Send
    ) -> Coroutine[Any, Any, None] | None:
        if self._reliable and self.policy.mode is Mode.SIGN:
            self._sign(request, peer, send)  # nothing is retransmitted, nothing waits
            return None
        key = transaction_key(request)
        if self._answer_retransmission(key, send):
            return None
        if not self._reliable:
            send = self._completing(key, send)
        if self.policy.mode is Mode.SIGN:
            self._sign(request, peer, send)
            return None
        return self._start_verify(request, peer, send, key)

    def acknowledge(self, request: SIPRequest) -> bool:
        """An ACK, never answered: the ACK of our 3xx/4xx ends its transaction (RFC 3261
        section 17.2.1); True when it did. An ACK that is not valid SIP ends nothing
        (:class:`SIPParseError`).

        The usual ACK repeats the From and To of the response it acknowledges, which
        were checked when the INVITE was: those two are then compared with the response
        sent, byte for byte, instead of being parsed again; any other ACK is validated
        whole.
        """
        if self._reliable:
            return False  # nothing is kept over TCP
        request.validate(addresses=False)
        key = transaction_key(request)
        response = self.transactions.response(key)
        if response is None:
            return False
        if not (_repeats(request, "From", response) and _repeats(request, "To", response)):
            request.validate()
        return self.transactions.acknowledge(key)

    def acknowledge_plain(self, ack: PlainACK) -> bool | None:
        """:meth:`acknowledge` for an ACK read by
        :func:`~opensti.sip.message.plain_ack`, never framed; None when its From or To
        differ from the response's, so it must be validated whole (as any request)."""
        if self._reliable:
            return False
        key = key_of(ack.via, ack.call_id, ack.number)
        response = self.transactions.response(key)
        if response is None:
            return False
        if not (_sent(ack.from_line, response) and _sent(ack.to_line, response)):
            return None
        return self.transactions.acknowledge(key)

    def _answer_retransmission(self, key: TransactionKey, send: Send) -> bool:
        """Resend what the transaction of ``key`` sent last; False for a new INVITE."""
        transactions = self.transactions
        response = transactions.response(key)
        if response is None:
            pending = transactions.pending(key)
            if pending is None:
                return False
            response = pending.trying  # still being verified: absorbed, or 100 again
        transactions.retransmitted()
        if response is not None:
            send(response)
        return True

    def _completing(self, key: TransactionKey, send: Send) -> Send:
        """``send`` that also keeps a final response for the retransmissions to come."""
        complete = self.transactions.complete

        def send_final(payload: bytes) -> None:
            send(payload)
            if payload[8:9] != b"1":  # "SIP/2.0 1xx" is provisional
                complete(key, payload)

        return send_final

    def reject_malformed(
        self, request: SIPRequest, peer: tuple[str, int] | None, send: Send, error: SIPParseError
    ) -> None:
        """400 for a request that is SIP but unusable; an ACK is never answered."""
        if request.method != "ACK":
            warning = ("Warning", f"399 {self.policy.server_name} {_quoted(error.message)}")
            send(self._response(request, 400, peer, [warning]))

    def _response(
        self,
        request: SIPRequest,
        status: int,
        peer: tuple[str, int] | None,
        headers: Sequence[tuple[str, str]] = (),
        *,
        reason: str | None = None,
        from_value: str | None = None,
    ) -> bytes:
        return build_response(
            request,
            status,
            reason,
            headers,
            from_value=from_value,
            peer=peer,
            server=self.policy.server_name,
        )

    def _record(self, record: CallRecord) -> None:
        if self._log is None:
            return
        try:
            self._log(record)
        except Exception:
            logger.debug("call log hook failed", exc_info=True)

    # --- TNs from the signalling -------------------------------------------------

    def _calling(self, request: SIPRequest) -> tuple[str | None, list[NameAddr] | None]:
        """The calling TN (PAI first, else From) and the parsed PAI values, if any."""
        values = request.header_values("p-asserted-identity")
        pai = [parse_name_addr(v, "P-Asserted-Identity") for v in values]
        for address in pai:
            tn = uri_tn(address.uri, nanp=self.policy.nanp)
            if tn is not None:
                return tn, pai
        return uri_tn(request.from_addr.uri, nanp=self.policy.nanp), pai or None

    def _called(self, request: SIPRequest) -> tuple[str, ...]:
        uri = request.uri if self.policy.dest_from_request_uri else request.to_addr.uri
        tn = uri_tn(uri, nanp=self.policy.nanp)
        return (tn,) if tn is not None else ()

    # --- sign ----------------------------------------------------------------------

    def _attest(self, request: SIPRequest) -> str | None:
        value = request.header(ATTEST_HEADER)
        if value is None:
            return None
        attest = value.strip().upper()
        if attest not in ATTESTATION_LEVELS:
            raise InvalidInput(f"X-Attest must be A, B or C, not {value[:10]!r}")
        return attest

    def _sign(self, request: SIPRequest, peer: tuple[str, int] | None, send: Send) -> None:
        orig: str | None = None
        dests: tuple[str, ...] = ()
        try:
            orig = self._calling(request)[0]
            dests = self._called(request)
            if orig is None or not dests:
                raise InvalidTN("the calling or called party is not a telephone number")
            signed = self._sign_identity(request, orig, dests)
        except SIPParseError as exc:
            self.reject_malformed(request, peer, send, exc)  # not SIP we can route on
            return
        except OpenSTIError as exc:
            self._not_signed(request, peer, send, exc, orig, dests)
            return
        contact = ("Contact", f"<{request.uri}>")
        send(self._response(request, 302, peer, [contact, ("Identity", signed.identity)]))
        if self._log is not None:
            self._log_outbound(request, orig, dests, 302, signed)

    def _sign_identity(
        self, request: SIPRequest, orig: str, dests: tuple[str, ...]
    ) -> SignedIdentity:
        """SHAKEN, or a div PASSporT (RFC 8946) for an INVITE that already carries an
        Identity and shows a diversion (Diversion or History-Info): we diverted it."""
        assert self._signer is not None
        if self._sign_div is not None and request.header_values("identity"):
            div = diverting_tn(request, nanp=self.policy.nanp)
            if div is not None:
                return _described(self._sign_div(orig, dests, div, request.call_id))
        attest = self._attest(request)
        if self._sign_call is not None:
            return self._sign_call(orig, dests, attest, request.call_id)
        return _described(self._signer.sign(orig, dests, attest, request.call_id))

    def _not_signed(
        self,
        request: SIPRequest,
        peer: tuple[str, int] | None,
        send: Send,
        exc: OpenSTIError,
        orig: str | None,
        dests: tuple[str, ...],
    ) -> None:
        """A call that cannot be signed: by default a 302 to the Request-URI without an
        Identity header, so the SBC follows it and sends the call on unsigned (an error
        answer would make most SBCs fail the call or try another route); under the
        ``reject`` policy the 4xx/5xx of the failure. Either way a Warning says why and
        the call log records it as not signed, with the reason."""
        logger.debug("not signing %s: %s", request.call_id, exc)
        warning = ("Warning", f"399 {self.policy.server_name} {_quoted(exc.message)}")
        if self.policy.failure_policy is FailurePolicy.REJECT:
            code, phrase = sip_service_response(exc)
            send(self._response(request, code, peer, [warning], reason=phrase))
        else:
            code = 302
            contact = ("Contact", f"<{request.uri}>")
            send(self._response(request, code, peer, [contact, warning]))
        if self._log is not None:
            self._log_outbound(request, orig, dests, code, None, exc.message)

    def _log_outbound(
        self,
        request: SIPRequest,
        orig: str | None,
        dests: tuple[str, ...],
        code: int,
        signed: SignedIdentity | None,
        reason: str | None = None,
    ) -> None:
        """Log a call we signed, or (``signed`` None) one we could not sign and why."""
        self._record(
            CallRecord(
                time.time(),
                request.call_id,
                "outbound",
                orig,
                dests,
                None if signed is None else signed.attest,
                None,
                code,
                None if signed is None else signed.x5u,
                signed=signed is not None,
                reason=reason,
                certificate_id=None if signed is None else signed.certificate_id,
            )
        )

    # --- verify --------------------------------------------------------------------

    def _start_verify(
        self, request: SIPRequest, peer: tuple[str, int] | None, send: Send, key: TransactionKey
    ) -> Coroutine[Any, Any, None] | None:
        if self.transactions.pending_count >= self.policy.max_in_flight:
            send(self._response(request, 503, peer, [("Retry-After", "1")]))
            return None
        try:
            orig, pai = self._calling(request)
            dests = self._called(request)
        except SIPParseError as exc:
            self.reject_malformed(request, peer, send, exc)
            return None
        call = _Verifying(request, peer, send, orig, dests, pai)
        result = self._verified_at_once(call)
        if result is not None:
            self._conclude(call, result)
            return None
        return self._verify(call, key, self.transactions.begin(key))

    def _cancel(self, request: SIPRequest, peer: tuple[str, int] | None, send: Send) -> None:
        """200 when the INVITE's transaction exists (it has no effect once answered)."""
        key = transaction_key(request)
        pending = self.transactions.pending(key)
        if pending is not None:
            pending.cancelled = True
        elif self.transactions.response(key) is None:
            send(self._response(request, 481, peer))
            return
        send(self._response(request, 200, peer))

    def _trying_timer(
        self,
        request: SIPRequest,
        peer: tuple[str, int] | None,
        send: Send,
        pending: PendingTransaction,
    ) -> asyncio.TimerHandle | None:
        delay = self.policy.trying_delay
        if self._reliable or delay is None:
            return None

        def trying() -> None:
            pending.trying = self._response(request, 100, peer)
            send(pending.trying)

        return asyncio.get_running_loop().call_later(delay, trying)

    async def _verify(
        self, call: _Verifying, key: TransactionKey, pending: PendingTransaction
    ) -> None:
        timer = self._trying_timer(call.request, call.peer, call.send, pending)
        try:
            result = await self._run_verifier(call)
        finally:
            if timer is not None:
                timer.cancel()
            self.transactions.end(key)
        if pending.cancelled:
            call.send(self._response(call.request, 487, call.peer))
            return
        self._conclude(call, result)

    def _conclude(self, call: _Verifying, verdict: VerificationResult | CallVerification) -> None:
        """Send the verdict and log the call (with its verified name and logo, if any)."""
        whole = verdict if isinstance(verdict, CallVerification) else None
        result = verdict.result if isinstance(verdict, CallVerification) else verdict
        request = call.request
        code = self._send_verdict(request, call.peer, call.send, result, call.pai)
        if self._log is not None:
            rcd = whole.rcd if whole is not None and whole.passed else None
            shown = rcd if rcd is not None and rcd.verified else None
            self._record(
                CallRecord(
                    time.time(),
                    request.call_id,
                    "inbound",
                    call.orig,
                    call.dests,
                    result.claims.attest if result.claims else None,
                    result.verstat.value,
                    code,
                    result.x5u,
                    result.certificate,
                    shown.name if shown else None,
                    shown.icon if shown else None,
                )
            )

    def _verified_at_once(self, call: _Verifying) -> VerificationResult | None:
        """The result when no await is needed (no TN, or the credential is cached)."""
        if call.orig is None or not call.dests:
            return _no_validation("the calling or called party is not a telephone number")
        if self._verify_cached is None or self._whole_call(call.request):
            return None
        try:
            return self._verify_cached(
                call.request.header_values("identity"), call.orig, call.dests
            )
        except Exception:
            logger.exception("verifier failed on %s", call.request.call_id)
            return _no_validation("verification service error")

    async def _run_verifier(self, call: _Verifying) -> VerificationResult | CallVerification:
        assert self._verifier is not None
        assert call.orig is not None
        request = call.request
        identities = request.header_values("identity")
        try:
            async with asyncio.timeout(self.policy.verify_timeout):
                verify_call = getattr(self._verifier, "verify_call", None)
                if verify_call is not None and self._whole_call(request):
                    # SHAKEN plus div (RFC 8946) or rcd PASSporTs: the verstat covers all.
                    whole: CallVerification = await verify_call(identities, call.orig, call.dests)
                    return whole
                return await self._verifier.verify(identities, call.orig, call.dests)
        except TimeoutError:
            logger.warning("verification of %s timed out", request.call_id)
            return _no_validation("verification timed out")
        except Exception:
            logger.exception("verifier failed on %s", request.call_id)
            return _no_validation("verification service error")

    def _whole_call(self, request: SIPRequest) -> bool:
        """Several Identity headers (a diverted call, an rcd PASSporT), or one carrying
        rcd claims whose name and logo the call log keeps: verified as a whole call."""
        identities = request.header_values("identity")
        if len(identities) > 1:
            return True
        return self._log is not None and any(_carries_rcd(value) for value in identities)

    def _send_verdict(
        self,
        request: SIPRequest,
        peer: tuple[str, int] | None,
        send: Send,
        result: VerificationResult,
        pai: list[NameAddr] | None,
    ) -> int:
        """Send the 302 (or the reject code); return the status sent."""
        code = result.sip_code
        if code is not None and self.policy.failure_policy is FailurePolicy.REJECT:
            send(self._response(request, code, peer, reason=_failure_phrase(result, code)))
            return code
        verstat = result.verstat.value
        headers = [("Contact", f"<{request.uri}>")]
        from_value = None
        if pai:
            headers += [
                ("P-Asserted-Identity", str(a.with_uri(with_verstat(a.uri, verstat)))) for a in pai
            ]
        else:
            sender = request.from_addr
            from_value = str(sender.with_uri(with_verstat(sender.uri, verstat)))
        if code is not None and self.policy.failure_policy is FailurePolicy.CONTINUE_WITH_REASON:
            text = _quoted(_failure_phrase(result, code))
            headers.append(("Reason", f"STIR ;cause={code} ;text={text}"))
        send(self._response(request, 302, peer, headers, from_value=from_value))
        return 302
