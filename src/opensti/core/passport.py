"""PASSporT (RFC 8225) with the SHAKEN extension (RFC 8588), signed with ES256.

A PASSporT is a JWS in compact serialization. We write the JWS by hand rather than
through a JOSE library because the canonical JSON of RFC 8225 section 9 and the
compact form of section 7 are not something general JOSE libraries produce, and the
signing path is hot: the header segment is encoded once per x5u and reused.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from opensti.core.errors import (
    InvalidIdentityHeader,
    InvalidKey,
    InvalidOrig,
    SignatureInvalid,
)
from opensti.core.tn import MAX_TN_DIGITS

__all__ = [
    "ATTESTATION_LEVELS",
    "MAX_PASSPORT_LENGTH",
    "Passport",
    "PassportSigner",
    "ShakenClaims",
    "b64url_decode",
    "b64url_encode",
    "canonical_json",
    "decode_passport",
    "load_private_key",
    "passport_header",
    "reconstruct_compact",
    "require_p256",
    "shaken_claims",
    "sign_passport",
    "verify_signature",
]

ATTESTATION_LEVELS = ("A", "B", "C")
#: Bound on what we parse from the network; real SHAKEN PASSporTs are ~500 bytes.
MAX_PASSPORT_LENGTH = 8192
_ES256 = ec.ECDSA(hashes.SHA256())
#: ASCII only: str.isdigit() would also pass other scripts' digits, such as "١٢٣".
_CANONICAL_TN = re.compile(r"[0-9#*]+")


#: Standard to URL-safe base64 alphabet (what base64.urlsafe_b64encode translates).
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    # binascii directly: base64.urlsafe_b64encode is two Python calls more, twice per
    # signature.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding, as JWS requires (RFC 7515 section 2)."""
    if "=" in text or "+" in text or "/" in text:
        raise ValueError("not unpadded base64url")
    # base64.urlsafe_b64decode, without its layers: a2b_base64 takes ASCII text.
    standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(standard)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


#: One encoder for every call (``json.dumps`` with options builds one per call).
_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


#: A JSON string literal as canonical_json writes it (ensure_ascii=False).
_json_string = json.encoder.encode_basestring


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """RFC 8225 section 9: keys sorted, no whitespace, UTF-8, "/" left unescaped."""
    return _CANONICAL.encode(value).encode()


def require_p256(key: object) -> None:
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey
    ) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidKey("the key is not an EC P-256 (prime256v1) key, which ES256 requires")


def load_private_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM (PKCS#8 or SEC1) P-256 private key, or raise :class:`InvalidKey`."""
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"not a PEM private key: {exc}") from None
    require_p256(key)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def passport_header(x5u: str, ppt: str | None = "shaken") -> dict[str, str]:
    header = {"alg": "ES256", "typ": "passport", "x5u": x5u}
    if ppt is not None:
        header["ppt"] = ppt
    return header


@dataclass(frozen=True, slots=True)
class ShakenClaims:
    """The payload of a SHAKEN PASSporT, with TNs already canonical."""

    orig: str
    dest: tuple[str, ...]
    iat: int
    attest: str
    origid: str

    def to_json(self) -> bytes:
        """``canonical_json(self.to_payload())``, written out: the keys are fixed, so
        only the values need encoding (the signing path's per-call JSON)."""
        if type(self.iat) is not int:  # a bool or a float: let the encoder spell it
            return canonical_json(self.to_payload())
        dest = ",".join([_json_string(tn) for tn in self.dest])
        return (
            f'{{"attest":{_json_string(self.attest)},"dest":{{"tn":[{dest}]}},'
            f'"iat":{self.iat},"orig":{{"tn":{_json_string(self.orig)}}},'
            f'"origid":{_json_string(self.origid)}}}'
        ).encode()

    def to_payload(self) -> dict[str, Any]:
        return {
            "attest": self.attest,
            "dest": {"tn": list(self.dest)},
            "iat": self.iat,
            "orig": {"tn": self.orig},
            "origid": self.origid,
        }


