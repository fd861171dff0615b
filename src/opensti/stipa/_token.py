"""SPC tokens (RFC 9448 section 5): parse, check against what was asked, verify.

A token reaches us from the STI-PA API or from a file fetched on another host (the
real STI-PA answers only allow-listed addresses); both paths go through
:func:`validate_spc_token` before the token is shown to a CA, so a wrong SPC, key
fingerprint or an expired token is reported here, in our words, not as a CA refusal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.certs import Signed, issued_by, load_certificate_chain
from opensti.core.errors import (
    InvalidCertificate,
    InvalidSPCToken,
    InvalidTNAuthList,
    PassportError,
)
from opensti.core.passport import Passport, decode_passport, verify_signature
from opensti.core.tnauthlist import TNAuthList

__all__ = [
    "DEFAULT_MIN_LIFE",
    "SPCToken",
    "TokenBundle",
    "TokenExpectation",
    "TokenTrust",
    "check_token_claims",
    "decode_spc_token",
    "parse_token_file",
    "validate_spc_token",
    "verify_token_issuer",
]

_MAX_FILE = 64 * 1024
_MAX_PATH = 4
DEFAULT_MIN_LIFE = dt.timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class SPCToken:
    """A decoded SPC token; ``jwt`` is what the tkauth-01 answer carries."""

    jwt: str = field(repr=False)
    passport: Passport = field(repr=False, compare=False)
    x5u: str
    expires: dt.datetime
    jti: str
    tkvalue: str
    tnauthlist: TNAuthList
    fingerprint: str
    ca: bool
    crl_url: str | None = None
    #: The STI-PA certificate whose signature was checked; None until validated.
    signer: x509.Certificate | None = field(default=None, repr=False, compare=False)

    @property
    def spc(self) -> str | None:
        return self.tnauthlist.single_spc

    def life_left(self, now: dt.datetime) -> dt.timedelta:
        return self.expires - now


@dataclass(frozen=True, slots=True)
class TokenBundle:
    """What the STI-PA token endpoint returns (or a user brought): token and CRL URL."""

    token: str = field(repr=False)
    crl_url: str | None = None


@dataclass(frozen=True, slots=True)
class TokenTrust:
    """Who may sign SPC tokens: the STI-PA certificates or the roots they chain to.

    ``fetch`` GETs an x5u URL and returns its bytes (raising an opensti error).
    """

    anchors: tuple[x509.Certificate, ...]
    fetch: Callable[[str], bytes]
    allow_http: bool = False


def parse_token_file(data: bytes | str) -> TokenBundle:
    """A token file: the STI-PA's JSON answer ``{"token":..., "crl":...}`` or a bare JWT."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > _MAX_FILE:
        raise InvalidSPCToken("the token file is larger than 64 KiB")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidSPCToken("the token file is not text") from None
    if text.startswith("{"):
        return _bundle_from_json(text)
    if text.count(".") != 2 or any(ch.isspace() for ch in text):
        raise InvalidSPCToken("the token file is neither the STI-PA's JSON answer nor a JWT")
    return TokenBundle(token=text)


