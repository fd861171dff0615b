"""The SIP Identity header (RFC 8224 section 4.1, erratum 6499): tolerant and strict."""

from __future__ import annotations

import pytest

from opensti.core.errors import InvalidIdentityHeader, InvalidInfo
from opensti.core.identity import (
    MAX_IDENTITY_LENGTH,
    IdentityHeader,
    format_identity,
    parse_identity,
)
from tests.core.core_support import vector_text

DIGEST = vector_text("identity/digest-signed-identity.txt")
TOKEN = DIGEST.split(";", 1)[0]
X5U = "https://cert.example.org/passport.cer"


def test_the_digest_vector_parses() -> None:
    header = parse_identity(DIGEST)
    assert header == IdentityHeader(token=TOKEN, info=X5U, alg="ES256", ppt="shaken")
    assert not header.is_compact
    assert header.signature_segment == TOKEN.rsplit(".", 1)[1]


def test_format_then_parse_is_the_identity() -> None:
    value = format_identity(TOKEN, X5U)
    assert value == DIGEST
    assert str(parse_identity(value)) == value


def test_format_without_alg_and_ppt() -> None:
    assert format_identity(TOKEN, X5U, alg=None, ppt=None) == f"{TOKEN};info=<{X5U}>"


def test_compact_form_parses() -> None:
    signature = TOKEN.rsplit(".", 1)[1]
    header = parse_identity(f"..{signature};info=<{X5U}>;alg=ES256;ppt=shaken")
    assert header.is_compact
    assert header.token == ".." + signature
    assert header.signature_segment == signature


@pytest.mark.parametrize(
    "value",
    [
        # Parameter order is free.
        f"{TOKEN};ppt=shaken;alg=ES256;info=<{X5U}>",
        f"{TOKEN};alg=ES256;info=<{X5U}>;ppt=shaken",
        # Whitespace around ";" and "=" (SEMI and EQUAL allow LWS, RFC 3261 section 25.1).
        f"{TOKEN} ; info = <{X5U}> ; alg = ES256 ; ppt = shaken",
        f"{TOKEN}\t;\tinfo=<{X5U}>;alg=ES256;ppt=shaken",
        f"  {TOKEN};info=<{X5U}>;alg=ES256;ppt=shaken  ",
        # A quoted ppt, as some deployments send it.
        f'{TOKEN};info=<{X5U}>;alg=ES256;ppt="shaken"',
        # Parameter names are case-insensitive.
        f"{TOKEN};INFO=<{X5U}>;Alg=ES256;PPT=shaken",
        # Folded header lines (RFC 3261 section 7.3.1) are unfolded first.
        f"{TOKEN};\r\n info=<{X5U}>;\r\n\talg=ES256;ppt=shaken",
        f"{TOKEN}\n ;info=<{X5U}>;alg=ES256;ppt=shaken",
    ],
)
def test_tolerant_where_sip_is(value: str) -> None:
    header = parse_identity(value)
    assert header.token == TOKEN
    assert header.info == X5U
    assert header.alg == "ES256"
    assert header.ppt == "shaken"


def test_alg_and_ppt_are_optional() -> None:
    header = parse_identity(f"{TOKEN};info=<{X5U}>")
    assert header.alg is None
    assert header.ppt is None


def test_extension_parameters_are_kept() -> None:
    header = parse_identity(f'{TOKEN};info=<{X5U}>;ppt=shaken;foo=bar;flag;quoted="a b"')
    assert header.extensions == {"foo": "bar", "flag": None, "quoted": "a b"}


def test_info_may_carry_any_absolute_uri() -> None:
    header = parse_identity(f"{TOKEN};info=<https://example.org/a;b=c?d=e#f>;ppt=shaken")
    assert header.info == "https://example.org/a;b=c?d=e#f"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        # info must be in angle brackets (ident-info-uri = LAQUOT absoluteURI RAQUOT).
        (f"{TOKEN};info={X5U};ppt=shaken", InvalidIdentityHeader, None),
        (f'{TOKEN};info="{X5U}";ppt=shaken', InvalidInfo, "angle brackets"),
        (f"{TOKEN};ppt=shaken", InvalidInfo, "no info"),
        (f"{TOKEN};info=<not a uri>", InvalidInfo, "absolute URI"),
        (f"{TOKEN};info=<>", InvalidInfo, "absolute URI"),
        (f"{TOKEN};info=<{X5U}", InvalidIdentityHeader, "unterminated"),
        # Duplicate parameters are ambiguous, in any case spelling.
        (f"{TOKEN};info=<{X5U}>;ppt=shaken;ppt=div", InvalidIdentityHeader, "twice"),
        (f"{TOKEN};info=<{X5U}>;INFO=<https://evil.example/x>", InvalidIdentityHeader, "twice"),
        # The digest is base64url and dots only (erratum 6499).
        (f"{TOKEN.replace('-', '+')};info=<{X5U}>", InvalidIdentityHeader, None),
        (f"{TOKEN.replace('_', '/')};info=<{X5U}>", InvalidIdentityHeader, None),
        (f"{TOKEN}=;info=<{X5U}>", InvalidIdentityHeader, None),
        (f"a.b;info=<{X5U}>", InvalidIdentityHeader, None),
        (f"..;info=<{X5U}>", InvalidIdentityHeader, None),
        (f";info=<{X5U}>", InvalidIdentityHeader, None),
        (f"{TOKEN} info=<{X5U}>", InvalidIdentityHeader, "';'"),
        (f"{TOKEN};;info=<{X5U}>", InvalidIdentityHeader, "parameter name"),
        (f"{TOKEN};info=<{X5U}>;ppt=", InvalidIdentityHeader, "value"),
        (f'{TOKEN};info=<{X5U}>;ppt="shaken', InvalidIdentityHeader, "unterminated"),
        ("", InvalidIdentityHeader, None),
        # A bare line break that is not a fold ends the header.
        (f"{TOKEN};info=<{X5U}>\r\nppt=shaken", InvalidIdentityHeader, None),
    ],
)
def test_strict_where_the_rfc_is(value: str, error: type[Exception], message: str | None) -> None:
    with pytest.raises(error, match=message):
        parse_identity(value)


def test_too_long_is_refused_before_parsing() -> None:
    value = f"{TOKEN};info=<{X5U}>;x=" + "a" * MAX_IDENTITY_LENGTH
    with pytest.raises(InvalidIdentityHeader, match="too long"):
        parse_identity(value)


def test_just_under_the_bound_still_parses() -> None:
    base = f"{TOKEN};info=<{X5U}>;x="
    header = parse_identity(base + "a" * (MAX_IDENTITY_LENGTH - len(base)))
    assert header.extensions["x"] is not None
