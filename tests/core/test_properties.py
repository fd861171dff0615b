"""Property tests: parsers give a result or an OpenSTIError for any input, and
signing then verifying any valid claims passes."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opensti.core.certs import (
    CertificateChain,
    TrustContext,
    ValidatedCertificate,
    validate_shaken_certificate,
)
from opensti.core.errors import OpenSTIError
from opensti.core.identity import format_identity, parse_identity
from opensti.core.passport import (
    ShakenClaims,
    b64url_decode,
    b64url_encode,
    canonical_json,
    decode_passport,
    sign_passport,
)
from opensti.core.tn import MAX_TN_DIGITS, canonicalize_tn
from opensti.core.tnauthlist import TNAuthList
from opensti.core.verify import VerificationResult, Verstat, verify_identities
from opensti.sandbox.pki import DemoPKI, issue_shaken_certificate
from tests.core.core_support import NOW, NOW_EPOCH, sign_jws

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
X5U = "https://sti-cr.example.net/1234.pem"

# Text that looks like what the parsers expect, mixed with anything at all.
_IDENTITY_ALPHABET = st.sampled_from(
    [*"abcXYZ019-_.;=<>\"' \t\r\n:/@+*#()", "info", "ppt", "alg", "shaken", "https://"]
)
identity_like = st.one_of(
    st.text(),
    st.lists(_IDENTITY_ALPHABET, max_size=60).map("".join),
)
tn_like = st.one_of(
    st.text(),
    st.lists(
        st.sampled_from([*"0123456789+-.() #*;=@<>", "tel:", "sip:", "user=phone"]),
        max_size=30,
    ).map("".join),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


@FAST
@given(identity_like)
def test_parse_identity_never_crashes(value: str) -> None:
    try:
        header = parse_identity(value)
    except OpenSTIError:
        return
    assert header.token.count(".") == 2
    assert header.info


@FAST
@given(tn_like, st.booleans())
def test_canonicalize_tn_never_crashes(value: str, nanp: bool) -> None:
    try:
        tn = canonicalize_tn(value, nanp=nanp)
    except OpenSTIError:
        return
    assert 1 <= len(tn) <= MAX_TN_DIGITS
    assert all(ch in "0123456789#*" for ch in tn)
    # Canonical is a fixed point.
    assert canonicalize_tn(tn, nanp=False) == tn


@FAST
@given(st.binary(max_size=200))
def test_tnauthlist_from_der_never_crashes(data: bytes) -> None:
    try:
        tnauthlist = TNAuthList.from_der(data)
    except OpenSTIError:
        return
    assert TNAuthList.from_der(tnauthlist.to_der()) == tnauthlist


@FAST
@given(st.text(max_size=200))
def test_tnauthlist_from_acme_value_never_crashes(value: str) -> None:
    try:
        TNAuthList.from_acme_value(value)
    except OpenSTIError:
        return


@FAST
@given(identity_like)
def test_decode_passport_never_crashes(value: str) -> None:
    try:
        decode_passport(value)
    except OpenSTIError:
        return


@FAST
@given(json_values, json_values)
def test_decode_passport_of_any_json_never_crashes(header: Any, payload: Any) -> None:
    token = ".".join(b64url_encode(json.dumps(v).encode()) for v in (header, payload))
    try:
        decode_passport(token + ".AAAA")
    except OpenSTIError:
        return


@FAST
@given(st.text(alphabet="AQZaqz09-_ !.\u00e9", max_size=24))
def test_b64url_decode_is_urlsafe_b64decode_of_unpadded_text(text: str) -> None:
    def outcome(decode: Callable[[str], bytes], value: str) -> bytes | type[ValueError]:
        try:
            return decode(value)
        except ValueError:
            return ValueError

    padded = text + "=" * (-len(text) % 4)
    assert outcome(b64url_decode, text) == outcome(base64.urlsafe_b64decode, padded)


@FAST
@given(json_values, st.sampled_from(["utf-8", "utf-8-sig", "utf-16-le", "utf-16", "utf-32"]))
def test_a_payload_decodes_as_json_loads_reads_it(value: Any, encoding: str) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode(encoding)
    token = f"e30.{b64url_encode(raw)}.AAAA"
    if isinstance(value, dict):
        assert decode_passport(token).payload == json.loads(raw)
    else:
        with pytest.raises(OpenSTIError):
            decode_passport(token)


@pytest.fixture(scope="module")
def credential() -> tuple[ec.EllipticCurvePrivateKey, ValidatedCertificate]:
    """A key whose certificate is valid for every iat a PASSporT can carry here."""
    pki = DemoPKI(now=NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_shaken_certificate(
        "1234",
        public_key=key.public_key(),
        issuer=pki.intermediate,
        crl_url=pki.crl_url,
        not_before=dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
    )
    chain = CertificateChain(cert, (pki.intermediate.certificate,))
    validated = validate_shaken_certificate(
        chain, TrustContext(anchors=(pki.root.certificate,)), NOW
    )
    return key, validated


def _verify(
    identities: list[str], validated: ValidatedCertificate, **kwargs: Any
) -> VerificationResult:
    options: dict[str, Any] = {"orig_tn": None, "dest_tns": None, "now": NOW_EPOCH}
    return verify_identities(identities, resolve=lambda url: validated, **{**options, **kwargs})


@FAST
@given(st.lists(identity_like, max_size=3))
def test_verify_identities_never_crashes_on_text(
    credential: tuple[ec.EllipticCurvePrivateKey, ValidatedCertificate], values: list[str]
) -> None:
    result = _verify(values, credential[1])
    assert result.verstat in (Verstat.FAILED, Verstat.NO_VALIDATION)


_CLAIM_NAMES = ("attest", "dest", "iat", "orig", "origid")


@FAST
@given(
    st.dictionaries(st.sampled_from(_CLAIM_NAMES), json_values, max_size=5),
    st.dictionaries(st.sampled_from(("alg", "ppt", "typ", "x5u")), json_values, max_size=2),
)
def test_verify_identities_never_crashes_on_signed_garbage(
    credential: tuple[ec.EllipticCurvePrivateKey, ValidatedCertificate],
    claims: dict[str, Any],
    header_changes: dict[str, Any],
) -> None:
    """Correctly signed PASSporTs whose claims and header have any JSON values."""
    key, validated = credential
    payload = {**_valid_payload(), **claims}
    header = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U, **header_changes}
    token = sign_jws(key, header, payload)
    result = _verify([format_identity(token, X5U)], validated, orig_tn="12155550121")
    assert isinstance(result, VerificationResult)


def _valid_payload() -> dict[str, Any]:
    return ShakenClaims(
        orig="12155550121", dest=("12155550131",), iat=NOW_EPOCH, attest="A", origid="x"
    ).to_payload()


tns = st.from_regex(r"[0-9#*]{1,15}", fullmatch=True)
#: Every second a certificate can be valid at (x509 times end in 9999).
iats = st.integers(min_value=0, max_value=253402300799)


@FAST
@given(
    orig=tns,
    dest=st.lists(tns, min_size=1, max_size=3),
    attest=st.sampled_from(["A", "B", "C"]),
    origid=st.text(min_size=1, max_size=60),
    iat=iats,
)
def test_sign_then_verify_round_trips(
    credential: tuple[ec.EllipticCurvePrivateKey, ValidatedCertificate],
    orig: str,
    dest: list[str],
    attest: str,
    origid: str,
    iat: int,
) -> None:
    key, validated = credential
    claims = ShakenClaims(orig=orig, dest=tuple(dest), iat=iat, attest=attest, origid=origid)
    value = format_identity(sign_passport(claims, key=key, x5u=X5U), X5U)
    result = _verify([value], validated, orig_tn=orig, dest_tns=[dest[-1]], now=iat)
    assert result.passed, result.reason
    assert result.claims == claims
    assert parse_identity(value).info == X5U


def test_the_round_trip_certificate_covers_the_iat_range(
    credential: tuple[ec.EllipticCurvePrivateKey, ValidatedCertificate],
) -> None:
    _, validated = credential
    assert validated.not_before.timestamp() == 0
    assert isinstance(validated.leaf, x509.Certificate)


def _parsed(value: str) -> object:
    try:
        return parse_identity(value)
    except OpenSTIError as exc:
        return type(exc), exc.message


_segment = st.text("abXY09-_", max_size=8)
#: ``digest;info=<uri>[;alg=..][;ppt=..]`` with odd pieces now and then.
usual_identity = st.builds(
    "{}.{}.{}{};info=<{}>{}{}".format,
    _segment,
    _segment,
    st.text("abXY09-_", min_size=1, max_size=8),
    st.sampled_from(["", "", "", ".x", " "]),
    st.sampled_from(
        ["https://cr.example/a.pem", "http://h/c", "x:y", "1a:b", "https://a/b c", 'h:"', "h:é"]
    ),
    st.sampled_from(["", ";alg=ES256", ";alg=", ';alg="ES256"', ";ALG=ES256", ";alg=<x>"]),
    st.sampled_from(["", ";ppt=shaken", ";ppt=div", ";ppt", ";ppt=a;ppt=b", ";x=1", "; ppt=x"]),
)


@FAST
@given(identity_like | usual_identity)
def test_surrounding_whitespace_does_not_change_an_identity(value: str) -> None:
    """The usual spelling is parsed by one match, any other by the scanner: a leading
    space sends a value down the scanner, which must agree."""
    parsed = _parsed(value)
    if not isinstance(parsed, tuple) or parsed[1] != "Identity header is too long":
        assert _parsed(" " + value + "\t") == parsed


@FAST
@given(
    st.text(max_size=20),
    st.lists(st.text(max_size=16), max_size=3),
    st.one_of(st.integers(min_value=0, max_value=2**53), st.booleans()),
    st.text(max_size=3),
    st.text(max_size=40),
)
def test_claims_json_is_the_canonical_json_of_the_payload(
    orig: str, dest: list[str], iat: int, attest: str, origid: str
) -> None:
    claims = ShakenClaims(orig=orig, dest=tuple(dest), iat=iat, attest=attest, origid=origid)
    assert claims.to_json() == canonical_json(claims.to_payload())


@FAST
@given(st.text("0123456789", min_size=1, max_size=20), st.booleans())
def test_a_number_in_digits_is_canonicalized_as_its_tel_uri(digits: str, nanp: bool) -> None:
    def canonical(value: str) -> object:
        try:
            return canonicalize_tn(value, nanp=nanp)
        except OpenSTIError as exc:
            return type(exc)

    assert canonical(digits) == canonical(f"tel:{digits}")
