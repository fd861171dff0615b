"""The ATIS-1000082 signing and verification API for SBCs, as a lean ASGI app.

This is the hot path, so it is a plain ASGI callable (no framework, no validation
library): JSON in, one service call, JSON out. The management API lives elsewhere.

    POST /stir/v1/signing             signingRequest       -> signingResponse.identity
    POST /stir/v1/verification        verificationRequest  -> verificationResponse.verstat
    POST /stir/v1/signing/batch       signingRequests[]    -> signingResponses[]
    POST /stir/v1/verification/batch  verificationRequests[] -> verificationResponses[]
    GET  /metrics                     Prometheus text format
    GET  /health                      {"status": "ok"}, "degraded" with the problems,
                                      or 503 "unavailable" when the store is not

A body in the simplified shape of Comcast's vesper (the claims at the top level) is
accepted on the same two paths and answered in that shape: see :mod:`opensti.api._vesper`.

Field names follow ATIS-1000082 as public implementations use them; common variants
are accepted: a TN as a string or a one-element array, ``identity`` with or without
``;info=...`` (rebuilt from the PASSporT's x5u when missing), ``iat``/``time`` as a
number or numeric string. opensti extensions: ``entry`` in a signing request (names
the signing entry) and ``identities`` (several Identity values) in a verification
request. ATIS-1000082 defines no Rich Call Data or diverted-call fields, so these are
extensions too: a signing request's ``rcd`` object (``nam``, ``icn``: the logo is
fetched for its rcdi digest) and ``crn`` replace the entry's Rich Call Data (RFC
9795); a verification response adds ``rcd`` (whether the name and logo verified)
and, for a diverted call (RFC 8946), ``div`` (each link of the chain).

Every endpoint but ``/health`` is closed by default (see :mod:`opensti.api._stir_access`):
a refusal answers 401 or 403 with ``{"requestError": {"policyException": {"messageId",
"text"}}}`` (the ATIS-1000082 / OMA REST error shape) beside opensti's ``error`` object.

A verification answers 200 with a verstat whatever the call's fate; ``reasonCode``
(the RFC 8224 SIP code) and ``reasonText`` are added on failure unless the failure
policy is ``continue``. Errors that stop a request (bad JSON, no signing entry) answer
with the HTTP status of :func:`opensti.core.errors.http_status` and
``{"error": {"type": ..., "message": ...}}``. A batch answers 200 with one item per
request, each either the single response's body or such an error object.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

from opensti.api import _vesper as vesper
from opensti.api._stir_access import KnownToken, STIRAccess, TokenCache, parse_networks
from opensti.api._stir_messages import JSON_HEADERS, STIRRequest, STIRResponse
from opensti.core.bounds import check_time
from opensti.core.call import CallVerification
from opensti.core.errors import (
    InvalidInput,
    NotAuthenticated,
    NotFound,
    OpenSTIError,
    PermissionDenied,
    ResultClass,
    http_status,
    sip_response,
)
from opensti.core.identity import format_identity
from opensti.core.passport import decode_passport
from opensti.core.rcd import build_rcd_claims
from opensti.core.verify import VerificationResult, Verstat
from opensti.lifecycle.branding import IconFetch, fetch_icon_digest
from opensti.metrics import Counter, Family, Gauge, Labels, Metrics, labels
from opensti.signing import SigningService
from opensti.verification import FailurePolicy, VerificationService

__all__ = [
    "KnownToken",
    "STIRAccess",
    "STIRApp",
    "STIRRequest",
    "STIRResponse",
    "TokenCache",
    "create_stir_app",
    "parse_networks",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 1024 * 1024
MAX_BATCH = 1000
#: The metrics series the hot paths add to, their labels made once.
_SIGNED, _SIGN_TIME, _VERIFY_TIME = labels(outcome="signed"), labels(op="sign"), labels(op="verify")


class _MethodNotAllowed(OpenSTIError):
    pass


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise InvalidInput(f"the body needs a {key!r} object")
    return value


def _tns(value: object, what: str) -> list[str]:
    """A ``{"tn": ...}`` object's numbers, whether ``tn`` is a string or an array."""
    tn = value.get("tn") if isinstance(value, dict) else None
    if isinstance(tn, str):
        return [tn]
    if isinstance(tn, list) and tn:
        for item in tn:  # a loop, not all(...): no generator on every request
            if not isinstance(item, str):
                break
        else:
            return tn
    raise InvalidInput(f"{what}.tn must be a number or a non-empty array of numbers")


