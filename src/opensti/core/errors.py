"""The one exception hierarchy of opensti, and where each class maps to a code.

    OpenSTIError
     +-- InvalidInput                  bad input from a user or a config (CLI exit 2, HTTP 400)
     |    +-- InvalidTN                  not a telephone number
     |    +-- InvalidKey                 not a usable EC P-256 private key
     |    +-- InvalidTNAuthList          TNAuthList DER or ACME value that does not parse
     |    +-- InvalidCertificate         PEM/DER that is not a certificate, chain or CRL
     |    +-- InvalidSPCToken            an SPC token that is malformed, untrusted or not ours
     |    +-- SIPParseError              bytes that are not a well-formed SIP message (SIP 400)
     +-- NotFound                      a named object does not exist (CLI exit 3, HTTP 404)
     |    +-- NoSigningEntry             no signing entry covers this call            SIP 500
     +-- Conflict                      the object exists or is in the wrong state (HTTP 409)
     |    +-- NoActiveCertificate        the signing entry has no active certificate  SIP 500
     |    +-- LeaseLost                  another worker took over an entry mid-work
     +-- NotAuthenticated              no credential, or one we do not accept (HTTP 401)
     +-- PermissionDenied              a valid credential whose role may not do this (HTTP 403)
     +-- StoreUnavailable              the database cannot be written or read (HTTP 503, exit 6)
     +-- UpstreamError                 a remote service failed or refused (HTTP 502)
     |    +-- ServiceUnreachable         no answer at all (connection, TLS, timeout)
     |    +-- AcmeProblem                the CA answered with an RFC 7807 problem document
     |    +-- StiPaRefused               the STI-PA answered with an error
     |    +-- DeliveryFailed             a deployment task or an email did not get through
     +-- PassportError                 one STI-VS verification failure; carries the SIP code
          +-- IdentityMissing            no Identity header at all                    428
          +-- UnsupportedPassportType    only ppt values we do not verify             428
          +-- StaleDate                  iat outside the freshness window             403
          +-- InvalidIdentityHeader      malformed header or PASSporT                 438
          |    +-- InvalidInfo             info missing, not a URI, or not equal to x5u
          |    +-- InvalidOrig             orig claim that is not a TN
          |    +-- CallingNumberMismatch   orig != the signalling's calling TN
          |    +-- CalledNumberMismatch    the called TN is not in dest
          |    +-- SignatureInvalid        ES256 signature does not verify
     |    +-- DivChainBroken          a div PASSporT that does not chain (RFC 8946)
     |    +-- RCDIntegrityFailed      rcd claims or resources fail rcdi (RFC 9795)
     |    +-- ClaimNotPermitted       claims the cert's JWT Claim Constraints forbid
          +-- BadIdentityInfo            x5u could not be fetched or parsed           436
          +-- UnsupportedCredential      the certificate is not acceptable            437
               +-- ChainUntrusted          no path to an STI-PA trust anchor
               +-- CertificateProfileError not a SHAKEN certificate (ATIS-1000080)
               +-- CertificateRevoked      listed on the STI-PA CRL

The tables at the end of this module are the only place that turns a class into a
SIP response, a CLI exit code or an HTTP status: front doors look codes up here.
Verification failures map with :func:`sip_response` (RFC 8224 codes); everything else
a SIP front door must answer with (the STI-AS cannot sign, bad input) maps with
:func:`sip_service_response`: a 500-class code for a service that cannot do its job,
so the SBC fails over or sends the call on unsigned, never a 4xx blaming the caller.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = [
    "AcmeProblem",
    "BadIdentityInfo",
    "CalledNumberMismatch",
    "CallingNumberMismatch",
    "CertificateProfileError",
    "CertificateRevoked",
    "ChainUntrusted",
    "ClaimNotPermitted",
    "Conflict",
    "DeliveryFailed",
    "DivChainBroken",
    "IdentityMissing",
    "InvalidCertificate",
    "InvalidIdentityHeader",
    "InvalidInfo",
    "InvalidInput",
    "InvalidKey",
    "InvalidOrig",
    "InvalidSPCToken",
    "InvalidTN",
    "InvalidTNAuthList",
    "LeaseLost",
    "NoActiveCertificate",
    "NoSigningEntry",
    "NotAuthenticated",
    "NotFound",
    "OpenSTIError",
    "PassportError",
    "PermissionDenied",
    "RCDIntegrityFailed",
    "ResultClass",
    "SIPParseError",
    "ServiceUnreachable",
    "SignatureInvalid",
    "StaleDate",
    "StiPaRefused",
    "StoreUnavailable",
    "UnsupportedCredential",
    "UnsupportedPassportType",
    "UpstreamError",
    "cli_exit_code",
    "http_status",
    "result_class",
    "sip_response",
    "sip_service_response",
]


class OpenSTIError(Exception):
    """Root of every error opensti raises on purpose."""

    def __init__(self, message: str, *, value: object = None) -> None:
        super().__init__(message)
        self.message = message
        #: The offending input, kept for logs and tests (never a secret).
        self.value = value

    def __str__(self) -> str:
        return self.message


class InvalidInput(OpenSTIError):
    """Input that cannot be used, whatever the network does."""


class InvalidTN(InvalidInput):
    pass


class InvalidKey(InvalidInput):
    pass


class InvalidTNAuthList(InvalidInput):
    pass


class InvalidCertificate(InvalidInput):
    pass


class InvalidSPCToken(InvalidInput):
    """An SPC token (RFC 9448) that cannot be used for this SPC and account."""


class SIPParseError(InvalidInput):
    """A SIP message that breaks RFC 3261 framing or syntax, or our size bounds."""


class NotFound(OpenSTIError):
    pass


class NoSigningEntry(NotFound):
    """No signing entry was named or matches the calling number, and none is the default."""


class Conflict(OpenSTIError):
    pass


class NoActiveCertificate(Conflict):
    """The chosen signing entry exists but has no active certificate to sign with."""


class LeaseLost(Conflict):
    """The worker's lease on an entry expired or changed hands: it must stop there."""