def _bundle_from_json(text: str) -> TokenBundle:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidSPCToken(f"the token file is not valid JSON: {exc}") from None
    token = document.get("token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise InvalidSPCToken('the token file has no "token" string')
    crl = document.get("crl")
    if crl is not None and not isinstance(crl, str):
        raise InvalidSPCToken('the token file\'s "crl" is not a URL string')
    return TokenBundle(token=token.strip(), crl_url=crl or None)


def decode_spc_token(jwt: str, crl_url: str | None = None) -> SPCToken:
    """Decode and check the form of an SPC token (no signature check yet)."""
    try:
        passport = decode_passport(jwt.strip())
    except PassportError as exc:
        raise InvalidSPCToken(f"not an SPC token (a JWT in compact serialization): {exc}") from None
    header, claims = passport.header, passport.payload
    if header.get("alg") != "ES256":
        raise InvalidSPCToken(f"SPC token alg must be ES256, not {header.get('alg')!r}")
    x5u = _string(header, "x5u", "header")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidSPCToken("the SPC token has no exp claim")
    jti = _string(claims, "jti", "claims")
    atc = claims.get("atc")
    if not isinstance(atc, dict):
        raise InvalidSPCToken("the SPC token has no atc claim")
    if atc.get("tktype") != "TNAuthList":
        raise InvalidSPCToken(f"atc.tktype is {atc.get('tktype')!r}, not TNAuthList")
    tkvalue = _string(atc, "tkvalue", "atc")
    try:
        tnauthlist = TNAuthList.from_acme_value(tkvalue)
    except InvalidTNAuthList as exc:
        raise InvalidSPCToken(f"atc.tkvalue is not a TNAuthList: {exc}") from None
    ca = atc.get("ca", False)
    if not isinstance(ca, bool):
        raise InvalidSPCToken("atc.ca is not a boolean")
    return SPCToken(
        jwt=jwt.strip(),
        x5u=x5u,
        expires=dt.datetime.fromtimestamp(exp, dt.UTC),
        jti=jti,
        tkvalue=tkvalue,
        tnauthlist=tnauthlist,
        fingerprint=_string(atc, "fingerprint", "atc"),
        ca=ca,
        crl_url=crl_url,
        passport=passport,
    )


def _string(mapping: dict[str, Any], name: str, where: str) -> str:
    value = mapping.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidSPCToken(f"the SPC token {where} has no {name!r} string")
    return value


@dataclass(frozen=True, slots=True)
class TokenExpectation:
    """What a token must say to be used: our SPC, our account key, end-entity or not."""

    tnauthlist: TNAuthList
    fingerprint: str
    ca: bool = False
    #: The token must still be good for this long when it is handed to the CA.
    min_life: dt.timedelta = DEFAULT_MIN_LIFE
    expected_crl_url: str | None = None


def check_token_claims(token: SPCToken, expected: TokenExpectation, now: dt.datetime) -> None:
    """Is this the token we need: our SPC, our account key, end-entity, alive long enough?"""
    if token.tnauthlist != expected.tnauthlist:
        raise InvalidSPCToken(
            f"the SPC token is for {_describe(token.tnauthlist)}, "
            f"not {_describe(expected.tnauthlist)}",
            value=token.tkvalue,
        )
    if _normalize_fingerprint(token.fingerprint) != _normalize_fingerprint(expected.fingerprint):
        raise InvalidSPCToken(
            f"the SPC token is bound to key {token.fingerprint}, "
            f"not this account's {expected.fingerprint}"
        )
    if token.ca is not expected.ca:
        raise InvalidSPCToken(f"the SPC token has atc.ca {token.ca}, expected {expected.ca}")
    left = token.life_left(now)
    if left < expected.min_life:
        state = "has expired" if left <= dt.timedelta(0) else "expires too soon"
        raise InvalidSPCToken(f"the SPC token {state} (exp {token.expires.isoformat()})")
    wanted_crl = expected.expected_crl_url
    if wanted_crl and token.crl_url and token.crl_url != wanted_crl:
        raise InvalidSPCToken(f"the STI-PA CRL URL is {token.crl_url}, expected {wanted_crl}")
    if token.crl_url is not None and not token.crl_url.startswith(("https://", "http://")):
        raise InvalidSPCToken(f"the CRL URL is not an http(s) URL: {token.crl_url!r}")


def _describe(value: TNAuthList) -> str:
    spc = value.single_spc
    return f"SPC {spc}" if spc else "a TNAuthList that is not one SPC"


def _normalize_fingerprint(text: str) -> str:
    return " ".join(text.split()).upper()


def verify_token_issuer(token: SPCToken, trust: TokenTrust, now: dt.datetime) -> x509.Certificate:
    """Fetch the x5u certificate, check it is a trusted STI-PA's, and check the signature."""
    if not token.x5u.startswith("https://") and not (
        trust.allow_http and token.x5u.startswith("http://")
    ):
        raise InvalidSPCToken(f"the SPC token x5u is not an HTTPS URL: {token.x5u!r}")
    try:
        chain = load_certificate_chain(trust.fetch(token.x5u))
    except InvalidCertificate as exc:
        raise InvalidSPCToken(f"the SPC token x5u does not hold a certificate: {exc}") from None
    leaf = chain.leaf
    _check_trusted(leaf, list(chain.intermediates), trust.anchors, now, chain.signed)
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidSPCToken("the STI-PA certificate key is not EC P-256")
    try:
        verify_signature(token.passport, key)
    except PassportError:
        raise InvalidSPCToken(
            f"the SPC token signature does not verify with the certificate at {token.x5u}"
        ) from None
    return leaf


def _check_trusted(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchors: tuple[x509.Certificate, ...],
    now: dt.datetime,
    signed: Signed,
) -> None:
    """Pinned STI-PA certificate, or a short path from it to a configured anchor.

    Signatures are checked over the bytes as they came (``signed`` holds the original
    TBS of certificates with the explicit NULL in their ECDSA AlgorithmIdentifier)."""
    if not anchors:
        raise InvalidSPCToken("no STI-PA trust anchors are configured")
    cert = leaf
    for _ in range(_MAX_PATH):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise InvalidSPCToken(
                f"the STI-PA certificate {cert.subject.rfc4514_string()} is not valid now"
            )
        if cert in anchors:
            return
        issuer = _issuer_of(cert, [*anchors, *intermediates], signed)
        if issuer is None:
            break
        if issuer in anchors:
            return
        cert = issuer
    raise InvalidSPCToken(
        f"the SPC token signer {leaf.subject.rfc4514_string()} is not a trusted STI-PA"
    )


def _issuer_of(
    cert: x509.Certificate, candidates: list[x509.Certificate], signed: Signed
) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate == cert or candidate.subject != cert.issuer:
            continue
        if issued_by(cert, candidate, signed) is None:
            return candidate
    return None


def validate_spc_token(
    bundle: TokenBundle | str,
    expected: TokenExpectation,
    *,
    trust: TokenTrust,
    now: dt.datetime,
) -> SPCToken:
    """Every check before an SPC token is used; raise :class:`InvalidSPCToken` or return it."""
    if isinstance(bundle, str):
        bundle = TokenBundle(bundle)
    token = decode_spc_token(bundle.token, bundle.crl_url)
    check_token_claims(token, expected, now)
    return dataclasses.replace(token, signer=verify_token_issuer(token, trust, now))
