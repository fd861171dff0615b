"""The STI-VS: the core's decision with the I/O around it (x5u fetch, cache, trust).

:meth:`VerificationService.verify` runs the pure decision
(:func:`opensti.core.verify.verify_identities`) with a resolver that answers from the
cache of validated chains. The first time a header needs a credential that is not
cached, the decision stops, the chain is fetched and validated, and the decision runs
again; so the cheap checks (syntax, iat, numbers) run before any fetch, and a call
whose credential is cached never awaits anything.

Fetches go through a single flight per URL (concurrent calls for one URL share one
GET), a per-host circuit breaker, and a bounded LRU keyed by URL holding the whole
chain (leaf and intermediates) with its validation, negative entries included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import fnmatch
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from opensti.core.call import CallVerification, verify_call
from opensti.core.certs import (
    CertificateChain,
    ValidatedCertificate,
    load_certificate_chain,
    validate_shaken_certificate,
)
from opensti.core.errors import (
    BadIdentityInfo,
    InvalidCertificate,
    InvalidTN,
    PassportError,
    ResultClass,
    StaleDate,
    UnsupportedCredential,
    result_class,
    sip_response,
)
from opensti.core.tn import canonicalize_tn
from opensti.core.verify import VerificationResult, Verstat, verify_identities
from opensti.verification._breaker import CircuitBreaker
from opensti.verification._cache import CacheInfo, TTLCache
from opensti.verification._policy import VerifyPolicy
from opensti.verification._trust import TrustStore

__all__ = ["ChainSource", "ResourceSource", "VerificationService", "VerifierStats"]

Clock = Callable[[], float]

#: Identity headers looked at per call; more is an attack, not a call.
MAX_IDENTITIES = 8


class ChainSource(Protocol):
    """What the service needs from an x5u fetcher (:class:`X5UFetcher` is one)."""

    async def fetch_response(self, url: str) -> httpx.Response: ...


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One cache entry: a chain and its validation, or the failure to get either."""

    chain: CertificateChain | None = None
    certificate: ValidatedCertificate | None = None
    error: PassportError | None = None
    trust_version: int = 0


@dataclass(slots=True)
class VerifierStats:
    """Counters the metrics endpoint exposes."""

    fetches: int = 0
    fetch_errors: int = 0
    circuit_rejections: int = 0
    revalidations: int = 0
    negative_hits: int = 0
    cache: CacheInfo | None = field(default=None)


class ResourceSource(Protocol):
    """What the service needs to check rcdi digests (:class:`ResourceFetcher` is one)."""

    async def fetch(self, url: str) -> bytes: ...


class _NeedResource(Exception):
    """Stops the pure decision when an rcd resource has to be fetched first."""

    def __init__(self, url: str) -> None:
        self.url = url


class _NeedCredential(Exception):
    """Stops the pure decision when a credential has to be fetched first."""

    def __init__(self, url: str) -> None:
        self.url = url


def _max_age(headers: httpx.Headers) -> float | None:
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age":
            try:
                return max(0.0, float(int(value.strip().strip('"'))))
            except ValueError:
                return None
    return None


def _expires(headers: httpx.Headers, now: float) -> float | None:
    value = headers.get("expires")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0  # RFC 9111 5.3: an invalid Expires means already expired.
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)


def _date_epoch(date: str | int | float) -> float | None:
    if isinstance(date, int | float) and not isinstance(date, bool):
        return float(date)
    if isinstance(date, str):
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return None
    return None


def _failure(error: PassportError) -> VerificationResult:
    code, phrase = sip_response(error)
    return VerificationResult(
        verstat=Verstat.FAILED,
        sip_code=code,
        reason=f"{phrase}: {error.message}",
        result_class=result_class(error),
        error=error,
    )


def _no_validation(reason: str, kind: ResultClass) -> VerificationResult:
    return VerificationResult(
        verstat=Verstat.NO_VALIDATION, sip_code=None, reason=reason, result_class=kind
    )