class NotAuthenticated(OpenSTIError):
    """A request without a credential, or with one that is unknown, revoked or expired."""


class PermissionDenied(OpenSTIError):
    """The credential is valid but its role does not allow the operation."""


class StoreUnavailable(OpenSTIError):
    """The database refuses the work: read-only, full, corrupt or unreachable."""


class UpstreamError(OpenSTIError):
    """A remote party (CA, STI-PA, repository) failed or refused."""


class ServiceUnreachable(UpstreamError):
    """The remote service could not be reached (DNS, connection, TLS or timeout)."""


class AcmeProblem(UpstreamError):
    """An ACME server refused a request with a problem document (RFC 8555 section 6.7)."""

    def __init__(self, problem_type: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(f"CA refused: {problem_type}: {detail}", value=problem_type)
        self.problem_type = problem_type
        self.detail = detail
        self.status = status


class StiPaRefused(UpstreamError):
    """The STI-PA answered a request with an error status or ``status != "success"``."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, value=status)
        self.status = status


class DeliveryFailed(UpstreamError):
    """Handing a certificate or a message on failed: a deployment script, webhook or SMTP."""


class PassportError(OpenSTIError):
    """A verification failure: the call's Identity is not valid."""


class IdentityMissing(PassportError):
    pass


class UnsupportedPassportType(PassportError):
    pass


class StaleDate(PassportError):
    pass


class InvalidIdentityHeader(PassportError):
    pass


class InvalidInfo(InvalidIdentityHeader):
    pass


class InvalidOrig(InvalidIdentityHeader):
    pass


class CallingNumberMismatch(InvalidIdentityHeader):
    pass


class CalledNumberMismatch(InvalidIdentityHeader):
    pass


class SignatureInvalid(InvalidIdentityHeader):
    pass


class DivChainBroken(InvalidIdentityHeader):
    """A div PASSporT whose div, orig or dest does not link the call's PASSporTs."""


class RCDIntegrityFailed(InvalidIdentityHeader):
    """An rcd claim or a resource it points to that does not match its rcdi digest."""


class ClaimNotPermitted(InvalidIdentityHeader):
    """Claims the signing certificate's JWT Claim Constraints do not permit."""


class BadIdentityInfo(PassportError):
    pass


class UnsupportedCredential(PassportError):
    pass


class ChainUntrusted(UnsupportedCredential):
    pass


class CertificateProfileError(UnsupportedCredential):
    pass


class CertificateRevoked(UnsupportedCredential):
    pass


class ResultClass(StrEnum):
    """Verification outcomes as operators count them in statistics."""

    SUCCESS = "success"
    NO_PASSPORT = "no-passport"
    CERT_CHAIN_ERROR = "cert-chain-error"
    CALLED_NUMBER_MISMATCH = "called-number-mismatch"
    CALLING_NUMBER_MISMATCH = "calling-number-mismatch"
    INVALID_INFO = "invalid-info-parameter"
    REPOSITORY_ERROR = "repository-error"
    INVALID_IAT = "invalid-iat"
    INVALID_ORIG = "invalid-orig"
    SIGNATURE_FAILURE = "signature-failure"
    REVOKED = "revoked"
    INVALID_PASSPORT = "invalid-passport"
    DIV_CHAIN_BROKEN = "div-chain-broken"
    RCD_INTEGRITY = "rcd-integrity-failure"
    CLAIM_NOT_PERMITTED = "claim-not-permitted"


# The three tables below are looked up along the class's MRO, most specific first.

_SIP_RESPONSES: dict[type[PassportError], tuple[int, str]] = {
    IdentityMissing: (428, "Use Identity Header"),
    UnsupportedPassportType: (428, "Use Supported PASSporT Format"),
    StaleDate: (403, "Stale Date"),
    InvalidIdentityHeader: (438, "Invalid Identity Header"),
    BadIdentityInfo: (436, "Bad Identity Info"),
    UnsupportedCredential: (437, "Unsupported Credential"),
}

#: SIP answers for errors that are not verification failures (the service cannot act).
_SIP_SERVICE_RESPONSES: dict[type[OpenSTIError], tuple[int, str]] = {
    OpenSTIError: (500, "Server Internal Error"),
    InvalidInput: (400, "Bad Request"),
    NoSigningEntry: (500, "No Signing Entry"),
    NoActiveCertificate: (500, "No Active Certificate"),
    UpstreamError: (503, "Service Unavailable"),
}

_RESULT_CLASSES: dict[type[PassportError], ResultClass] = {
    IdentityMissing: ResultClass.NO_PASSPORT,
    UnsupportedPassportType: ResultClass.NO_PASSPORT,
    StaleDate: ResultClass.INVALID_IAT,
    InvalidIdentityHeader: ResultClass.INVALID_PASSPORT,
    InvalidInfo: ResultClass.INVALID_INFO,
    InvalidOrig: ResultClass.INVALID_ORIG,
    CallingNumberMismatch: ResultClass.CALLING_NUMBER_MISMATCH,
    CalledNumberMismatch: ResultClass.CALLED_NUMBER_MISMATCH,
    SignatureInvalid: ResultClass.SIGNATURE_FAILURE,
    DivChainBroken: ResultClass.DIV_CHAIN_BROKEN,
    RCDIntegrityFailed: ResultClass.RCD_INTEGRITY,
    ClaimNotPermitted: ResultClass.CLAIM_NOT_PERMITTED,
    BadIdentityInfo: ResultClass.REPOSITORY_ERROR,
    UnsupportedCredential: ResultClass.CERT_CHAIN_ERROR,
    CertificateRevoked: ResultClass.REVOKED,
}

#: CLI exit codes: 0 success, 1 a verification that failed, 2 unusable input.
_CLI_EXIT_CODES: dict[type[OpenSTIError], int] = {
    OpenSTIError: 1,
    PassportError: 1,
    InvalidInput: 2,
    NotFound: 3,
    Conflict: 4,
    UpstreamError: 5,
    StoreUnavailable: 6,
}

_HTTP_STATUSES: dict[type[OpenSTIError], int] = {
    OpenSTIError: 500,
    InvalidInput: 400,
    PassportError: 400,
    NotFound: 404,
    Conflict: 409,
    NotAuthenticated: 401,
    PermissionDenied: 403,
    UpstreamError: 502,
    StoreUnavailable: 503,
}


_V = TypeVar("_V")


def _lookup(table: dict[type, _V], exc: BaseException, default: _V) -> _V:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default


def sip_response(exc: PassportError) -> tuple[int, str]:
    """The SIP status code and reason phrase RFC 8224 section 6.2.2 gives this failure."""
    return _lookup(_SIP_RESPONSES, exc, (438, "Invalid Identity Header"))


def sip_service_response(exc: BaseException) -> tuple[int, str]:
    """The SIP status and phrase for an error that is not a verification failure."""
    return _lookup(_SIP_SERVICE_RESPONSES, exc, (500, "Server Internal Error"))


def result_class(exc: PassportError) -> ResultClass:
    return _lookup(_RESULT_CLASSES, exc, ResultClass.INVALID_PASSPORT)


def cli_exit_code(exc: BaseException) -> int:
    return _lookup(_CLI_EXIT_CODES, exc, 1)


def http_status(exc: BaseException) -> int:
    return _lookup(_HTTP_STATUSES, exc, 500)