def _one_tn(value: object, what: str) -> str:
    tn = value.get("tn") if isinstance(value, dict) else None
    if isinstance(tn, str):  # the usual form: nothing more to check
        return tn
    tns = _tns(value, what)
    if len(tns) != 1:
        raise InvalidInput(f"{what}.tn must be one number")
    return tns[0]


def _seconds(value: object, what: str) -> int | None:
    """Epoch seconds as a number or numeric string, 0 to year 9999 (the signing service
    also keeps a signing ``iat`` near its clock)."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return check_time(value, what)
    raise InvalidInput(f"{what} must be a number of seconds")


def _optional_str(request: dict[str, Any], key: str) -> str | None:
    value = request.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    return value


def _full_identity(value: str) -> str:
    """Add ``;info=<x5u>;alg=ES256;ppt=shaken`` when a client sent the bare PASSporT."""
    if ";" in value:
        return value
    try:
        x5u = decode_passport(value.strip()).x5u
    except OpenSTIError:
        return value  # verification reports it
    return format_identity(value.strip(), x5u) if x5u else value


def _identities(request: dict[str, Any]) -> list[str]:
    values = request.get("identities", request.get("identity"))
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInput("identity must be an Identity header value (or identities a list)")
    return [_full_identity(v) for v in values]


def _error_body(error: OpenSTIError) -> dict[str, Any]:
    return {"error": {"type": type(error).__name__, "message": error.message}}


#: ATIS-1000082 policy exception ids of a refusal: no credential, then not allowed.
_POLICY_IDS = {401: "POL1000", 403: "POL1010"}


def _refusal_body(error: NotAuthenticated | PermissionDenied) -> dict[str, Any]:
    status = http_status(error)
    policy = {"messageId": _POLICY_IDS[status], "text": error.message}
    return {"requestError": {"policyException": policy}, **_error_body(error)}


class STIRApp:
    """The STIR endpoints for the services it is given: :meth:`handle` answers a
    request, the app itself is its ASGI face."""

    def __init__(
        self,
        signer: SigningService | None,
        verifier: VerificationService | None,
        *,
        policy: FailurePolicy = FailurePolicy.CONTINUE_WITH_REASON,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.perf_counter,
        access: STIRAccess | None = None,
        health: Callable[[], str | None] | None = None,
        problems: Callable[[], Sequence[str]] | None = None,
        icon_fetch: IconFetch | None = None,
    ) -> None:
        self.signer = signer
        #: Fetches the logo a signing request's ``rcd.icn`` names (cached by the caller).
        self.icon_fetch = icon_fetch
        #: Without an access policy nothing gets in: closed by default.
        self.access = access or STIRAccess()
        #: Why the node cannot work (e.g. the store is read-only), or None; blocking.
        self._health = health
        #: What /health reports as wrong (e.g. a sign listener no entry can serve).
        self.problems = problems
        self.verifier = verifier
        self.policy = policy
        self.metrics = metrics or Metrics()
        self._timer = clock
        if verifier is not None:
            self.metrics.add_collector(lambda: _verifier_families(verifier))
        self._routes: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "/stir/v1/signing": self._signing,
            "/stir/v1/verification": self._verification,
            "/stir/v1/signing/batch": self._signing_batch,
            "/stir/v1/verification/batch": self._verification_batch,
        }
        #: (method, path) of the requests an HTTP front may hand to :meth:`handle`
        #: directly: what SBCs send (the rest come through ASGI, to the same answer).
        self.targets = frozenset(
            {(b"POST", path.encode()) for path in self._routes}
            | {(b"GET", b"/health"), (b"GET", b"/metrics")}
        )
        #: The longest request body read (a longer one is answered 400).
        self.max_body = MAX_BODY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI face of :meth:`handle`."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body, oversized = await _read_body(receive)
        tls = scope.get("extensions", {}).get("tls") or {}
        request = STIRRequest(
            scope["method"],
            scope["path"],
            scope["headers"],
            body,
            scope.get("client"),
            tls.get("client_cert_chain") or (),
            oversized,
        )
        response = await self.handle(request)
        length = (b"content-length", str(len(response.body)).encode())
        headers = [*response.headers, length]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def handle(self, request: STIRRequest) -> STIRResponse:
        """The answer to one request: the whole STIR API, whatever carried the request.

        It suspends only to wait for I/O (a token store reload, an x5u fetch, the health
        check's store query): signing, and verifying with a cached certificate, finish in
        the first step."""
        path, method = request.path, request.method
        if path == "/health" and method == "GET":
            return await self._report_health()
        try:
            await self.access.check(request, metrics=path == "/metrics")
        except (NotAuthenticated, PermissionDenied) as error:
            return _refusal(error)
        except OpenSTIError as error:  # the token store cannot be read
            return _json(http_status(error), _error_body(error))
        if path == "/metrics" and method == "GET":
            body = self.metrics.render().encode()
            return STIRResponse(200, body, ((b"content-type", Metrics.CONTENT_TYPE.encode()),))
        handler = self._routes.get(path)
        try:
            if handler is None:
                raise NotFound(f"no such endpoint: {path}")
            if method != "POST":
                raise _MethodNotAllowed(f"{path} takes POST")
            answer = await handler(_json_body(request))
        except vesper.VesperAnswer as shaped:
            return _json(shaped.status, shaped.body)
        except _MethodNotAllowed as error:
            return _json(405, _error_body(error))
        except OpenSTIError as error:
            return _json(http_status(error), _error_body(error))
        return STIRResponse(200, orjson.dumps(answer))

    async def _report_health(self) -> STIRResponse:
        """503 when the store cannot be used; 200 "degraded" with the problems when the
        node works but cannot do all it is asked (a sign listener no entry serves)."""
        problem = None if self._health is None else await asyncio.to_thread(self._health)
        if problem is not None:
            return _json(503, {"status": "unavailable", "database": problem})
        problems = list(self.problems()) if self.problems is not None else []
        if not problems:
            return STIRResponse(200, b'{"status":"ok"}')
        return _json(200, {"status": "degraded", "problems": problems})

    # -- signing -----------------------------------------------------------------------

    async def _rcd(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The request's own rcd claims (extension ``rcd``, ``crn``), or None."""
        rcd, crn = request.get("rcd"), _optional_str(request, "crn")
        if rcd is None and crn is None:
            return None
        if not isinstance(rcd, dict) or set(rcd) - {"nam", "icn"}:
            raise InvalidInput("rcd must be an object with nam and/or icn")
        name, icon = _optional_str(rcd, "nam"), _optional_str(rcd, "icn")
        digest = None if icon is None else await fetch_icon_digest(self.icon_fetch, icon)
        return build_rcd_claims(name=name, icon=icon, icon_digest=digest, call_reason=crn)

    async def _sign_one(self, request: object) -> dict[str, Any]:
        if self.signer is None:
            raise NotFound("signing is not enabled on this server")
        if not isinstance(request, dict):
            raise InvalidInput("signingRequest must be an object")
        started = self._timer()
        try:
            rcd = await self._rcd(request) if "rcd" in request or "crn" in request else None
            signed = self.signer.sign(
                _one_tn(request.get("orig"), "orig"),
                _tns(request.get("dest"), "dest"),
                attest=_optional_str(request, "attest"),
                origid=_optional_str(request, "origid"),  # its length: the service's
                entry=_optional_str(request, "entry"),
                now=_seconds(request.get("iat"), "iat"),
                rcd=rcd,
            )
        except OpenSTIError as error:
            self.metrics.signed.inc(outcome=type(error).__name__)
            raise
        self.metrics.signed.inc_at(_SIGNED)
        self.metrics.latency.observe_at(_SIGN_TIME, self._timer() - started)
        return {"identity": signed.identity}

    async def _signing(self, body: dict[str, Any]) -> dict[str, Any]:
        if vesper.is_vesper(body, "signingRequest"):
            try:
                return {vesper.SIGNING: await self._sign_one(vesper.signing_request(body))}
            except OpenSTIError as error:
                raise vesper.VesperAnswer.of(error, vesper.SIGNING) from None
        return {"signingResponse": await self._sign_one(_object(body, "signingRequest"))}

    async def _signing_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        answers = []
        for request in _batch(body, "signingRequests"):
            try:
                answers.append(await self._sign_one(request))
            except OpenSTIError as error:
                answers.append(_error_body(error))
        return {"signingResponses": answers}

    # -- verification ------------------------------------------------------------------

    async def _verify_one(self, request: object) -> dict[str, Any]:
        call = await self._verify_call(request)
        answer = self._verification_response(call.result)
        # Extensions (ATIS-1000082 has neither): the div chain and the Rich Call Data.
        if call.divs:
            answer["div"] = [link.to_dict() for link in call.divs]
        if call.rcd is not None:
            answer["rcd"] = call.rcd.to_dict()
        return answer

    async def _verify_result(self, request: object) -> VerificationResult:
        return (await self._verify_call(request)).result

    async def _verify_call(self, request: object) -> CallVerification:
        """The whole call: SHAKEN, any div PASSporTs (RFC 8946) and rcd (RFC 9795)."""
        if self.verifier is None:
            raise NotFound("verification is not enabled on this server")
        if not isinstance(request, dict):
            raise InvalidInput("verificationRequest must be an object")
        started = self._timer()
        call = await self.verifier.verify_call(
            _identities(request),
            _one_tn(request.get("from"), "from"),
            _tns(request.get("to"), "to"),
            date=_seconds(request.get("time"), "time"),
        )
        result = call.result
        self.metrics.verified.inc_at(_verified_key(result.verstat, result.result_class))
        self.metrics.latency.observe_at(_VERIFY_TIME, self._timer() - started)
        return call

    def _verification_response(self, result: VerificationResult) -> dict[str, Any]:
        answer: dict[str, Any] = {"verstat": result.verstat.value}
        if result.error is not None and self.policy is not FailurePolicy.CONTINUE:
            code, phrase = sip_response(result.error)
            answer["reasonCode"] = code
            answer["reasonText"] = phrase
        return answer

    async def _verification(self, body: dict[str, Any]) -> dict[str, Any]:
        if vesper.is_vesper(body, "verificationRequest"):
            try:
                request = vesper.verification_request(body)
                return vesper.verification_answer(await self._verify_result(request), request)
            except vesper.VesperAnswer:
                raise
            except OpenSTIError as error:
                raise vesper.VesperAnswer.of(error, vesper.VERIFICATION) from None
        request = _object(body, "verificationRequest")
        return {"verificationResponse": await self._verify_one(request)}

    async def _verification_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        answers = []
        for request in _batch(body, "verificationRequests"):
            try:
                answers.append(await self._verify_one(request))
            except OpenSTIError as error:
                answers.append(_error_body(error))
        return {"verificationResponses": answers}


@functools.cache
def _verified_key(verstat: Verstat, result: ResultClass) -> Labels:
    """The verified counter's labels, made once per verstat and result class."""
    return labels(verstat=verstat.value, result=result.value)


def _batch(body: dict[str, Any], key: str) -> list[object]:
    items = body.get(key)
    if not isinstance(items, list):
        raise InvalidInput(f"the body needs a {key!r} array")
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} requests per batch")
    return items


