"""The STI-VS decision for a whole call: the SHAKEN PASSporT, then div and rcd.

:func:`verify_call` sorts a request's Identity headers by PASSporT type. The SHAKEN
ones go through :func:`opensti.core.verify.verify_identities` as before (its result
is always reported, as ``base``). ``div`` PASSporTs (RFC 8946) must each verify with
a certificate of their own and link into a chain from the SHAKEN dest to the called
number; the call's verstat covers the whole chain. Rich Call Data (RFC 9795), in
the SHAKEN PASSporT or in a ``rcd`` PASSporT, is checked last and apart: a failure
there hides the name and logo but leaves the TN validation as it is.

Pure, like :mod:`opensti.core.verify`: ``resolve`` turns an x5u into a validated
certificate and ``fetch`` turns a resource URL (a logo) into bytes, both raising a
:class:`PassportError` when they cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opensti.core.certs import ValidatedCertificate
from opensti.core.claim_constraints import (
    certificate_claim_constraints,
    check_claim_constraints,
)
from opensti.core.div import DIV_PPT, DivClaims, div_claims, link_div_chain
from opensti.core.errors import (
    BadIdentityInfo,
    CalledNumberMismatch,
    CallingNumberMismatch,
    CertificateProfileError,
    InvalidCertificate,
    InvalidIdentityHeader,
    PassportError,
    sip_response,
)
from opensti.core.identity import IdentityHeader
from opensti.core.passport import (
    Passport,
    ShakenClaims,
    decode_passport,
)
from opensti.core.rcd import RichCallData, check_rcdi, parse_rich_call_data
from opensti.core.verify import (
    DEFAULT_MAX_AGE,
    CredentialResolver,
    ParsedIdentity,
    VerificationResult,
    _Checks,
    _failed,
    _verify_parsed,
    parse_identities,
)

__all__ = [
    "RCD_PPT",
    "CallVerification",
    "DivLink",
    "RCDResult",
    "ResourceFetcher",
    "verify_call",
]

RCD_PPT = "rcd"
ResourceFetcher = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class DivLink:
    """One div PASSporT of the call and what became of it."""

    claims: DivClaims | None
    x5u: str | None
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        claims = self.claims
        return {
            "passed": self.passed,
            "reason": self.reason,
            "div": claims.div if claims else None,
            "orig": claims.orig if claims else None,
            "dest": list(claims.dest) if claims else None,
            "iat": claims.iat if claims else None,
            "x5u": self.x5u,
        }


@dataclass(frozen=True, slots=True)
class RCDResult:
    """The caller's name and logo, and whether they may be shown (``verified``)."""

    verified: bool
    reason: str
    sip_code: int | None = None
    data: RichCallData | None = None
    source: str = "shaken"

    @property
    def name(self) -> str | None:
        return self.data.name if self.data and self.verified else None

    @property
    def icon(self) -> str | None:
        return self.data.icon if self.data and self.verified else None

    def to_dict(self) -> dict[str, Any]:
        claims = self.data.to_dict() if self.data else {"nam": None, "icn": None, "crn": None}
        return {
            "verified": self.verified,
            "reason": self.reason,
            "sip_code": self.sip_code,
            "source": self.source,
            **claims,
        }


@dataclass(frozen=True, slots=True)
class CallVerification:
    """The call's verdict (``result``), the SHAKEN PASSporT's own (``base``), each
    div PASSporT in chain order, and the Rich Call Data."""

    result: VerificationResult
    base: VerificationResult
    divs: tuple[DivLink, ...] = ()
    rcd: RCDResult | None = None

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_dict()
        if self.divs:
            out["base"] = self.base.to_dict()
            out["div"] = [link.to_dict() for link in self.divs]
        if self.rcd is not None:
            out["rcd"] = self.rcd.to_dict()
        return out


