"""The simplified request bodies of Comcast's vesper, accepted on the ATIS-1000082 paths.

An SBC configured for vesper posts the PASSporT claims at the top level instead of
inside ``signingRequest``/``verificationRequest`` (see Comcast/vesper, ``APIs.md`` and
``src/vesper/shaken.go``'s ``validatePayload``):

    POST /stir/v1/signing       {"attest": "A", "dest": {"tn": ["1215..."]},
                                 "iat": 1504282247, "orig": {"tn": "1215..."},
                                 "origid": "..."}
      200 {"signingResponse": {"identity": "..."}}
      4xx {"signingResponse": {"reasonCode": ..., "reasonString": ...}}
    POST /stir/v1/verification  {"identity": "...", "orig": {"tn": ["1215..."]},
                                 "dest": {"tn": ["1215..."]}, "iat": 1504282247}
      200 {"verificationResponse": {"orig": ..., "dest": ..., "iat": ...,
                                    "jwt": {"header": ..., "claims": ...}}}
      4xx {"verificationResponse": {"reasonCode": ..., "reasonString": ...}}

Such a request is answered in vesper's shape (errors included, under the same
wrapper), so an SBC built for vesper can switch; the ATIS-1000082 shape stays the
documented one. Our answers add ``verstat``; the reason codes are ours (the RFC 8224
SIP code, or the error's type), not vesper's ``VESPER-nnnn`` numbers. A verification
that does not pass answers 400 as vesper does (401 for a bad signature), with the
verstat and the SIP code to reject with.
"""

from __future__ import annotations

from typing import Any

from opensti.core.errors import (
    InvalidInput,
    OpenSTIError,
    ResultClass,
    http_status,
    sip_response,
)
from opensti.core.passport import decode_passport
from opensti.core.verify import VerificationResult

__all__ = [
    "SIGNING",
    "VERIFICATION",
    "VesperAnswer",
    "is_vesper",
    "signing_request",
    "verification_answer",
    "verification_request",
]

SIGNING = "signingResponse"
VERIFICATION = "verificationResponse"
#: vesper answers a signature that does not verify with 401, other failures with 400.
_UNAUTHORIZED = frozenset({ResultClass.SIGNATURE_FAILURE})


class VesperAnswer(OpenSTIError):
    """A vesper-shaped answer other than 200: its HTTP status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__("vesper-shaped answer")
        self.status = status
        self.body = body

    @classmethod
    def of(cls, error: OpenSTIError, wrapper: str) -> VesperAnswer:
        reason = {"reasonCode": type(error).__name__, "reasonString": error.message}
        return cls(http_status(error), {wrapper: reason})


def is_vesper(body: dict[str, Any], wrapper: str) -> bool:
    """A body without the ATIS wrapper object but with vesper's top-level ``orig``."""
    return wrapper not in body and "orig" in body


def signing_request(body: dict[str, Any]) -> dict[str, Any]:
    """vesper's signing body is the ATIS ``signingRequest`` object itself."""
    return body


def verification_request(body: dict[str, Any]) -> dict[str, Any]:
    """vesper's verification body as an ATIS ``verificationRequest``: ``orig`` is the
    caller (``from``), ``dest`` the called (``to``), ``iat`` the time of the request."""
    if not isinstance(body.get("identity"), str):
        raise InvalidInput("identity must be an Identity header value")
    return {
        "identity": body["identity"],
        "from": body.get("orig"),
        "to": body.get("dest"),
        "time": body.get("iat"),
    }


def verification_answer(result: VerificationResult, request: dict[str, Any]) -> dict[str, Any]:
    """The 200 body of a call that passed; raises :class:`VesperAnswer` otherwise."""
    if result.error is not None or not result.passed:
        code, phrase = sip_response(result.error) if result.error else (None, result.reason)
        status = 401 if result.result_class in _UNAUTHORIZED else 400
        reason = {"reasonCode": code, "reasonString": phrase, "verstat": result.verstat.value}
        raise VesperAnswer(status, {VERIFICATION: reason})
    passport = decode_passport(request["identity"].split(";", 1)[0].strip())
    return {
        VERIFICATION: {
            "verstat": result.verstat.value,
            "orig": request["from"],
            "dest": request["to"],
            "iat": request["time"],
            "jwt": {"header": passport.header, "claims": passport.payload},
        }
    }
