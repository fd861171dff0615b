"""PASSporT (RFC 8225) with the SHAKEN extension (RFC 8588): JSON, ES256, both forms."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from hypothesis import given
from hypothesis import strategies as st

from opensti.core.errors import InvalidIdentityHeader, InvalidKey, InvalidOrig, SignatureInvalid
from opensti.core.identity import parse_identity
from opensti.core.passport import (
    Passport,
    PassportSigner,
    ShakenClaims,
    b64url_decode,
    b64url_encode,
    canonical_json,
    decode_passport,
    load_private_key,
    passport_header,
    reconstruct_compact,
    shaken_claims,
    sign_passport,
    verify_signature,
)
from opensti.sandbox.pki import new_key, private_key_pem
from tests.core.core_support import NOW_EPOCH, vector_text

X5U = "https://cert.example.org/passport.cer"
RFC_CLAIMS = ShakenClaims(
    orig="12155550121",
    dest=("12155550131",),
    iat=1443208345,
    attest="A",
    origid="123e4567-e89b-12d3-a456-426655440000",
)


def _segment(value: dict[str, Any]) -> str:
    return b64url_encode(canonical_json(value))


def _passport(header: dict[str, Any], payload: dict[str, Any]) -> Passport:
    return decode_passport(_segment(header) + "." + _segment(payload) + "." + "A" * 86)


# RFC 8588 section 6 example, canonical JSON (RFC 8225 section 9).


def test_rfc_header_canonical_json_matches_the_vector() -> None:
    expected = vector_text("passport/rfc8588-example-header.json")
    assert canonical_json(passport_header(X5U)) == expected.encode()
    assert b64url_encode(canonical_json(passport_header(X5U))) == vector_text(
        "passport/rfc8588-example-header.b64url"
    )


def test_rfc_payload_canonical_json_matches_the_vector() -> None:
    expected = vector_text("passport/rfc8588-example-payload.json")
    assert canonical_json(RFC_CLAIMS.to_payload()) == expected.encode()
    assert b64url_encode(canonical_json(RFC_CLAIMS.to_payload())) == vector_text(
        "passport/rfc8588-example-payload.b64url"
    )


def test_canonical_json_sorts_nested_keys_and_leaves_slashes_and_unicode() -> None:
    value = {"b": {"z": 1, "a": [3, {"y": "/", "x": "é"}]}, "a": None}
    assert canonical_json(value) == '{"a":null,"b":{"a":[3,{"x":"é","y":"/"}],"z":1}}'.encode()


def test_signed_token_uses_the_rfc_segments() -> None:
    token = sign_passport(RFC_CLAIMS, key=new_key(), x5u=X5U)
    header, payload, signature = token.split(".")
    assert header == vector_text("passport/rfc8588-example-header.b64url")
    assert payload == vector_text("passport/rfc8588-example-payload.b64url")
    assert len(b64url_decode(signature)) == 64
    assert "=" not in token


# The digest's signed vector (section 4.2) verifies with its published key.


def _digest_passport() -> tuple[Passport, ec.EllipticCurvePublicKey]:
    header = parse_identity(vector_text("identity/digest-signed-identity.txt"))
    key = load_pem_public_key(vector_text("identity/digest-signed-public-key.pem").encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return decode_passport(header.token), key


def test_digest_vector_verifies_with_its_public_key() -> None:
    passport, key = _digest_passport()
    verify_signature(passport, key)
    assert shaken_claims(passport) == RFC_CLAIMS
    assert passport.x5u == X5U
    assert passport.ppt == "shaken"


def test_digest_vector_fails_with_another_key() -> None:
    passport, _ = _digest_passport()
    with pytest.raises(SignatureInvalid):
        verify_signature(passport, new_key().public_key())


def test_digest_vector_fails_when_a_claim_is_changed() -> None:
    passport, key = _digest_passport()
    forged_payload = _segment({**passport.payload, "attest": "C"})
    header_segment = passport.signing_input.split(b".")[0].decode()
    forged = decode_passport(
        header_segment + "." + forged_payload + "." + b64url_encode(passport.signature)
    )
    with pytest.raises(SignatureInvalid):
        verify_signature(forged, key)


# ES256 is raw r||s (RFC 7518 section 3.4), never DER.


def test_signature_is_raw_r_and_s_over_the_signing_input() -> None:
    key = new_key()
    token = sign_passport(RFC_CLAIMS, key=key, x5u=X5U)
    signing_input, signature_segment = token.rsplit(".", 1)
    signature = b64url_decode(signature_segment)
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key.public_key().verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))


def test_a_der_signature_is_refused() -> None:
    key = new_key()
    token = sign_passport(RFC_CLAIMS, key=key, x5u=X5U)
    signing_input = token.rsplit(".", 1)[0]
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(SignatureInvalid, match="64 bytes"):
        verify_signature(
            decode_passport(signing_input + "." + b64url_encode(der)), key.public_key()
        )


def test_signer_reuses_its_header_and_signs_any_claims() -> None:
    key = new_key()
    signer = PassportSigner(key, X5U)
    first = signer.sign(RFC_CLAIMS)
    second = signer.sign(RFC_CLAIMS)
    assert first.split(".")[:2] == second.split(".")[:2]
    for token in (first, second):
        verify_signature(decode_passport(token), key.public_key())


# Full and compact forms (RFC 8225 section 7).


def test_compact_form_keeps_only_the_signature() -> None:
    key = new_key()
    compact = sign_passport(RFC_CLAIMS, key=key, x5u=X5U, compact=True)
    assert compact.startswith("..")
    assert len(b64url_decode(compact[2:])) == 64
    with pytest.raises(InvalidIdentityHeader, match="compact"):
        decode_passport(compact)


def test_compact_form_verifies_once_rebuilt_from_base_claims() -> None:
    key = new_key()
    base = {"dest": {"tn": ["12155550131"]}, "iat": 1443208345, "orig": {"tn": "12155550121"}}
    full = PassportSigner(key, X5U, ppt=None).sign_payload(base)
    rebuilt = reconstruct_compact(
        full.rsplit(".", 1)[1],
        x5u=X5U,
        ppt=None,
        orig="12155550121",
        dest=["12155550131"],
        iat=1443208345,
    )
    assert rebuilt.signing_input == full.rsplit(".", 1)[0].encode()
    verify_signature(rebuilt, key.public_key())


def test_compact_form_of_a_shaken_passport_cannot_be_rebuilt() -> None:
    key = new_key()
    compact = sign_passport(RFC_CLAIMS, key=key, x5u=X5U, compact=True)
    rebuilt = reconstruct_compact(
        compact[2:],
        x5u=X5U,
        ppt="shaken",
        orig=RFC_CLAIMS.orig,
        dest=RFC_CLAIMS.dest,
        iat=RFC_CLAIMS.iat,
    )
    with pytest.raises(SignatureInvalid):
        verify_signature(rebuilt, key.public_key())


# Keys: ES256 needs P-256.


def test_load_private_key_accepts_p256_pem() -> None:
    key = new_key()
    loaded = load_private_key(private_key_pem(key))
    assert loaded.private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p384", "rsa"],
)
def test_other_keys_are_refused(make_key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = make_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidKey):
        load_private_key(pem)
    with pytest.raises(InvalidKey):
        PassportSigner(make_key(), X5U)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pem", [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
)
def test_garbage_keys_are_refused(pem: bytes) -> None:
    with pytest.raises(InvalidKey):
        load_private_key(pem)


# Decoding is strict about the JWS shape.


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.e30.",
        ".e30.AAAA",
        "e30..AAAA",
        "e30=.e30.AAAA",  # padding is not base64url
        "e30.e30.AA+A",
        "W10.e30.AAAA",  # header is a JSON array
        "bnVsbA.e30.AAAA",  # header is JSON null
        "e30.eyJhIjoxLCJhIjoyfQ.AAAA",  # duplicate key in the payload
        "_w.e30.AAAA",  # not UTF-8
        "e30.e30.A",  # impossible base64 length
        "e30.e30." + "A" * 9000,
    ],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidIdentityHeader):
        decode_passport(token)


# SHAKEN claim checks (RFC 8225 section 5.2.1, RFC 8588, erratum 6656).

HEADER = passport_header(X5U)
PAYLOAD = RFC_CLAIMS.to_payload()


def _with(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = {**payload, **changes}
    return {k: v for k, v in result.items() if v is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    ("header", "payload", "error", "message"),
    [
        ({**HEADER, "typ": "JWT"}, PAYLOAD, InvalidIdentityHeader, "typ"),
        ({**HEADER, "alg": "RS256"}, PAYLOAD, InvalidIdentityHeader, "alg"),
        ({**HEADER, "ppt": "div"}, PAYLOAD, InvalidIdentityHeader, "ppt"),
        ({k: v for k, v in HEADER.items() if k != "x5u"}, PAYLOAD, InvalidIdentityHeader, "x5u"),
        (HEADER, _with(PAYLOAD, attest="D"), InvalidIdentityHeader, "attest"),
        (HEADER, _with(PAYLOAD, attest=_DROP), InvalidIdentityHeader, "attest"),
        (HEADER, _with(PAYLOAD, iat="1443208345"), InvalidIdentityHeader, "iat"),
        (HEADER, _with(PAYLOAD, iat=1443208345.5), InvalidIdentityHeader, "iat"),
        (HEADER, _with(PAYLOAD, iat=True), InvalidIdentityHeader, "iat"),
        (HEADER, _with(PAYLOAD, iat=-1), InvalidIdentityHeader, "iat"),
        (HEADER, _with(PAYLOAD, dest={"tn": "12155550131"}), InvalidIdentityHeader, "dest"),
        (HEADER, _with(PAYLOAD, dest={"tn": []}), InvalidIdentityHeader, "dest"),
        (HEADER, _with(PAYLOAD, dest={"uri": ["sip:a@b"]}), InvalidIdentityHeader, "dest"),
        (HEADER, _with(PAYLOAD, dest={"tn": ["+12155550131"]}), InvalidIdentityHeader, "dest"),
        (HEADER, _with(PAYLOAD, orig={"tn": ["12155550121"]}), InvalidOrig, "orig"),
        (HEADER, _with(PAYLOAD, orig="12155550121"), InvalidOrig, "orig"),
        (HEADER, _with(PAYLOAD, orig={"tn": "1215-555"}), InvalidOrig, "orig"),
        (HEADER, _with(PAYLOAD, orig={"tn": "1" * 16}), InvalidOrig, "orig"),
        (HEADER, _with(PAYLOAD, orig={"tn": "1215555012١"}), InvalidOrig, "orig"),
        (
            HEADER,
            _with(PAYLOAD, dest={"tn": ["１２１５５５５０１３１"]}),
            InvalidIdentityHeader,
            "dest",
        ),
        (HEADER, _with(PAYLOAD, origid=_DROP), InvalidIdentityHeader, "origid"),
        (HEADER, _with(PAYLOAD, origid=""), InvalidIdentityHeader, "origid"),
        (HEADER, _with(PAYLOAD, origid=42), InvalidIdentityHeader, "origid"),
    ],
)
def test_shaken_claim_violations(
    header: dict[str, Any], payload: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        shaken_claims(_passport(header, payload))


def test_iat_as_a_string_is_the_rfc_8588_erratum_6656_case() -> None:
    # The published RFC 8588 example quotes iat; the erratum makes it a number.
    payload = json.loads(vector_text("passport/rfc8588-example-payload.json"))
    assert isinstance(payload["iat"], int)
    with pytest.raises(InvalidIdentityHeader, match="iat"):
        shaken_claims(_passport(HEADER, {**payload, "iat": str(payload["iat"])}))


def test_shaken_claims_accepts_several_destinations_and_any_origid() -> None:
    payload = _with(PAYLOAD, dest={"tn": ["12155550131", "*67"]}, origid="opaque id", iat=NOW_EPOCH)
    claims = shaken_claims(_passport(HEADER, payload))
    assert claims.dest == ("12155550131", "*67")
    assert claims.origid == "opaque id"
    assert claims.iat == NOW_EPOCH


@given(st.binary(max_size=300))
def test_b64url_encode_is_unpadded_urlsafe_base64_and_round_trips(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert encoded == base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    assert b64url_decode(encoded) == data


# The payload's JSON: the fast reading (orjson, compact input) and the hook's agree.

_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
_JSON_OBJECTS = st.dictionaries(st.text(max_size=6), _JSON_VALUES, max_size=6)


def _payload_token(text: str) -> str:
    return f"e30.{b64url_encode(text.encode('utf-8', 'surrogatepass'))}.AAAA"


@given(_JSON_OBJECTS, st.booleans(), st.booleans())
def test_payload_json_reads_as_the_standard_parser_does(
    value: dict[str, Any], compact: bool, ascii_only: bool
) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(value, separators=separators, ensure_ascii=ascii_only)
    assert decode_passport(_payload_token(text)).payload == json.loads(text)


@given(_JSON_OBJECTS.filter(bool), st.data())
def test_a_duplicate_key_is_refused_at_any_depth(
    value: dict[str, Any], data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # The same member once more, first in the object or nested one level down.
    member = json.dumps({key: value[key]}, separators=(",", ":"), ensure_ascii=False)[1:-1]
    nested = data.draw(st.booleans())
    doubled = f'{{"n":{{{member},{text[1:]}}}' if nested else f"{{{member},{text[1:]}"
    with pytest.raises(InvalidIdentityHeader, match="duplicate JSON key"):
        decode_passport(_payload_token(doubled))