@dataclass(slots=True)
class _Sorted:
    shaken: list[ParsedIdentity] = field(default_factory=list)
    div: list[IdentityHeader] = field(default_factory=list)
    rcd: list[IdentityHeader] = field(default_factory=list)


def _ppt_of(header: IdentityHeader) -> str | None:
    if header.ppt is not None or header.is_compact:
        return header.ppt
    try:
        return decode_passport(header.token).ppt
    except PassportError:
        return None


def _sort(identities: Sequence[str]) -> _Sorted:
    """Sort by PASSporT type, parsing each value once; what does not parse stays with
    SHAKEN, to be reported."""
    result = _Sorted()
    for header in parse_identities(identities):
        if isinstance(header, IdentityHeader):
            ppt = _ppt_of(header)
            if ppt == DIV_PPT:
                result.div.append(header)
                continue
            if ppt == RCD_PPT:
                result.rcd.append(header)
                continue
        result.shaken.append(header)
    return result


def _signed_by(header: IdentityHeader, ppt: str, iat: int, checks: _Checks) -> Passport:
    """Decode ``header`` and check what every PASSporT type shares (RFC 8224 section
    6.2): info equals x5u, freshness, a valid certificate and the signature."""
    passport = decode_passport(header.token)
    if header.ppt is not None and header.ppt != passport.ppt:
        raise InvalidIdentityHeader("Identity ppt parameter does not match the PASSporT ppt")
    if passport.ppt != ppt:
        raise InvalidIdentityHeader(f"PASSporT ppt must be {ppt!r}, not {passport.ppt!r}")
    checks.info(header.info, passport.x5u)
    checks.fresh(iat)
    certificate = checks.signed(passport, header.info)
    _check_constraints(passport.payload, certificate)
    return passport


def _check_constraints(payload: Mapping[str, Any], certificate: ValidatedCertificate) -> None:
    try:
        constraints = certificate_claim_constraints(certificate.leaf)
    except InvalidCertificate as exc:
        raise CertificateProfileError(exc.message) from None
    if constraints is not None:
        check_claim_constraints(payload, constraints)


def _iat_of(header: IdentityHeader) -> int:
    iat = decode_passport(header.token).payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise InvalidIdentityHeader(f"iat must be a JSON number of seconds, not {iat!r}")
    return iat


def _check_div(header: IdentityHeader, checks: _Checks) -> DivClaims:
    if header.is_compact:
        raise InvalidIdentityHeader("a div PASSporT must be in full form (RFC 8946 section 4)")
    claims = div_claims(decode_passport(header.token))
    _signed_by(header, DIV_PPT, claims.iat, checks)
    return claims


def _verify_divs(
    headers: Sequence[IdentityHeader],
    base: VerificationResult,
    dest_tns: Sequence[str] | None,
    checks: _Checks,
) -> tuple[VerificationResult, tuple[DivLink, ...]]:
    links: list[DivLink] = []
    verified: list[DivClaims] = []
    first_error: PassportError | None = None
    for header in headers:
        try:
            claims = _check_div(header, checks)
        except PassportError as error:
            _, phrase = sip_response(error)
            links.append(DivLink(None, header.info, False, f"{phrase}: {error.message}"))
            first_error = first_error or error
            continue
        verified.append(claims)
        links.append(DivLink(claims, header.info, True, "verified"))
    if first_error is not None:
        return _failed(first_error, base.claims, base.x5u), tuple(links)
    assert base.claims is not None
    try:
        order = link_div_chain(base.claims, verified, dest_tns)
    except PassportError as error:
        return _failed(error, base.claims, base.x5u), tuple(links)
    return replace(base, reason="verified (div chain)"), tuple(links[i] for i in order)