def _verifier_families(verifier: VerificationService) -> list[Family]:
    stats = verifier.stats()
    cache = stats.cache
    assert cache is not None
    counters = {
        "opensti_x5u_cache_hits_total": ("x5u certificate cache hits.", cache.hits),
        "opensti_x5u_cache_misses_total": ("x5u certificate cache misses.", cache.misses),
        "opensti_x5u_cache_negative_hits_total": (
            "x5u URLs answered from the cache of failures.",
            stats.negative_hits,
        ),
        "opensti_x5u_fetches_total": ("x5u certificate fetches.", stats.fetches),
        "opensti_x5u_fetch_errors_total": ("x5u fetches that failed.", stats.fetch_errors),
        "opensti_x5u_circuit_rejections_total": (
            "x5u fetches refused while the host's circuit is open.",
            stats.circuit_rejections,
        ),
    }
    families: list[Family] = [
        Counter(name, help_, {(): value}) for name, (help_, value) in counters.items()
    ]
    entries = Gauge("opensti_x5u_cache_entries", "x5u certificates cached.", {(): cache.size})
    trust = verifier.trust
    anchors = Gauge(
        "opensti_trust_anchors", "STI-CA trust anchors in use (loaded) or skipped as unusable."
    )
    anchors.set(trust.anchors_loaded, state="loaded")
    anchors.set(len(trust.anchors_skipped), state="skipped")
    return [*families, entries, anchors]


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body, or (b"", True) once it grows past :data:`MAX_BODY`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _json_body(request: STIRRequest) -> dict[str, Any]:
    if request.oversized:
        raise InvalidInput(f"request body is larger than {MAX_BODY} bytes")
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


def _json(status: int, body: dict[str, Any]) -> STIRResponse:
    return STIRResponse(status, orjson.dumps(body))


def _refusal(error: NotAuthenticated | PermissionDenied) -> STIRResponse:
    body = orjson.dumps(_refusal_body(error))
    if isinstance(error, NotAuthenticated):
        return STIRResponse(
            http_status(error), body, (*JSON_HEADERS, (b"www-authenticate", b"Bearer"))
        )
    return STIRResponse(http_status(error), body)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_stir_app(
    signer: SigningService | None = None,
    verifier: VerificationService | None = None,
    **options: Any,
) -> STIRApp:
    """Build the app; ``options`` are :class:`STIRApp`'s keywords (policy, metrics, clock,
    access)."""
    return STIRApp(signer, verifier, **options)
