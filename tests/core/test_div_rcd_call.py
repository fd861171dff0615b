"""Diverted calls (RFC 8946) and Rich Call Data (RFC 9795) through ``verify_call``.

Two providers from one sandbox PKI: SPC 1234 signs the original SHAKEN PASSporT,
SPC 5678 (the forwarding provider, ATIS-1000085) signs the div PASSporT. The RFC 8946
section 3 example claims come from tests/vectors/div/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from opensti.core.call import CallVerification, verify_call
from opensti.core.certs import CertificateChain, TrustContext, ValidatedCertificate
from opensti.core.claim_constraints import JWT_CLAIM_CONSTRAINTS_OID
from opensti.core.div import DivClaims, div_claims, link_div_chain, sign_div_passport
from opensti.core.errors import (
    BadIdentityInfo,
    DivChainBroken,
    InvalidIdentityHeader,
    PassportError,
)
from opensti.core.identity import format_identity
from opensti.core.passport import Passport, PassportSigner, ShakenClaims, decode_passport
from opensti.core.rcd import build_rcd_claims
from opensti.core.verify import Verstat
from opensti.sandbox.pki import DemoPKI
from tests.core.core_support import NOW_EPOCH, VECTORS, chain_resolver, reissue, sign_jws

VECTOR = json.loads((VECTORS / "div" / "rfc8946-example.json").read_text())
ORIG_X5U = VECTOR["original"]["header"]["x5u"]
DIV_X5U = VECTOR["div"]["header"]["x5u"]
LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()
LOGO_URL = "https://brand.example.com/logo.png"
ORIG, FIRST_DEST, NEW_DEST = "12155551212", "12155551213", "12155551214"


@pytest.fixture(scope="module")
def keys(pki: DemoPKI) -> dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]]:
    return {ORIG_X5U: pki.issue("1234"), DIV_X5U: pki.issue("5678")}


def _resolver(pki: DemoPKI, certs: dict[str, x509.Certificate]) -> Any:
    trust = TrustContext(anchors=(pki.root.certificate,))
    resolvers = {
        url: chain_resolver(CertificateChain(cert, (pki.intermediate.certificate,)), trust)
        for url, cert in certs.items()
    }

    def resolve(url: str) -> ValidatedCertificate:
        if url not in resolvers:
            raise BadIdentityInfo(f"no certificate at {url}")
        return resolvers[url](url)

    return resolve


@pytest.fixture(scope="module")
def resolve(
    pki: DemoPKI, keys: dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]]
) -> Any:
    return _resolver(pki, {url: cert for url, (_, cert) in keys.items()})


def _payload(part: str, **changes: Any) -> dict[str, Any]:
    payload = {**VECTOR[part]["payload"], "iat": NOW_EPOCH, **changes}
    return {k: v for k, v in payload.items() if v is not None}


def _shaken(keys: Any, **changes: Any) -> str:
    key = keys[ORIG_X5U][0]
    return format_identity(
        PassportSigner(key, ORIG_X5U).sign_payload(_payload("original", **changes)), ORIG_X5U
    )


def _div(keys: Any, x5u: str = DIV_X5U, **changes: Any) -> str:
    token = sign_jws(
        keys[x5u][0], {**VECTOR["div"]["header"], "x5u": x5u}, _payload("div", **changes)
    )
    return format_identity(token, x5u, ppt="div")


def _call(identities: Sequence[str], resolve: Any, **options: Any) -> CallVerification:
    options.setdefault("orig_tn", ORIG)
    options.setdefault("dest_tns", VECTOR["request_dest"])
    return verify_call(identities, now=NOW_EPOCH, resolve=resolve, **options)


# The div PASSporT itself.


def test_rfc8946_example_claims_parse() -> None:
    header, payload = VECTOR["div"]["header"], VECTOR["div"]["payload"]
    claims = div_claims(Passport(header, payload, b"", b""))
    assert claims == DivClaims(orig=ORIG, dest=(NEW_DEST,), iat=1443208345, div=FIRST_DEST)
    assert claims.to_payload() == payload


def test_signed_div_passport_carries_the_rfc8946_claims(keys: Any) -> None:
    original = ShakenClaims(
        ORIG, (FIRST_DEST,), 1443208345, "A", "123e4567-e89b-12d3-a456-426655440000"
    )
    claims = DivClaims.diverting(original, new_dest=(NEW_DEST,), div=FIRST_DEST, iat=1443208345)
    passport = decode_passport(sign_div_passport(claims, key=keys[DIV_X5U][0], x5u=DIV_X5U))
    assert passport.header == VECTOR["div"]["header"]
    assert passport.payload == VECTOR["div"]["payload"]
    with pytest.raises(DivChainBroken):
        DivClaims.diverting(original, new_dest=(NEW_DEST,), div="12155559999", iat=0)


@pytest.mark.parametrize(
    "changes",
    [
        {"div": {"tn": ["12155551213"]}},
        {"div": {"uri": "sip:alice@example.com"}},
        {"div": None},
        {"dest": {"tn": []}},
        {"orig": {"tn": "+1 215"}},
        {"iat": "1443208345"},
        {"origid": ""},
    ],
)
def test_malformed_div_claims(changes: dict[str, Any]) -> None:
    payload = {k: v for k, v in {**VECTOR["div"]["payload"], **changes}.items() if v is not None}
    with pytest.raises(InvalidIdentityHeader):
        div_claims(Passport(VECTOR["div"]["header"], payload, b"", b""))


def test_chain_links_in_any_header_order() -> None:
    base = ShakenClaims(ORIG, ("1001",), 0, "A", "x")
    second = DivClaims(ORIG, ("1003",), 0, "1002")
    first = DivClaims(ORIG, ("1002",), 0, "1001")
    assert link_div_chain(base, [second, first], ["1003"]) == [1, 0]
    with pytest.raises(DivChainBroken, match="gap or a mismatch"):
        link_div_chain(base, [second], ["1003"])
    with pytest.raises(DivChainBroken, match="ends at"):
        link_div_chain(base, [first], ["1003"])
    with pytest.raises(DivChainBroken, match="orig"):
        link_div_chain(base, [DivClaims("999", ("1002",), 0, "1001")], None)


@given(
    st.lists(st.tuples(st.sampled_from("123456"), st.sampled_from("123456")), max_size=7),
    st.sampled_from("123456"),
)
def test_linking_any_divs_gives_an_order_or_a_clean_error(
    hops: list[tuple[str, str]], final: str
) -> None:
    base = ShakenClaims(ORIG, ("1",), 0, "A", "x")
    divs = [DivClaims(ORIG, (to,), 0, frm) for frm, to in hops]
    try:
        order = link_div_chain(base, divs, [final])
    except DivChainBroken:
        return
    assert sorted(order) == list(range(len(divs)))


# verify_call: diverted calls.


def test_diverted_call_passes_and_reports_the_chain(keys: Any, resolve: Any) -> None:
    result = _call([_shaken(keys), _div(keys)], resolve)
    assert result.passed, result.result.reason
    assert result.result.verstat is Verstat.PASSED
    assert result.base.passed
    assert [link.claims.div for link in result.divs if link.claims] == [FIRST_DEST]
    out = result.to_dict()
    assert out["verstat"] == "TN-Validation-Passed"
    assert out["div"][0]["dest"] == [NEW_DEST]
    assert out["div"][0]["passed"]


def test_without_div_the_diverted_request_fails_as_before(keys: Any, resolve: Any) -> None:
    result = _call([_shaken(keys)], resolve)
    assert result.result.sip_code == 438
    assert "dest" in result.result.reason
    assert result.divs == ()


@pytest.mark.parametrize(
    ("changes", "dest", "why"),
    [
        ({"div": {"tn": "12155550000"}}, None, "gap or a mismatch"),
        ({}, ["12155557777"], "ends at"),
        ({"orig": {"tn": "12155550001"}}, None, "orig"),
    ],
)
def test_broken_chain_fails_438_and_keeps_the_base_result(
    keys: Any, resolve: Any, changes: dict[str, Any], dest: list[str] | None, why: str
) -> None:
    options = {"dest_tns": dest} if dest else {}
    result = _call([_shaken(keys), _div(keys, **changes)], resolve, **options)
    assert result.result.verstat is Verstat.FAILED
    assert result.result.sip_code == 438
    assert why in result.result.reason
    assert result.result.result_class.value == "div-chain-broken"
    assert result.base.passed
    assert result.base.claims is not None
    assert result.to_dict()["base"]["verstat"] == "TN-Validation-Passed"


def test_div_signed_by_an_unknown_certificate_is_436(keys: Any, pki: DemoPKI) -> None:
    resolve = _resolver(pki, {ORIG_X5U: keys[ORIG_X5U][1]})
    result = _call([_shaken(keys), _div(keys)], resolve)
    assert result.result.sip_code == 436
    assert result.base.passed
    assert not result.divs[0].passed


def test_div_with_a_bad_signature_or_stale_iat(keys: Any, resolve: Any) -> None:
    forged = _div(keys).replace(".", ".", 1)
    token, rest = forged.split(";", 1)
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{'A' * len(sig)};{rest}"
    assert _call([_shaken(keys), tampered], resolve).result.sip_code == 438
    stale = _div(keys, iat=NOW_EPOCH - 3600)
    assert _call([_shaken(keys), stale], resolve).result.sip_code == 403


def test_div_is_not_checked_when_the_shaken_passport_fails(keys: Any, resolve: Any) -> None:
    result = _call([_shaken(keys, attest="Z"), _div(keys)], resolve)
    assert result.result.sip_code == 438
    assert result.divs[0].reason.startswith("not checked")


# verify_call: Rich Call Data.


def _branded(keys: Any, **rcd: Any) -> str:
    claims = build_rcd_claims(name="Example Bank", icon=LOGO_URL, icon_content=LOGO, **rcd)
    return _shaken(keys, dest={"tn": [FIRST_DEST]}, **claims)


def _fetch(content: bytes = LOGO) -> Any:
    def fetch(url: str) -> bytes:
        assert url == LOGO_URL
        return content

    return fetch


def test_branded_call_shows_the_verified_name_and_logo(keys: Any, resolve: Any) -> None:
    result = _call([_branded(keys)], resolve, dest_tns=[FIRST_DEST], fetch=_fetch())
    assert result.passed
    assert result.rcd is not None
    assert result.rcd.verified
    assert (result.rcd.name, result.rcd.icon) == ("Example Bank", LOGO_URL)
    assert result.to_dict()["rcd"]["nam"] == "Example Bank"


@pytest.mark.parametrize(
    ("fetch", "code", "why"),
    [
        (_fetch(LOGO + b"tampered"), 438, "digest"),
        (None, 436, "not fetched"),
    ],
)
def test_rcd_failures_hide_the_name_but_keep_the_tn_result(
    keys: Any, resolve: Any, fetch: Any, code: int, why: str
) -> None:
    result = _call([_branded(keys)], resolve, dest_tns=[FIRST_DEST], fetch=fetch)
    assert result.passed  # the TN validation stands
    assert result.rcd is not None
    assert not result.rcd.verified
    assert result.rcd.sip_code == code
    assert why in result.rcd.reason
    assert result.rcd.name is None
    assert result.rcd.icon is None


def test_icon_fetch_refusal_is_reported(keys: Any, resolve: Any) -> None:
    def refuse(url: str) -> bytes:
        raise BadIdentityInfo("x5u host resolves to a non-public address")

    result = _call([_branded(keys)], resolve, dest_tns=[FIRST_DEST], fetch=refuse)
    assert result.passed
    assert result.rcd is not None
    assert result.rcd.sip_code == 436
    assert "non-public" in result.rcd.reason


def test_rcd_forbidden_by_claim_constraints(keys: Any, pki: DemoPKI) -> None:
    _key, cert = keys[ORIG_X5U]
    der = (VECTORS / "claim_constraints" / "rfc8226-rcd.der").read_bytes()
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(JWT_CLAIM_CONSTRAINTS_OID), der)
    constrained = reissue(cert, pki.intermediate, add=((ext, False),))
    resolve = _resolver(pki, {ORIG_X5U: constrained})
    result = _call([_branded(keys)], resolve, dest_tns=[FIRST_DEST], fetch=_fetch())
    assert result.passed
    assert result.rcd is not None
    assert not result.rcd.verified
    assert result.rcd.sip_code == 438
    assert "does not permit" in result.rcd.reason
    permitted = _shaken(keys, dest={"tn": [FIRST_DEST]}, rcd={"nam": "Example Bank"})
    ok = _call([permitted], resolve, dest_tns=[FIRST_DEST])
    assert ok.rcd is not None
    assert ok.rcd.verified
    assert ok.rcd.name == "Example Bank"


def test_rcd_passport_beside_the_shaken_one(keys: Any, resolve: Any) -> None:
    key = keys[DIV_X5U][0]
    payload = {
        "orig": {"tn": ORIG},
        "dest": {"tn": [FIRST_DEST]},
        "iat": NOW_EPOCH,
        **build_rcd_claims(name="Example Bank"),
    }
    rcd = format_identity(
        PassportSigner(key, DIV_X5U, ppt="rcd").sign_payload(payload), DIV_X5U, ppt="rcd"
    )
    shaken = _shaken(keys, dest={"tn": [FIRST_DEST]})
    result = _call([shaken, rcd], resolve, dest_tns=[FIRST_DEST])
    assert result.passed
    assert result.rcd is not None
    assert result.rcd.verified
    assert result.rcd.source == "rcd"
    assert result.rcd.name == "Example Bank"
    other = {**payload, "orig": {"tn": "12155550000"}}
    wrong = format_identity(
        PassportSigner(key, DIV_X5U, ppt="rcd").sign_payload(other), DIV_X5U, ppt="rcd"
    )
    bad = _call([shaken, wrong], resolve, dest_tns=[FIRST_DEST])
    assert bad.passed
    assert bad.rcd is not None
    assert not bad.rcd.verified


def test_a_malformed_header_keeps_its_place_in_the_answer(keys: Any, resolve: Any) -> None:
    # RFC 8224 section 6.2.2: 436 only when no credential at all could be obtained.
    elsewhere = "https://elsewhere.example/cert.pem"
    token = PassportSigner(keys[ORIG_X5U][0], elsewhere).sign_payload(_payload("original"))
    unknown = format_identity(token, elsewhere)
    assert _call([unknown], resolve, dest_tns=[FIRST_DEST]).result.sip_code == 436
    for values in (["not an identity", unknown], [unknown, "not an identity"]):
        assert _call(values, resolve, dest_tns=[FIRST_DEST]).result.sip_code == 438
    assert _call(["not an identity", _shaken(keys)], resolve, dest_tns=[FIRST_DEST]).passed


@given(st.lists(st.text(max_size=80), max_size=4))
def test_any_identity_values_give_a_result(values: list[str]) -> None:
    def resolve(url: str) -> ValidatedCertificate:
        raise BadIdentityInfo("none")

    result = verify_call(values, orig_tn=ORIG, dest_tns=[NEW_DEST], now=NOW_EPOCH, resolve=resolve)
    assert result.result.verstat in set(Verstat)


def test_errors_are_passport_errors() -> None:
    assert issubclass(DivChainBroken, PassportError)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["tn", "uri", "x"]), inner, max_size=2)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["orig", "dest", "div", "iat", "origid"]), _json))
def test_any_div_payload_gives_claims_or_a_clean_error(payload: dict[str, Any]) -> None:
    try:
        claims = div_claims(Passport(VECTOR["div"]["header"], payload, b"", b""))
    except PassportError:
        return
    assert claims.to_payload()["div"] == {"tn": claims.div}