def _rcd_passport(
    header: IdentityHeader, claims: ShakenClaims, checks: _Checks
) -> Mapping[str, Any]:
    """A ``rcd`` PASSporT: same orig and dest as the SHAKEN one, signed and fresh."""
    passport = decode_passport(header.token)
    payload = passport.payload
    orig, dest = payload.get("orig"), payload.get("dest")
    if not isinstance(orig, dict) or orig.get("tn") != claims.orig:
        raise CallingNumberMismatch("rcd PASSporT orig is not the call's orig")
    if not isinstance(dest, dict) or not isinstance(dest.get("tn"), list):
        raise InvalidIdentityHeader("rcd PASSporT dest must be an object with a tn array")
    if not set(claims.dest) & {tn for tn in dest["tn"] if isinstance(tn, str)}:
        raise CalledNumberMismatch("rcd PASSporT dest is not the call's dest")
    _signed_by(header, RCD_PPT, _iat_of(header), checks)
    return payload


def _verify_rcd(
    payload: Mapping[str, Any],
    certificate: ValidatedCertificate | None,
    fetch: ResourceFetcher | None,
    source: str,
) -> RCDResult | None:
    try:
        data = parse_rich_call_data(payload)
        if data is None:
            return None
        if certificate is not None:
            _check_constraints(payload, certificate)
        resources: dict[str, bytes] = {}
        for pointer, url in data.urls_to_fetch().items():
            if fetch is None:
                raise BadIdentityInfo(f"rcdi {pointer}: resources are not fetched here")
            resources[pointer] = fetch(url)
        check_rcdi(data, resources)
    except PassportError as error:
        code, phrase = sip_response(error)
        return RCDResult(False, f"{phrase}: {error.message}", code, None, source)
    return RCDResult(True, "verified", None, data, source)


def _rcd_result(
    sorted_: _Sorted,
    base: VerificationResult,
    fetch: ResourceFetcher | None,
    checks: _Checks,
) -> RCDResult | None:
    if not base.passed or base.claims is None:
        if sorted_.rcd:
            return RCDResult(False, "not shown: the SHAKEN PASSporT did not verify")
        return None
    # The payload of the SHAKEN PASSporT that passed: its rcd claims, if any.
    result = _verify_rcd(base.payload or {}, base.certificate, fetch, "shaken")
    for header in sorted_.rcd:
        if result is not None and result.verified:
            break
        try:
            payload = _rcd_passport(header, base.claims, checks)
        except PassportError as error:
            code, phrase = sip_response(error)
            result = RCDResult(False, f"{phrase}: {error.message}", code, None, RCD_PPT)
            continue
        # _signed_by has checked the constraints; the rcd claims are checked next.
        result = _verify_rcd(payload, None, fetch, RCD_PPT)
    return result


def verify_call(
    identities: Sequence[str],
    *,
    orig_tn: str | None,
    dest_tns: Sequence[str] | None,
    now: int,
    resolve: CredentialResolver,
    fetch: ResourceFetcher | None = None,
    max_age: int = DEFAULT_MAX_AGE,
    allow_http_x5u: bool = False,
) -> CallVerification:
    """Verify every Identity header of a call: SHAKEN, div chain, then rcd.

    Without div PASSporTs the verdict is :func:`verify_identities`'s. With them, the
    SHAKEN PASSporT is checked without the called number (it holds the number the
    call was first placed to) and the chain must end at ``dest_tns``. ``fetch``
    gets the resources rcdi digests cover; without it such rcd is not shown.
    """
    sorted_ = _sort(identities)
    checks = _Checks(now, max_age, resolve, allow_http_x5u)
    base = _verify_parsed(sorted_.shaken, orig_tn, None if sorted_.div else dest_tns, checks)
    result, links = base, tuple[DivLink, ...]()
    if sorted_.div and base.passed:
        result, links = _verify_divs(sorted_.div, base, dest_tns, checks)
    elif sorted_.div:
        skipped = "not checked: the SHAKEN PASSporT did not verify"
        links = tuple(DivLink(None, h.info, False, skipped) for h in sorted_.div)
    rcd = _rcd_result(sorted_, result, fetch, checks)
    return CallVerification(result=result, base=base, divs=links, rcd=rcd)
