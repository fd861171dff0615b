"""What a front door does with a failed verification: reject, continue, or add a Reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from opensti.core.errors import sip_response
from opensti.core.verify import VerificationResult, Verstat
from opensti.verification.fetch import FetchPolicy

if TYPE_CHECKING:
    from opensti.config import Settings

__all__ = [
    "Disposition",
    "FailurePolicy",
    "VerifyPolicy",
    "fetch_policy",
    "stir_reason_header",
    "verify_policy",
]


class FailurePolicy(StrEnum):
    """Per listener or API call, as SBCs offer it (RFC 9410 for the Reason header)."""

    #: Answer a failed call with its RFC 8224 code (403/428/436/437/438).
    REJECT = "reject"
    #: Forward every call with its verstat and nothing else.
    CONTINUE = "continue"
    #: Forward with verstat and, on failure, ``Reason: STIR;cause=...;text=...``.
    CONTINUE_WITH_REASON = "continue-with-reason"

    def decide(self, result: VerificationResult) -> Disposition:
        failed = result.error is not None and result.sip_code is not None
        if failed and self is FailurePolicy.REJECT:
            assert result.error is not None
            code, phrase = sip_response(result.error)
            return Disposition(result.verstat, reject=(code, phrase))
        if failed and self is FailurePolicy.CONTINUE_WITH_REASON:
            return Disposition(result.verstat, reason_header=stir_reason_header(result))
        return Disposition(result.verstat)


@dataclass(frozen=True, slots=True)
class Disposition:
    """The front door's action: reject with ``reject`` or forward with ``verstat``."""

    verstat: Verstat
    reject: tuple[int, str] | None = None
    reason_header: str | None = None


def stir_reason_header(result: VerificationResult) -> str | None:
    """``Reason`` value for a failed result (RFC 9410 section 5), or None when it passed."""
    if result.error is None or result.sip_code is None:
        return None
    _, phrase = sip_response(result.error)
    return f'STIR;cause={result.sip_code};text="{phrase}"'


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """The knobs of one verification service (read once from the settings)."""

    #: Freshness window for ``iat`` (and for Date when it is checked), seconds.
    max_age: int = 60
    #: Compare the SIP Date header with the clock too (only when the request has one).
    check_date: bool = False
    allow_http_x5u: bool = False
    #: x5u host patterns (fnmatch, e.g. ``*.example.net``); empty allows every host.
    x5u_allow: tuple[str, ...] = ()
    x5u_deny: tuple[str, ...] = ()
    #: Bounds on how long a validated chain is reused, and on a cached failure.
    cache_size: int = 2048
    min_ttl: float = 60.0
    max_ttl: float = 86400.0
    default_ttl: float = 3600.0
    negative_ttl: float = 10.0
    #: Consecutive failures that open a host's circuit, and how long it stays open.
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0


def fetch_policy(settings: Settings, **overrides: object) -> FetchPolicy:
    """The x5u fetcher's policy from the settings (``x5u_*``), the same for every front
    door; ``overrides`` are command-line flags."""
    options: dict[str, object] = {
        "allow_http": settings.x5u_allow_http,
        "private_hosts": settings.x5u_private_hosts,
        "deny_hosts": settings.x5u_deny_hosts,
    }
    return FetchPolicy(**{**options, **overrides})  # type: ignore[arg-type]


def verify_policy(settings: Settings) -> VerifyPolicy:
    return VerifyPolicy(allow_http_x5u=settings.x5u_allow_http, x5u_deny=settings.x5u_deny_hosts)