def _es256_sign(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, _ES256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class PassportSigner:
    """Signs PASSporTs for one key and x5u; the header segment is encoded once."""

    __slots__ = ("_header_segment", "_key", "ppt", "x5u")

    def __init__(self, key: ec.EllipticCurvePrivateKey, x5u: str, ppt: str | None = "shaken"):
        require_p256(key)
        self._key = key
        self.x5u = x5u
        self.ppt = ppt
        self._header_segment = b64url_encode(canonical_json(passport_header(x5u, ppt)))

    def sign_payload(self, payload: Mapping[str, Any]) -> str:
        """Return the full form ``header.payload.signature``."""
        return self._sign_json(canonical_json(payload))

    def _sign_json(self, payload_json: bytes) -> str:
        signing_input = self._header_segment + "." + b64url_encode(payload_json)
        signature = _es256_sign(self._key, signing_input.encode("ascii"))
        return signing_input + "." + b64url_encode(signature)

    def sign(self, claims: ShakenClaims) -> str:
        return self._sign_json(claims.to_json())

    def sign_as(self, ppt: str, payload: Mapping[str, Any]) -> str:
        """Sign a PASSporT of another type (``div``, ``rcd``) with this key and x5u."""
        return PassportSigner(self._key, self.x5u, ppt).sign_payload(payload)


def sign_passport(
    claims: ShakenClaims, *, key: ec.EllipticCurvePrivateKey, x5u: str, compact: bool = False
) -> str:
    """Sign a SHAKEN PASSporT; ``compact`` drops header and payload (RFC 8225 section 7)."""
    token = PassportSigner(key, x5u).sign(claims)
    if compact:
        return ".." + token.rsplit(".", 1)[1]
    return token


@dataclass(frozen=True, slots=True)
class Passport:
    """A decoded PASSporT whose signature has not been checked yet."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def x5u(self) -> str | None:
        value = self.header.get("x5u")
        return value if isinstance(value, str) else None

    @property
    def ppt(self) -> str | None:
        value = self.header.get("ppt")
        return value if isinstance(value, str) else None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers that disagree on which duplicate wins is a classic JWS attack.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate JSON key {key!r}")
            seen.add(key)
    return result


#: One decoder for every segment (``json.loads`` with a hook builds one per call).
_JSON_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicate_keys)


def _unique_keys_json(raw: bytes) -> Any:
    """orjson's reading of ``raw`` when it provably held no duplicate key, else None.

    orjson keeps a duplicate's last value without a word. But when its re-encoding
    gives back the very bytes, every member was encoded once, so none was dropped.
    What signers send (compact JSON) passes, in a fifth of the hook's time; anything
    else (spaces, escapes, other number forms, what orjson refuses) goes the slow way.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if orjson.dumps(value) == raw else None


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = b64url_decode(segment)
        value = _unique_keys_json(raw)
        if value is None:
            # What json.loads does with bytes: UTF-8, -16 or -32, told apart by the
            # first bytes; '{"' can only start UTF-8, so skip the test.
            encoding = "utf-8" if raw.startswith(b'{"') else json.detect_encoding(raw)
            value = _JSON_DECODER.decode(raw.decode(encoding, "surrogatepass"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidIdentityHeader(f"PASSporT {what} is not base64url JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidIdentityHeader(f"PASSporT {what} is not a JSON object")
    return value


#: Decoded header segments: a signer sends the same one with every call (one per x5u,
#: so one per peer certificate). Filled until full and never evicted, so a flood of
#: made-up headers cannot push the peers' out (a header not kept is decoded each time,
#: as before); at most some 2 MiB. Only flat headers (string values) are kept, so the
#: copy handed out is a deep one.
_HEADERS: dict[str, dict[str, Any]] = {}
_MAX_HEADERS = 4096


def _header_object(segment: str) -> dict[str, Any]:
    cached = _HEADERS.get(segment)
    if cached is not None:
        return dict(cached)
    header = _json_object(segment, "header")
    if len(_HEADERS) < _MAX_HEADERS and all(isinstance(v, str) for v in header.values()):
        _HEADERS[segment] = dict(header)
    return header


def decode_passport(token: str) -> Passport:
    """Split and decode a full-form PASSporT, or raise :class:`InvalidIdentityHeader`."""
    if len(token) > MAX_PASSPORT_LENGTH:
        raise InvalidIdentityHeader("PASSporT is too long")
    parts = token.split(".")
    if len(parts) != 3 or not parts[2]:
        raise InvalidIdentityHeader("PASSporT is not a JWS (header.payload.signature)")
    if not parts[0] or not parts[1]:
        raise InvalidIdentityHeader("PASSporT is in compact form; the full form is needed here")
    header = _header_object(parts[0])
    payload = _json_object(parts[1], "payload")
    try:
        signature = b64url_decode(parts[2])
    except ValueError:
        raise InvalidIdentityHeader("PASSporT signature is not base64url") from None
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    return Passport(header, payload, signing_input, signature)


def verify_signature(passport: Passport, public_key: ec.EllipticCurvePublicKey) -> None:
    """Check the ES256 signature (raw r||s, RFC 7518 section 3.4) or raise."""
    if passport.header.get("alg") != "ES256":
        raise InvalidIdentityHeader(f"unsupported PASSporT alg {passport.header.get('alg')!r}")
    if len(passport.signature) != 64:
        raise SignatureInvalid("ES256 signature is not 64 bytes (r||s)")
    der = encode_dss_signature(
        int.from_bytes(passport.signature[:32], "big"),
        int.from_bytes(passport.signature[32:], "big"),
    )
    try:
        public_key.verify(der, passport.signing_input, _ES256)
    except InvalidSignature:
        raise SignatureInvalid(
            "PASSporT signature does not verify with the x5u certificate"
        ) from None


def _tn_claim(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TN_DIGITS:
        raise InvalidIdentityHeader(f"{what} must be a telephone number string")
    if _CANONICAL_TN.fullmatch(value) is None:
        raise InvalidIdentityHeader(f"{what} is not a canonical TN: {value!r}")
    return value


def shaken_claims(passport: Passport) -> ShakenClaims:
    """Check the SHAKEN header and claims (RFC 8225, RFC 8588) and return them typed."""
    header, payload = passport.header, passport.payload
    if header.get("typ") != "passport":
        raise InvalidIdentityHeader(f"PASSporT typ must be 'passport', not {header.get('typ')!r}")
    if header.get("alg") != "ES256":
        raise InvalidIdentityHeader(f"unsupported PASSporT alg {header.get('alg')!r}")
    if header.get("ppt") != "shaken":
        raise InvalidIdentityHeader(f"PASSporT ppt must be 'shaken', not {header.get('ppt')!r}")
    if not isinstance(header.get("x5u"), str):
        raise InvalidIdentityHeader("PASSporT header has no x5u")
    attest = payload.get("attest")
    if attest not in ATTESTATION_LEVELS:
        raise InvalidIdentityHeader(f"attest must be A, B or C, not {attest!r}")
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat < 0:
        raise InvalidIdentityHeader(f"iat must be a JSON number of seconds, not {iat!r}")
    orig = payload.get("orig")
    if not isinstance(orig, dict) or "tn" not in orig:
        raise InvalidOrig("orig must be an object with a tn")
    try:
        orig_tn = _tn_claim(orig["tn"], "orig.tn")
    except InvalidIdentityHeader as exc:
        raise InvalidOrig(exc.message) from None
    dest = payload.get("dest")
    if not isinstance(dest, dict) or not isinstance(dest.get("tn"), list) or not dest["tn"]:
        raise InvalidIdentityHeader("dest must be an object with a non-empty tn array")
    dest_tns = tuple(_tn_claim(tn, "dest.tn") for tn in dest["tn"])
    origid = payload.get("origid")
    if not isinstance(origid, str) or not origid:
        raise InvalidIdentityHeader("origid is missing (RFC 8588 requires it)")
    return ShakenClaims(orig=orig_tn, dest=dest_tns, iat=iat, attest=attest, origid=origid)


def reconstruct_compact(
    signature_segment: str, *, x5u: str, ppt: str | None, orig: str, dest: Sequence[str], iat: int
) -> Passport:
    """Rebuild a compact-form PASSporT from the SIP request (RFC 8224 section 5.2).

    Only the base claims (orig, dest, iat) live in SIP, so this serves PASSporTs with
    no extension claims; SHAKEN's attest and origid cannot be rebuilt.
    """
    header = passport_header(x5u, ppt)
    payload = {"dest": {"tn": list(dest)}, "iat": iat, "orig": {"tn": orig}}
    signing_input = (
        b64url_encode(canonical_json(header)) + "." + b64url_encode(canonical_json(payload))
    )
    try:
        signature = b64url_decode(signature_segment)
    except ValueError:
        raise InvalidIdentityHeader("PASSporT signature is not base64url") from None
    return Passport(header, payload, signing_input.encode("ascii"), signature)
