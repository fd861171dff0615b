"""The STI-VS decision: every failure class with its verstat, SIP code, reason and class.

RFC 8224 section 6.2 and 6.2.2 give the codes (403 Stale Date, 428, 436, 437, 438);
ATIS-1000074 the verstat values. Each test builds one Identity header that breaks
exactly one rule, signed by a real key whose certificate chains to a test root.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from opensti.core.certs import CertificateChain, TrustContext, ValidatedCertificate
from opensti.core.errors import BadIdentityInfo, ResultClass
from opensti.core.identity import format_identity
from opensti.core.passport import (
    PassportSigner,
    ShakenClaims,
    b64url_decode,
    b64url_encode,
    canonical_json,
    passport_header,
)
from opensti.core.tnauthlist import TNAUTHLIST_OID
from opensti.core.verify import VerificationResult, Verstat, verify_identities
from opensti.sandbox.pki import DemoPKI, IssuedCertificate, issue_shaken_certificate
from tests.core.core_support import (
    NOW,
    NOW_EPOCH,
    Resolver,
    chain_resolver,
    reissue,
    sign_jws,
    vector_text,
)

X5U = "https://sti-cr.example.net/1234.pem"
ORIG = "12155550121"
DEST = "12155550131"


def _claims(**changes: Any) -> dict[str, Any]:
    base = ShakenClaims(
        orig=ORIG,
        dest=(DEST,),
        iat=NOW_EPOCH,
        attest="A",
        origid="123e4567-e89b-12d3-a456-426655440000",
    ).to_payload()
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def _sign(
    key: ec.EllipticCurvePrivateKey,
    payload: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    x5u: str = X5U,
) -> str:
    """A full-form token over any header and payload (valid ES256 signature)."""
    if header is None:
        return PassportSigner(key, x5u).sign_payload(payload)
    return sign_jws(key, header, payload)


def _identity(
    token: str, info: str = X5U, *, alg: str | None = "ES256", ppt: str = "shaken"
) -> str:
    return format_identity(token, info, alg=alg, ppt=ppt)


@pytest.fixture(scope="module")
def resolve(pki: DemoPKI, signer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> Resolver:
    _, cert = signer
    chain = CertificateChain(cert, (pki.intermediate.certificate,))
    return chain_resolver(chain, TrustContext(anchors=(pki.root.certificate,)))


@pytest.fixture(scope="module")
def key(signer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> ec.EllipticCurvePrivateKey:
    return signer[0]


def _verify(
    identities: Sequence[str],
    resolve: Resolver,
    *,
    orig: str | None = ORIG,
    dest: Sequence[str] | None = (DEST,),
    now: int = NOW_EPOCH,
    **options: Any,
) -> VerificationResult:
    return verify_identities(
        identities, orig_tn=orig, dest_tns=dest, now=now, resolve=resolve, **options
    )


def _assert_failed(
    result: VerificationResult,
    code: int,
    result_class: ResultClass,
    phrase: str,
    verstat: Verstat = Verstat.FAILED,
) -> None:
    assert result.verstat is verstat
    assert result.sip_code == code
    assert result.reason.startswith(phrase + ": ")
    assert result.result_class is result_class
    assert not result.passed
    assert result.error is not None
    assert result.certificate is None


# Passing calls.


@pytest.mark.parametrize("attest", ["A", "B", "C"])
def test_valid_attestations_pass(
    attest: str, key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    result = _verify([_identity(_sign(key, _claims(attest=attest)))], resolve)
    assert result.verstat is Verstat.PASSED
    assert result.sip_code is None
    assert result.result_class is ResultClass.SUCCESS
    assert result.reason == "verified"
    assert result.claims is not None
    assert result.claims.attest == attest
    assert result.x5u == X5U
    assert result.certificate is not None
    assert result.certificate.spc == "1234"
    assert result.to_dict() == {
        "verstat": "TN-Validation-Passed",
        "sip_code": None,
        "reason": "verified",
        "attest": attest,
        "orig": ORIG,
        "dest": [DEST],
        "origid": "123e4567-e89b-12d3-a456-426655440000",
        "iat": NOW_EPOCH,
        "x5u": X5U,
    }


def test_quoted_ppt_passes(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    token = _sign(key, _claims())
    value = f'{token};info=<{X5U}>;alg=ES256;ppt="shaken"'
    assert _verify([value], resolve).passed


def test_identity_without_alg_and_ppt_params_passes(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    token = _sign(key, _claims())
    assert _verify([f"{token};info=<{X5U}>"], resolve).passed


def test_called_number_among_several_destinations(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    token = _sign(key, _claims(dest={"tn": ["12155550199", DEST]}))
    assert _verify([_identity(token)], resolve).passed


def test_no_signalling_tns_skips_the_comparison(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    token = _sign(key, _claims())
    assert _verify([_identity(token)], resolve, orig=None, dest=None).passed


@pytest.mark.parametrize("offset", [-60, 0, 60])
def test_iat_within_the_window_passes(
    offset: int, key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    token = _sign(key, _claims(iat=NOW_EPOCH + offset))
    assert _verify([_identity(token)], resolve).passed


def test_the_digest_vector_passes_at_its_own_time() -> None:
    """Section 4.2 of the spec digest, verified end to end with a pinned clock.

    Its public key is certified by a test CA (we have no private key for it), so the
    whole path runs: parse, claims, freshness, TNs, chain, profile, signature.
    """
    iat = 1443208345
    when = dt.datetime.fromtimestamp(iat, dt.UTC)
    pki = DemoPKI(now=when)
    public_key = load_pem_public_key(vector_text("identity/digest-signed-public-key.pem").encode())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    cert = issue_shaken_certificate(
        "1234",
        public_key=public_key,
        issuer=pki.intermediate,
        crl_url=pki.crl_url,
        not_before=when - dt.timedelta(days=1),
        not_after=when + dt.timedelta(days=1),
    )
    resolve = chain_resolver(
        CertificateChain(cert, (pki.intermediate.certificate,)),
        TrustContext(anchors=(pki.root.certificate,)),
        when,
    )
    value = vector_text("identity/digest-signed-identity.txt")
    result = verify_identities(
        [value], orig_tn="12155550121", dest_tns=["12155550131"], now=iat + 5, resolve=resolve
    )
    assert result.passed, result.reason
    assert result.x5u == "https://cert.example.org/passport.cer"
    # And at verification time today, the same header is stale.
    stale = verify_identities(
        [value], orig_tn="12155550121", dest_tns=["12155550131"], now=NOW_EPOCH, resolve=resolve
    )
    _assert_failed(stale, 403, ResultClass.INVALID_IAT, "Stale Date")


# 403 Stale Date.


@pytest.mark.parametrize("offset", [-61, 61, -86400], ids=["61s-old", "61s-ahead", "a-day-old"])
def test_stale_iat(offset: int, key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    token = _sign(key, _claims(iat=NOW_EPOCH + offset))
    result = _verify([_identity(token)], resolve)
    _assert_failed(result, 403, ResultClass.INVALID_IAT, "Stale Date")
    assert result.claims is not None  # the claims decoded so far are reported


def test_max_age_is_a_parameter(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    token = _sign(key, _claims(iat=NOW_EPOCH - 100))
    assert _verify([_identity(token)], resolve, max_age=120).passed
    _assert_failed(
        _verify([_identity(token)], resolve, max_age=30),
        403,
        ResultClass.INVALID_IAT,
        "Stale Date",
    )


# 438 Invalid Identity Header: the PASSporT itself.


@pytest.mark.parametrize(
    ("payload", "result_class"),
    [
        (_claims(iat=str(NOW_EPOCH)), ResultClass.INVALID_PASSPORT),
        (_claims(dest={"tn": DEST}), ResultClass.INVALID_PASSPORT),
        (_claims(orig={"tn": [ORIG]}), ResultClass.INVALID_ORIG),
        (_claims(origid=None), ResultClass.INVALID_PASSPORT),
        (_claims(attest="X"), ResultClass.INVALID_PASSPORT),
        (_claims(attest=None), ResultClass.INVALID_PASSPORT),
    ],
    ids=["iat-string", "dest-tn-string", "orig-tn-array", "no-origid", "attest-X", "no-attest"],
)
def test_malformed_claims(
    payload: dict[str, Any],
    result_class: ResultClass,
    key: ec.EllipticCurvePrivateKey,
    resolve: Resolver,
) -> None:
    result = _verify([_identity(_sign(key, payload))], resolve)
    _assert_failed(result, 438, result_class, "Invalid Identity Header")


@pytest.mark.parametrize(
    "header",
    [
        {**passport_header(X5U), "typ": "JWT"},
        {**passport_header(X5U), "alg": "ES384"},
        {k: v for k, v in passport_header(X5U).items() if k != "x5u"},
    ],
    ids=["typ-JWT", "alg-ES384", "no-x5u"],
)
def test_malformed_header(
    header: dict[str, Any], key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    result = _verify([_identity(_sign(key, _claims(), header=header))], resolve)
    _assert_failed(result, 438, ResultClass.INVALID_PASSPORT, "Invalid Identity Header")


def test_identity_ppt_that_contradicts_the_passport(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    # The Identity says shaken, the signed header says div: a malformed header, not an
    # unsupported type (RFC 8224 section 4: the ppt parameter mirrors the PASSporT's).
    header = {**passport_header(X5U), "ppt": "div"}
    result = _verify([_identity(_sign(key, _claims(), header=header))], resolve)
    _assert_failed(result, 438, ResultClass.INVALID_PASSPORT, "Invalid Identity Header")


def test_identity_alg_other_than_es256(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    result = _verify([_identity(_sign(key, _claims()), alg="RS256")], resolve)
    _assert_failed(result, 438, ResultClass.INVALID_PASSPORT, "Invalid Identity Header")


def test_garbage_identity(resolve: Resolver) -> None:
    result = _verify(["not an identity header"], resolve)
    _assert_failed(result, 438, ResultClass.INVALID_PASSPORT, "Invalid Identity Header")


def test_wrong_signature(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    token = _sign(ec.generate_private_key(ec.SECP256R1()), _claims())
    result = _verify([_identity(token)], resolve)
    _assert_failed(result, 438, ResultClass.SIGNATURE_FAILURE, "Invalid Identity Header")


def test_tampered_payload(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    header, _, signature = _sign(key, _claims()).split(".")
    forged = b64url_encode(canonical_json(_claims(attest="C")))
    result = _verify([_identity(f"{header}.{forged}.{signature}")], resolve)
    _assert_failed(result, 438, ResultClass.SIGNATURE_FAILURE, "Invalid Identity Header")


def test_compact_form_with_ppt_shaken(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    compact = ".." + _sign(key, _claims()).rsplit(".", 1)[1]
    assert len(b64url_decode(compact[2:])) == 64
    result = _verify([_identity(compact)], resolve)
    _assert_failed(result, 438, ResultClass.INVALID_PASSPORT, "Invalid Identity Header")
    assert "compact" in result.reason


# 438 with its own statistics classes: info, orig, dest.


def test_no_info(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    result = _verify([f"{_sign(key, _claims())};alg=ES256;ppt=shaken"], resolve)
    _assert_failed(result, 438, ResultClass.INVALID_INFO, "Invalid Identity Header")


def test_info_not_equal_to_x5u(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    token = _sign(key, _claims())
    result = _verify([_identity(token, info="https://other.example.net/1234.pem")], resolve)
    _assert_failed(result, 438, ResultClass.INVALID_INFO, "Invalid Identity Header")


def test_calling_number_mismatch(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    result = _verify([_identity(_sign(key, _claims()))], resolve, orig="12155550999")
    _assert_failed(result, 438, ResultClass.CALLING_NUMBER_MISMATCH, "Invalid Identity Header")
    assert result.claims is not None
    assert result.claims.orig == ORIG


def test_called_number_mismatch(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    result = _verify([_identity(_sign(key, _claims()))], resolve, dest=["12155550999"])
    _assert_failed(result, 438, ResultClass.CALLED_NUMBER_MISMATCH, "Invalid Identity Header")


# 428: nothing to verify (No-TN-Validation).


def test_no_identity_header(resolve: Resolver) -> None:
    result = _verify([], resolve)
    _assert_failed(
        result, 428, ResultClass.NO_PASSPORT, "Use Identity Header", Verstat.NO_VALIDATION
    )


def test_only_ppt_div(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    header = {**passport_header(X5U), "ppt": "div"}
    payload = {**_claims(), "div": {"tn": "12155550100"}}
    value = _identity(_sign(key, payload, header=header), ppt="div")
    result = _verify([value], resolve)
    _assert_failed(
        result, 428, ResultClass.NO_PASSPORT, "Use Supported PASSporT Format", Verstat.NO_VALIDATION
    )


def test_passport_of_another_type_without_ppt_param(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    header = {**passport_header(X5U), "ppt": "rcd"}
    token = _sign(key, _claims(), header=header)
    result = _verify([f"{token};info=<{X5U}>"], resolve)
    _assert_failed(
        result, 428, ResultClass.NO_PASSPORT, "Use Supported PASSporT Format", Verstat.NO_VALIDATION
    )


# 436 Bad Identity Info: the credential cannot be obtained.


def test_http_x5u_is_refused(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    url = "http://sti-cr.example.net/1234.pem"
    token = _sign(key, _claims(), x5u=url)
    result = _verify([_identity(token, info=url)], resolve)
    _assert_failed(result, 436, ResultClass.REPOSITORY_ERROR, "Bad Identity Info")


def test_http_x5u_is_allowed_on_request(key: ec.EllipticCurvePrivateKey, resolve: Resolver) -> None:
    url = "http://sti-cr.example.net/1234.pem"
    token = _sign(key, _claims(), x5u=url)
    assert _verify([_identity(token, info=url)], resolve, allow_http_x5u=True).passed


def _unreachable(url: str) -> ValidatedCertificate:
    raise BadIdentityInfo(f"x5u fetch from {url} timed out")


def test_resolve_raising_bad_identity_info(key: ec.EllipticCurvePrivateKey) -> None:
    result = _verify([_identity(_sign(key, _claims()))], _unreachable)
    _assert_failed(result, 436, ResultClass.REPOSITORY_ERROR, "Bad Identity Info")
    assert "timed out" in result.reason


# 437 Unsupported Credential.


def _resolver_for(
    cert: x509.Certificate, intermediates: Sequence[x509.Certificate], trust: TrustContext
) -> Resolver:
    return chain_resolver(CertificateChain(cert, tuple(intermediates)), trust)


def test_self_signed_end_entity(key: ec.EllipticCurvePrivateKey, pki: DemoPKI) -> None:
    _, good = pki.issue("1234", key=key)
    self_signed = reissue(good, IssuedCertificate(good, key))
    resolve = _resolver_for(self_signed, (), TrustContext(anchors=(pki.root.certificate,)))
    result = _verify([_identity(_sign(key, _claims()))], resolve)
    _assert_failed(result, 437, ResultClass.CERT_CHAIN_ERROR, "Unsupported Credential")


def test_other_root(key: ec.EllipticCurvePrivateKey, pki: DemoPKI) -> None:
    other = DemoPKI(now=NOW)
    _, cert = other.issue("1234", key=key)
    resolve = _resolver_for(
        cert, (other.intermediate.certificate,), TrustContext(anchors=(pki.root.certificate,))
    )
    result = _verify([_identity(_sign(key, _claims()))], resolve)
    _assert_failed(result, 437, ResultClass.CERT_CHAIN_ERROR, "Unsupported Credential")


def test_expired_end_entity(key: ec.EllipticCurvePrivateKey, pki: DemoPKI) -> None:
    _, good = pki.issue("1234", key=key)
    expired = reissue(
        good,
        pki.intermediate,
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    resolve = _resolver_for(
        expired, (pki.intermediate.certificate,), TrustContext(anchors=(pki.root.certificate,))
    )
    result = _verify([_identity(_sign(key, _claims()))], resolve)
    _assert_failed(result, 437, ResultClass.CERT_CHAIN_ERROR, "Unsupported Credential")


def test_revoked_end_entity(key: ec.EllipticCurvePrivateKey, pki: DemoPKI) -> None:
    _, cert = pki.issue("1234", key=key)
    trust = TrustContext(
        anchors=(pki.root.certificate,),
        crls=(pki.crl([cert.serial_number]),),
        crl_signers=(pki.stipa.certificate,),
    )
    resolve = _resolver_for(cert, (pki.intermediate.certificate,), trust)
    result = _verify([_identity(_sign(key, _claims()))], resolve)
    _assert_failed(result, 437, ResultClass.REVOKED, "Unsupported Credential")


def test_end_entity_without_tnauthlist(key: ec.EllipticCurvePrivateKey, pki: DemoPKI) -> None:
    _, good = pki.issue("1234", key=key)
    bare = reissue(good, pki.intermediate, drop=(x509.ObjectIdentifier(TNAUTHLIST_OID),))
    resolve = _resolver_for(
        bare, (pki.intermediate.certificate,), TrustContext(anchors=(pki.root.certificate,))
    )
    result = _verify([_identity(_sign(key, _claims()))], resolve)
    _assert_failed(result, 437, ResultClass.CERT_CHAIN_ERROR, "Unsupported Credential")
    assert "TNAuthList" in result.reason


def test_certificate_not_yet_valid_at_verification_time(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    # The resolver validated the chain at NOW; the call is verified an hour earlier.
    earlier = NOW_EPOCH - 3600
    token = _sign(key, _claims(iat=earlier))
    result = _verify([_identity(token)], resolve, now=earlier)
    _assert_failed(result, 437, ResultClass.CERT_CHAIN_ERROR, "Unsupported Credential")


def test_certificate_is_valid_through_its_last_second(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    # The resolver validated the chain at NOW; the leaf's notAfter is inclusive.
    last = int(resolve(X5U).not_after.timestamp())
    token = _sign(key, _claims(iat=last))
    assert _verify([_identity(token)], resolve, now=last).passed
    result = _verify([_identity(token)], resolve, now=last + 1)
    _assert_failed(result, 437, ResultClass.CERT_CHAIN_ERROR, "Unsupported Credential")


# Several Identity headers (RFC 8224 sections 6.2.1 and 6.2.2).


def test_one_bad_one_good_passes_in_either_order(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    good = _identity(_sign(key, _claims()))
    bad = _identity(_sign(key, _claims(iat=NOW_EPOCH - 3600)))
    for order in ([bad, good], [good, bad]):
        result = _verify(order, resolve)
        assert result.passed
        assert result.result_class is ResultClass.SUCCESS


def test_unsupported_ppt_beside_a_good_shaken_passes(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    div = _identity(_sign(key, _claims(), header={**passport_header(X5U), "ppt": "div"}), ppt="div")
    assert _verify([div, _identity(_sign(key, _claims()))], resolve).passed


def _per_url(failing: set[str], resolve: Resolver) -> Resolver:
    def resolver(url: str) -> ValidatedCertificate:
        if url in failing:
            raise BadIdentityInfo(f"cannot fetch {url}")
        return resolve(url)

    return resolver


def _identity_at(key: ec.EllipticCurvePrivateKey, url: str, **changes: Any) -> str:
    return _identity(_sign(key, _claims(**changes), x5u=url), info=url)


def test_436_only_when_every_credential_failed(
    key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    a, b = "https://a.example.net/x.pem", "https://b.example.net/x.pem"
    resolver = _per_url({a, b}, resolve)
    both = _verify([_identity_at(key, a), _identity_at(key, b)], resolver)
    _assert_failed(both, 436, ResultClass.REPOSITORY_ERROR, "Bad Identity Info")


@pytest.mark.parametrize("first_436", [True, False])
def test_any_other_failure_beats_436(
    first_436: bool, key: ec.EllipticCurvePrivateKey, resolve: Resolver
) -> None:
    a, b = "https://a.example.net/x.pem", "https://b.example.net/x.pem"
    resolver = _per_url({a}, resolve)
    unreachable = _identity_at(key, a)
    mismatched = _identity_at(key, b, orig={"tn": "12155550999"})
    order = [unreachable, mismatched] if first_436 else [mismatched, unreachable]
    result = _verify(order, resolver)
    _assert_failed(result, 438, ResultClass.CALLING_NUMBER_MISMATCH, "Invalid Identity Header")


def test_two_failures_without_436_report_the_first(
    key: ec.EllipticCurvePrivateKey, pki: DemoPKI, resolve: Resolver
) -> None:
    stale = _identity(_sign(key, _claims(iat=NOW_EPOCH - 3600)))
    forged = _identity(_sign(ec.generate_private_key(ec.SECP256R1()), _claims()))
    _assert_failed(_verify([stale, forged], resolve), 403, ResultClass.INVALID_IAT, "Stale Date")
    _assert_failed(
        _verify([forged, stale], resolve),
        438,
        ResultClass.SIGNATURE_FAILURE,
        "Invalid Identity Header",
    )


# A public non-conformant PASSporT (libstirshaken test/ref/sp/passport.txt).


@pytest.mark.parametrize("allow_http_x5u", [False, True])
def test_libstirshaken_vector_fails(allow_http_x5u: bool, resolve: Resolver) -> None:
    value = vector_text("identity/libstirshaken-nonconformant-identity.txt")
    iat = 1603458131
    result = verify_identities(
        [value],
        orig_tn=None,
        dest_tns=None,
        now=iat,
        resolve=resolve,
        allow_http_x5u=allow_http_x5u,
    )
    _assert_failed(result, 438, ResultClass.INVALID_ORIG, "Invalid Identity Header")
