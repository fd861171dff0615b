"""The exception hierarchy and its one set of tables (SIP, statistics, CLI, HTTP)."""

from __future__ import annotations

import inspect

import pytest

from opensti.core import errors
from opensti.core.errors import (
    BadIdentityInfo,
    CalledNumberMismatch,
    CallingNumberMismatch,
    CertificateProfileError,
    CertificateRevoked,
    ChainUntrusted,
    Conflict,
    IdentityMissing,
    InvalidCertificate,
    InvalidIdentityHeader,
    InvalidInfo,
    InvalidInput,
    InvalidKey,
    InvalidOrig,
    InvalidTN,
    InvalidTNAuthList,
    NotFound,
    OpenSTIError,
    PassportError,
    ResultClass,
    SignatureInvalid,
    StaleDate,
    UnsupportedCredential,
    UnsupportedPassportType,
    UpstreamError,
    cli_exit_code,
    http_status,
    result_class,
    sip_response,
)

EXCEPTION_CLASSES = [
    obj
    for name in errors.__all__
    if inspect.isclass(obj := getattr(errors, name)) and issubclass(obj, BaseException)
]
PASSPORT_ERRORS = [cls for cls in EXCEPTION_CLASSES if issubclass(cls, PassportError)]


def _instance(cls: type[OpenSTIError]) -> OpenSTIError:
    """One instance of any class of the module, whatever its constructor needs."""
    parameters = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self"
        and p.default is inspect.Parameter.empty
        and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    return cls(*("x" for _ in parameters))


@pytest.mark.parametrize("cls", EXCEPTION_CLASSES, ids=lambda c: c.__name__)
def test_every_exception_is_an_opensti_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, OpenSTIError)


@pytest.mark.parametrize("cls", EXCEPTION_CLASSES, ids=lambda c: c.__name__)
def test_every_exception_maps_to_an_exit_code_and_http_status(cls: type[OpenSTIError]) -> None:
    exc = _instance(cls)
    assert cli_exit_code(exc) in {1, 2, 3, 4, 5, 6}
    assert 400 <= http_status(exc) <= 599


@pytest.mark.parametrize(
    ("cls", "code", "phrase", "klass"),
    [
        (IdentityMissing, 428, "Use Identity Header", ResultClass.NO_PASSPORT),
        (UnsupportedPassportType, 428, "Use Supported PASSporT Format", ResultClass.NO_PASSPORT),
        (StaleDate, 403, "Stale Date", ResultClass.INVALID_IAT),
        (InvalidIdentityHeader, 438, "Invalid Identity Header", ResultClass.INVALID_PASSPORT),
        (InvalidInfo, 438, "Invalid Identity Header", ResultClass.INVALID_INFO),
        (InvalidOrig, 438, "Invalid Identity Header", ResultClass.INVALID_ORIG),
        (
            CallingNumberMismatch,
            438,
            "Invalid Identity Header",
            ResultClass.CALLING_NUMBER_MISMATCH,
        ),
        (
            CalledNumberMismatch,
            438,
            "Invalid Identity Header",
            ResultClass.CALLED_NUMBER_MISMATCH,
        ),
        (SignatureInvalid, 438, "Invalid Identity Header", ResultClass.SIGNATURE_FAILURE),
        (BadIdentityInfo, 436, "Bad Identity Info", ResultClass.REPOSITORY_ERROR),
        (UnsupportedCredential, 437, "Unsupported Credential", ResultClass.CERT_CHAIN_ERROR),
        (ChainUntrusted, 437, "Unsupported Credential", ResultClass.CERT_CHAIN_ERROR),
        (CertificateProfileError, 437, "Unsupported Credential", ResultClass.CERT_CHAIN_ERROR),
        (CertificateRevoked, 437, "Unsupported Credential", ResultClass.REVOKED),
    ],
)
def test_verification_failures_map_to_rfc_8224_codes(
    cls: type[PassportError], code: int, phrase: str, klass: ResultClass
) -> None:
    exc = cls("detail")
    assert sip_response(exc) == (code, phrase)
    assert result_class(exc) is klass
    assert cli_exit_code(exc) == 1


@pytest.mark.parametrize("cls", PASSPORT_ERRORS, ids=lambda c: c.__name__)
def test_every_passport_error_has_an_rfc_8224_code(cls: type[PassportError]) -> None:
    code, phrase = sip_response(cls("detail"))
    assert code in {403, 428, 436, 437, 438}
    assert phrase


def test_an_unlisted_passport_error_subclass_inherits_its_parents_codes() -> None:
    class ExpiredCredential(UnsupportedCredential):
        pass

    exc = ExpiredCredential("expired")
    assert sip_response(exc) == (437, "Unsupported Credential")
    assert result_class(exc) is ResultClass.CERT_CHAIN_ERROR


@pytest.mark.parametrize(
    ("cls", "exit_code", "status"),
    [
        (InvalidInput, 2, 400),
        (InvalidTN, 2, 400),
        (InvalidKey, 2, 400),
        (InvalidTNAuthList, 2, 400),
        (InvalidCertificate, 2, 400),
        (NotFound, 3, 404),
        (Conflict, 4, 409),
        (UpstreamError, 5, 502),
        (PassportError, 1, 400),
        (OpenSTIError, 1, 500),
    ],
)
def test_cli_exit_codes_and_http_statuses(
    cls: type[OpenSTIError], exit_code: int, status: int
) -> None:
    exc = cls("detail")
    assert cli_exit_code(exc) == exit_code
    assert http_status(exc) == status


def test_foreign_exceptions_get_the_defaults() -> None:
    assert cli_exit_code(ValueError("x")) == 1
    assert http_status(ValueError("x")) == 500


def test_message_and_value_are_kept() -> None:
    exc = InvalidTN("not a telephone number: 'abc'", value="abc")
    assert str(exc) == "not a telephone number: 'abc'"
    assert exc.message == str(exc)
    assert exc.value == "abc"
    assert InvalidTN("no value").value is None
