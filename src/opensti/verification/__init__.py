"""STI-VS: the verification service and the I/O around the core's decision.

x5u fetching (:mod:`.fetch`), a cache of validated chains with single flight and a
per-host circuit breaker, the STI-PA trust list and CRLs, and the failure policy the
front doors apply to a result.
"""

from opensti.verification._breaker import CircuitBreaker, RepositoryUnavailable
from opensti.verification._cache import CacheInfo, TTLCache
from opensti.verification._policy import (
    Disposition,
    FailurePolicy,
    VerifyPolicy,
    fetch_policy,
    stir_reason_header,
    verify_policy,
)
from opensti.verification._service import ChainSource, VerificationService, VerifierStats
from opensti.verification._trust import (
    Fetch,
    HTTPGet,
    TrustStore,
    no_usable_anchor,
    read_anchor_path,
)
from opensti.verification.fetch import FetchPolicy, X5UFetcher

__all__ = (
    "CacheInfo",
    "ChainSource",
    "CircuitBreaker",
    "Disposition",
    "FailurePolicy",
    "Fetch",
    "FetchPolicy",
    "HTTPGet",
    "RepositoryUnavailable",
    "TTLCache",
    "TrustStore",
    "VerificationService",
    "VerifierStats",
    "VerifyPolicy",
    "X5UFetcher",
    "fetch_policy",
    "no_usable_anchor",
    "read_anchor_path",
    "stir_reason_header",
    "verify_policy",
)
