"""FailurePolicy: what a front door does with a verification result."""

from __future__ import annotations

import pytest

from opensti.core.errors import BadIdentityInfo, ResultClass, SignatureInvalid
from opensti.core.verify import VerificationResult, Verstat
from opensti.verification import FailurePolicy, stir_reason_header

PASSED = VerificationResult(Verstat.PASSED, None, "verified", ResultClass.SUCCESS)


def failed(error: BadIdentityInfo | SignatureInvalid, code: int) -> VerificationResult:
    return VerificationResult(Verstat.FAILED, code, error.message, ResultClass.SUCCESS, error=error)


@pytest.mark.parametrize("policy", list(FailurePolicy))
def test_a_passed_call_is_always_forwarded_plainly(policy: FailurePolicy) -> None:
    decision = policy.decide(PASSED)
    assert (decision.verstat, decision.reject, decision.reason_header) == (
        Verstat.PASSED,
        None,
        None,
    )


def test_reject_answers_with_the_rfc_8224_code() -> None:
    decision = FailurePolicy("reject").decide(failed(BadIdentityInfo("no x5u"), 436))
    assert decision.reject == (436, "Bad Identity Info")


def test_continue_forwards_with_verstat_only() -> None:
    decision = FailurePolicy("continue").decide(failed(SignatureInvalid("bad"), 438))
    assert (decision.verstat, decision.reject, decision.reason_header) == (
        Verstat.FAILED,
        None,
        None,
    )


def test_continue_with_reason_adds_an_rfc_9410_reason() -> None:
    result = failed(SignatureInvalid("bad"), 438)
    decision = FailurePolicy.CONTINUE_WITH_REASON.decide(result)
    assert decision.reject is None
    assert decision.reason_header == 'STIR;cause=438;text="Invalid Identity Header"'
    assert stir_reason_header(PASSED) is None


def test_unknown_policy_names_are_refused() -> None:
    with pytest.raises(ValueError, match="sometimes"):
        FailurePolicy("sometimes")