class VerificationService:
    """Verifies calls' Identity headers; see :meth:`verify`."""

    def __init__(
        self,
        fetcher: ChainSource,
        trust: TrustStore,
        *,
        policy: VerifyPolicy | None = None,
        clock: Clock = time.time,
        resources: ResourceSource | None = None,
    ) -> None:
        self.policy = policy or VerifyPolicy()
        self._resources = resources
        self.trust = trust
        self._fetcher = fetcher
        self._clock = clock
        self._cache: TTLCache[_Outcome] = TTLCache(self.policy.cache_size)
        self._breaker = CircuitBreaker(self.policy.breaker_threshold, self.policy.breaker_cooldown)
        self._inflight: dict[str, asyncio.Future[_Outcome]] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._stats = VerifierStats()

    # -- the call path -------------------------------------------------------------

    async def verify(
        self,
        identities: Sequence[str],
        orig_tn: str | None,
        dest_tns: str | Sequence[str] | None,
        *,
        date: str | int | None = None,
        now: float | None = None,
    ) -> VerificationResult:
        """Verify a call's Identity header values against its calling/called numbers.

        ``orig_tn``/``dest_tns`` are numbers or tel/sip URIs from the signalling (None
        skips that comparison); a calling number that is not a TN gives
        ``No-TN-Validation``. ``date`` (the SIP Date header, text or epoch) is checked
        only when present and the policy asks. Never raises for a bad call: the
        failure is in the result, with its SIP code and result class.
        """
        prepared = self._prepare(orig_tn, dest_tns, date, now)
        if isinstance(prepared, VerificationResult):
            return prepared
        orig, dest, now = prepared
        return await self._decide(identities[:MAX_IDENTITIES], orig, dest, now)

    def verify_cached(
        self,
        identities: Sequence[str],
        orig_tn: str | None,
        dest_tns: str | Sequence[str] | None,
        *,
        date: str | int | None = None,
        now: float | None = None,
    ) -> VerificationResult | None:
        """:meth:`verify` at once when every credential it needs is cached, else None.

        The result is the one :meth:`verify` would give; None means "call
        :meth:`verify`", which fetches. Lets a caller on an event loop answer the usual
        call (a known signer) without a task, a timer or a timeout around it.
        """
        prepared = self._prepare(orig_tn, dest_tns, date, now)
        if isinstance(prepared, VerificationResult):
            return prepared
        orig, dest, now = prepared
        try:
            return self._decide_once(identities[:MAX_IDENTITIES], orig, dest, now, {}, probe=True)
        except _NeedCredential:
            return None

    def _prepare(
        self,
        orig_tn: str | None,
        dest_tns: str | Sequence[str] | None,
        date: str | int | None,
        now: float | None,
    ) -> VerificationResult | tuple[str | None, list[str] | None, float]:
        """The checks before the Identity headers: an early result, or the canonical TNs."""
        now = self._clock() if now is None else now
        if self.trust.crl_due(now):
            self._refresh_crls_soon(now)
        try:
            orig = canonicalize_tn(orig_tn) if orig_tn is not None else None
        except InvalidTN:
            return _no_validation("the calling number is not a TN", ResultClass.INVALID_ORIG)
        try:
            dest = self._dest(dest_tns)
        except InvalidTN:
            return _no_validation(
                "the called number is not a TN", ResultClass.CALLED_NUMBER_MISMATCH
            )
        if date is not None and self.policy.check_date:
            stale = self._check_date(date, now)
            if stale is not None:
                return _failure(stale)
        return orig, dest, now

    @staticmethod
    def _dest(dest_tns: str | Sequence[str] | None) -> list[str] | None:
        if dest_tns is None:
            return None
        values = [dest_tns] if isinstance(dest_tns, str) else list(dest_tns)
        return [canonicalize_tn(value) for value in values]

    def _check_date(self, date: str | int, now: float) -> StaleDate | None:
        when = _date_epoch(date)
        if when is None:
            return StaleDate(f"the Date header does not parse: {str(date)[:60]!r}")
        if abs(now - when) > self.policy.max_age:
            return StaleDate(f"the Date header is {now - when:.0f} s from now")
        return None

    async def _decide(
        self, identities: Sequence[str], orig: str | None, dest: list[str] | None, now: float
    ) -> VerificationResult:
        known: dict[str, _Outcome] = {}
        for _ in range(len(identities) + 1):
            try:
                return self._decide_once(identities, orig, dest, now, known)
            except _NeedCredential as need:
                known[need.url] = await self._outcome(need.url, now)
        raise AssertionError("each pass resolves one more URL")  # pragma: no cover

    def _decide_once(
        self,
        identities: Sequence[str],
        orig: str | None,
        dest: list[str] | None,
        now: float,
        known: dict[str, _Outcome],
        *,
        probe: bool = False,
    ) -> VerificationResult:
        """The decision with what ``known`` and the cache hold; raises
        :class:`_NeedCredential` for the first URL neither has. A ``probe`` counts no
        cache miss: :meth:`verify` follows it and counts its own."""

        return verify_identities(
            identities,
            orig_tn=orig,
            dest_tns=dest,
            now=int(now),
            resolve=self._resolver(known, now, probe),
            max_age=self.policy.max_age,
            allow_http_x5u=self.policy.allow_http_x5u,
        )

    def _resolver(
        self, known: dict[str, _Outcome], now: float, probe: bool = False
    ) -> Callable[[str], ValidatedCertificate]:
        def resolve(url: str) -> ValidatedCertificate:
            outcome = known.get(url)
            if outcome is None:
                outcome = self._cached(url, now, probe)
                if outcome is None:
                    raise _NeedCredential(url)
                known[url] = outcome
            if outcome.error is not None:
                raise outcome.error
            assert outcome.certificate is not None
            return outcome.certificate

        return resolve

    # -- whole calls: div chains and Rich Call Data ----------------------------------

    async def verify_call(
        self,
        identities: Sequence[str],
        orig_tn: str | None,
        dest_tns: str | Sequence[str] | None,
        *,
        date: str | int | None = None,
        now: float | None = None,
    ) -> CallVerification:
        """:meth:`verify` for a call that may carry div PASSporTs and rcd claims
        (:func:`opensti.core.call.verify_call`); rcd resources come from
        ``resources`` (fetched under the x5u rules, cached), if the service has one."""
        prepared = self._prepare(orig_tn, dest_tns, date, now)
        if isinstance(prepared, VerificationResult):
            return CallVerification(result=prepared, base=prepared)
        orig, dest, when = prepared
        values = identities[:MAX_IDENTITIES]
        known: dict[str, _Outcome] = {}
        fetched: dict[str, bytes | BadIdentityInfo] = {}
        resolve = self._resolver(known, when)
        fetch = self._resource_reader(fetched)
        for _ in range(2 * len(values) + 4):
            try:
                return verify_call(
                    values,
                    orig_tn=orig,
                    dest_tns=dest,
                    now=int(when),
                    resolve=resolve,
                    fetch=fetch,
                    max_age=self.policy.max_age,
                    allow_http_x5u=self.policy.allow_http_x5u,
                )
            except _NeedCredential as need:
                known[need.url] = await self._outcome(need.url, when)
            except _NeedResource as need:
                fetched[need.url] = await self._fetch_resource(need.url)
        raise AssertionError("each pass fetches one more URL")  # pragma: no cover

    def _resource_reader(
        self, fetched: dict[str, bytes | BadIdentityInfo]
    ) -> Callable[[str], bytes] | None:
        if self._resources is None:
            return None

        def read(url: str) -> bytes:
            if url not in fetched:
                raise _NeedResource(url)
            value = fetched[url]
            if isinstance(value, BadIdentityInfo):
                raise value
            return value

        return read

    async def _fetch_resource(self, url: str) -> bytes | BadIdentityInfo:
        assert self._resources is not None
        try:
            return await self._resources.fetch(url)
        except BadIdentityInfo as error:
            return error

    # -- the cache ---------------------------------------------------------------------

    def _cached(self, url: str, now: float, probe: bool = False) -> _Outcome | None:
        """The cached outcome for ``url``, checked again if the trust store changed; a
        ``probe`` counts no miss (:meth:`verify` follows it and counts its own)."""
        outcome = self._cache.peek(url, now) if probe else self._cache.get(url, now)
        if outcome is None:
            return None
        if outcome.chain is not None and outcome.trust_version != self.trust.version:
            # A new CRL or trust list: check the chain we hold again, without a fetch.
            self._stats.revalidations += 1
            outcome = self._validate(outcome.chain, now)
            self._cache.update(url, outcome)
        elif outcome.error is not None:
            self._stats.negative_hits += 1
        return outcome

    async def _outcome(self, url: str, now: float) -> _Outcome:
        pending = self._inflight.get(url)
        if pending is None:
            pending = asyncio.ensure_future(self._load(url, now))
            self._inflight[url] = pending
            pending.add_done_callback(lambda done: self._forget(url, done))
        # Shielded: a caller that gives up (its SIP transaction timed out) must not
        # cancel the fetch the other callers are waiting for.
        return await asyncio.shield(pending)

    def _forget(self, url: str, done: asyncio.Future[_Outcome]) -> None:
        if self._inflight.get(url) is done:
            del self._inflight[url]

    def _host_refusal(self, host: str) -> BadIdentityInfo | None:
        if any(fnmatch.fnmatch(host, pattern) for pattern in self.policy.x5u_deny):
            return BadIdentityInfo(f"x5u host {host} is on the deny list", value=host)
        allow = self.policy.x5u_allow
        if allow and not any(fnmatch.fnmatch(host, pattern) for pattern in allow):
            return BadIdentityInfo(f"x5u host {host} is not on the allow list", value=host)
        return None

    async def _load(self, url: str, now: float) -> _Outcome:
        host = (urlsplit(url).hostname or "").lower()
        refusal = self._host_refusal(host)
        if refusal is not None:
            return self._remember(url, _Outcome(error=refusal), now, self.policy.max_ttl)
        try:
            self._breaker.check(host, now)
        except BadIdentityInfo as error:
            self._stats.circuit_rejections += 1
            return _Outcome(error=error)
        self._stats.fetches += 1
        try:
            response = await self._fetcher.fetch_response(url)
            chain = load_certificate_chain(response.content)
        except (BadIdentityInfo, InvalidCertificate) as exc:
            self._stats.fetch_errors += 1
            self._breaker.failure(host, now)
            failure = exc if isinstance(exc, BadIdentityInfo) else BadIdentityInfo(exc.message)
            return self._remember(url, _Outcome(error=failure), now, self.policy.negative_ttl)
        self._breaker.success(host)
        outcome = self._validate(chain, now)
        ttl = self._ttl(response.headers, outcome, now)
        return self._remember(url, outcome, now, ttl)

    def _remember(self, url: str, outcome: _Outcome, now: float, ttl: float) -> _Outcome:
        self._cache.put(url, outcome, now + ttl)
        return outcome

    def _validate(self, chain: CertificateChain, now: float) -> _Outcome:
        version = self.trust.version
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        try:
            certificate = validate_shaken_certificate(chain, self.trust.context, when)
        except UnsupportedCredential as error:
            return _Outcome(chain=chain, error=error, trust_version=version)
        return _Outcome(chain=chain, certificate=certificate, trust_version=version)

    def _ttl(self, headers: httpx.Headers, outcome: _Outcome, now: float) -> float:
        """Cache-Control max-age, else Expires, clamped; never past a cert's notAfter."""
        policy = self.policy
        if outcome.certificate is None:
            return policy.negative_ttl
        asked = _max_age(headers)
        if asked is None:
            asked = _expires(headers, now)
        ttl = policy.default_ttl if asked is None else asked
        ttl = min(max(ttl, policy.min_ttl), policy.max_ttl)
        not_after = min(cert.not_valid_after_utc for cert in outcome.certificate.path)
        return max(0.0, min(ttl, not_after.timestamp() - now))

    # -- upkeep ------------------------------------------------------------------------

    def _refresh_crls_soon(self, now: float) -> None:
        if any(task.get_name() == "crl-refresh" for task in self._background):
            return
        task: asyncio.Task[object] = asyncio.ensure_future(self.trust.refresh_crls(now))
        task.set_name("crl-refresh")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def warm_up(self, urls: Iterable[str], now: float | None = None) -> dict[str, bool]:
        """Fetch and validate known x5u URLs ahead of calls; True for each one usable."""
        now = self._clock() if now is None else now
        unique = list(dict.fromkeys(urls))
        outcomes = await asyncio.gather(*(self._outcome(url, now) for url in unique))
        return {url: o.certificate is not None for url, o in zip(unique, outcomes, strict=True)}

    async def drain(self) -> None:
        """Wait for background work (CRL refreshes) to finish; for shutdown and tests."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def cache_info(self) -> CacheInfo:
        return self._cache.info()

    def cache_clear(self) -> None:
        self._cache.clear()

    def stats(self) -> VerifierStats:
        return replace(self._stats, cache=self._cache.info())

    def open_circuits(self, now: float | None = None) -> list[str]:
        return self._breaker.open_hosts(self._clock() if now is None else now)
