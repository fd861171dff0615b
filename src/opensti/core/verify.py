"""The STI-VS decision (RFC 8224 section 6.2, ATIS-1000074) as a pure function.

Inputs are the Identity header values, the TNs from the signalling, the clock and a
``resolve`` callable that turns an x5u into a validated certificate. The caller does
the fetching beforehand (and may cache validated chains), so nothing here blocks;
``resolve`` raises :class:`BadIdentityInfo` (436) or an :class:`UnsupportedCredential`
(437) when the credential is missing or not acceptable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from opensti.core.certs import ValidatedCertificate
from opensti.core.errors import (
    BadIdentityInfo,
    CalledNumberMismatch,
    CallingNumberMismatch,
    CertificateProfileError,
    IdentityMissing,
    InvalidIdentityHeader,
    InvalidInfo,
    PassportError,
    ResultClass,
    StaleDate,
    UnsupportedPassportType,
    result_class,
    sip_response,
)
from opensti.core.identity import IdentityHeader, parse_identity
from opensti.core.passport import (
    Passport,
    ShakenClaims,
    decode_passport,
    shaken_claims,
    verify_signature,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "CredentialResolver",
    "ParsedIdentity",
    "VerificationResult",
    "Verstat",
    "parse_identities",
    "verify_identities",
]

#: ATIS-1000074 and RFC 8224: a PASSporT is fresh for 60 seconds.
DEFAULT_MAX_AGE = 60

CredentialResolver = Callable[[str], ValidatedCertificate]


class Verstat(StrEnum):
    PASSED = "TN-Validation-Passed"
    FAILED = "TN-Validation-Failed"
    NO_VALIDATION = "No-TN-Validation"


@dataclass(frozen=True, slots=True)
class VerificationResult:
    verstat: Verstat
    #: The SIP code to reject with (None when the call passes).
    sip_code: int | None
    reason: str
    result_class: ResultClass
    claims: ShakenClaims | None = None
    x5u: str | None = None
    certificate: ValidatedCertificate | None = None
    error: PassportError | None = None
    #: The verified PASSporT's payload (its extension claims, such as rcd), kept so a
    #: caller need not decode the token again.
    payload: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return self.verstat is Verstat.PASSED

    def to_dict(self) -> dict[str, Any]:
        claims = self.claims
        return {
            "verstat": self.verstat.value,
            "sip_code": self.sip_code,
            "reason": self.reason,
            "attest": claims.attest if claims else None,
            "orig": claims.orig if claims else None,
            "dest": list(claims.dest) if claims else None,
            "origid": claims.origid if claims else None,
            "iat": claims.iat if claims else None,
            "x5u": self.x5u,
        }


class _Failure(Exception):
    """Carries the claims decoded so far along with the failure."""

    def __init__(self, error: PassportError, claims: ShakenClaims | None, x5u: str | None):
        self.error, self.claims, self.x5u = error, claims, x5u


def _failed(
    error: PassportError, claims: ShakenClaims | None, x5u: str | None
) -> VerificationResult:
    code, phrase = sip_response(error)
    verstat = Verstat.NO_VALIDATION if code == 428 else Verstat.FAILED
    return VerificationResult(
        verstat=verstat,
        sip_code=code,
        reason=f"{phrase}: {error.message}",
        result_class=result_class(error),
        claims=claims,
        x5u=x5u,
        error=error,
    )


def _is_shaken(header: IdentityHeader) -> bool:
    return header.ppt is None or header.ppt == "shaken"


@dataclass(slots=True)  # Not frozen: built per call, and a frozen init costs more.
class _Checks:
    """What every PASSporT of a call is checked against, besides the TNs."""

    now: int
    max_age: int
    resolve: CredentialResolver
    allow_http_x5u: bool

    def info(self, info: str, x5u: str | None) -> None:
        """The Identity ``info`` must be the signed x5u, and https unless allowed."""
        if x5u != info:
            raise InvalidInfo("Identity info does not equal the PASSporT x5u")
        if not self.allow_http_x5u and not info.lower().startswith("https://"):
            raise BadIdentityInfo("x5u is not an https URL")

    def fresh(self, iat: int) -> None:
        age = self.now - iat
        if abs(age) > self.max_age:
            raise StaleDate(f"iat is {age} s from now (at most {self.max_age} s allowed)")

    def signed(self, passport: Passport, info: str) -> ValidatedCertificate:
        """The certificate at ``info``, valid now, whose key signed ``passport``."""
        certificate = self.resolve(info)
        if not certificate.valid_at(self.now):
            raise CertificateProfileError("certificate is not valid at this time")
        verify_signature(passport, certificate.public_key)
        return certificate


#: One parsed Identity header value, or why it did not parse.
ParsedIdentity = IdentityHeader | PassportError


def parse_identities(values: Sequence[str]) -> list[ParsedIdentity]:
    """Parse each value once; a malformed one stays in its place as its error."""
    parsed: list[ParsedIdentity] = []
    for value in values:
        try:
            parsed.append(parse_identity(value))
        except PassportError as error:
            parsed.append(error)
    return parsed


def _verify_one(
    header: IdentityHeader,
    orig_tn: str | None,
    dest_tns: Sequence[str] | None,
    checks: _Checks,
) -> VerificationResult:
    if header.is_compact:
        raise _Failure(
            InvalidIdentityHeader(
                "compact form cannot carry SHAKEN claims; the full form is required"
            ),
            None,
            header.info,
        )
    passport = decode_passport(header.token)
    # The Identity parameters mirror the signed header; a contradiction is malformed
    # (a header claiming ppt=shaken over a div PASSporT is not "unsupported").
    ppt = passport.ppt
    if header.ppt is not None and header.ppt != ppt:
        raise InvalidIdentityHeader("Identity ppt parameter does not match the PASSporT ppt")
    if header.alg is not None and header.alg != passport.header.get("alg"):
        raise InvalidIdentityHeader("Identity alg parameter does not match the PASSporT alg")
    if ppt != "shaken":
        raise UnsupportedPassportType(f"PASSporT type {ppt!r} is not verified here")
    claims = shaken_claims(passport)
    x5u = passport.x5u
    try:
        checks.info(header.info, x5u)
        checks.fresh(claims.iat)
        if orig_tn is not None and claims.orig != orig_tn:
            raise CallingNumberMismatch(
                f"orig {claims.orig} does not match the calling number {orig_tn}"
            )
        if dest_tns is not None and set(claims.dest).isdisjoint(dest_tns):
            raise CalledNumberMismatch(
                f"dest {list(claims.dest)} does not include the called number {list(dest_tns)}"
            )
        certificate = checks.signed(passport, header.info)
    except PassportError as error:
        raise _Failure(error, claims, x5u) from None
    return VerificationResult(
        verstat=Verstat.PASSED,
        sip_code=None,
        reason="verified",
        result_class=ResultClass.SUCCESS,
        claims=claims,
        x5u=x5u,
        certificate=certificate,
        payload=passport.payload,
    )


def verify_identities(
    identities: Sequence[str],
    *,
    orig_tn: str | None,
    dest_tns: Sequence[str] | None,
    now: int,
    resolve: CredentialResolver,
    max_age: int = DEFAULT_MAX_AGE,
    allow_http_x5u: bool = False,
) -> VerificationResult:
    """Verify every Identity header; the first valid SHAKEN PASSporT decides.

    ``orig_tn``/``dest_tns`` are the canonical TNs from the signalling (None skips the
    comparison). When none passes, RFC 8224 section 6.2.2 picks the answer: 436 only if
    no credential at all could be obtained, otherwise the first other failure.
    """
    checks = _Checks(now, max_age, resolve, allow_http_x5u)
    return _verify_parsed(parse_identities(identities), orig_tn, dest_tns, checks)


def _verify_parsed(
    headers: Sequence[ParsedIdentity],
    orig_tn: str | None,
    dest_tns: Sequence[str] | None,
    checks: _Checks,
) -> VerificationResult:
    """:func:`verify_identities` on headers parsed already."""
    failures: list[_Failure] = []
    unsupported: list[PassportError] = []
    for header in headers:
        if isinstance(header, PassportError):
            failures.append(_Failure(header, None, None))
            continue
        if not _is_shaken(header):
            unsupported.append(UnsupportedPassportType(f"ppt={header.ppt} is not verified"))
            continue
        try:
            return _verify_one(header, orig_tn, dest_tns, checks)
        except _Failure as failure:
            failures.append(failure)
        except UnsupportedPassportType as error:
            unsupported.append(error)
        except PassportError as error:
            failures.append(_Failure(error, None, None))
    if not failures:
        if unsupported:
            return _failed(unsupported[0], None, None)
        return _failed(IdentityMissing("the request carries no Identity header"), None, None)
    decisive = next((f for f in failures if not isinstance(f.error, BadIdentityInfo)), failures[0])
    return _failed(decisive.error, decisive.claims, decisive.x5u)
