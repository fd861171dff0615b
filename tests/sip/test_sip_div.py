"""Diverted calls through the redirect server (RFC 8946): the sign listener adds a div
PASSporT for an INVITE that carries an Identity and a Diversion or History-Info; the
verify listener checks the SHAKEN PASSporT and the div chain together."""

from __future__ import annotations

import time

import pytest
from sip_support import DEST, ORIG, X5U, DemoSigner, request, udp_client
from test_sip_server import PAI, _sign, _verify, address_of, records, server  # noqa: F401

from opensti.core.identity import format_identity, parse_identity
from opensti.core.passport import PassportSigner, ShakenClaims, decode_passport
from opensti.core.rcd import build_rcd_claims
from opensti.sip import CallRecord, FailurePolicy, Mode, SIPServer

pytestmark = pytest.mark.integration

FORWARDED = "12155550199"
TARGET = f"sip:+{FORWARDED}@127.0.0.1;user=phone"


def _diverted(identity: str, *headers: tuple[str, str]) -> bytes:
    return request(
        uri=TARGET,
        to=f"<{TARGET}>",
        headers=[PAI, ("Identity", identity), *headers],
    )


@pytest.mark.parametrize(
    "header",
    [
        ("Diversion", f"<sip:+{DEST}@127.0.0.1;user=phone>;reason=unconditional;counter=1"),
        (
            "History-Info",
            f"<sip:+{DEST}@127.0.0.1;user=phone>;index=1, <{TARGET}>;index=1.1",
        ),
    ],
)
async def test_diverted_call_is_signed_with_a_div_passport_and_verifies(
    server: SIPServer,  # noqa: F811
    call_signer: DemoSigner,
    header: tuple[str, str],
) -> None:
    shaken = call_signer.sign(ORIG, [DEST], "A", "c1")
    div = await _sign(server, _diverted(shaken, header))
    parsed = parse_identity(div)
    assert parsed.ppt == "div"
    payload = decode_passport(parsed.token).payload
    assert payload["div"] == {"tn": DEST}
    assert payload["dest"] == {"tn": [FORWARDED]}

    response = await _verify(
        server, [shaken, div], FailurePolicy.REJECT, uri=TARGET, to=f"<{TARGET}>"
    )
    assert response.status == 302, response.reason
    assert "verstat=TN-Validation-Passed" in (response.header("p-asserted-identity") or "")


async def test_div_chain_with_a_gap_is_rejected_438(
    server: SIPServer,  # noqa: F811
    call_signer: DemoSigner,
) -> None:
    shaken = call_signer.sign(ORIG, [DEST], "A", "c2")
    gap = call_signer.sign_div(ORIG, [FORWARDED], "12155550100", "c2")
    response = await _verify(
        server, [shaken, gap], FailurePolicy.REJECT, uri=TARGET, to=f"<{TARGET}>"
    )
    assert response.status == 438
    cont = await _verify(server, [shaken, gap], uri=TARGET, to=f"<{TARGET}>")
    assert cont.status == 302
    assert "verstat=TN-Validation-Failed" in (cont.header("p-asserted-identity") or "")


async def test_undiverted_call_with_identity_is_signed_shaken(
    server: SIPServer,  # noqa: F811
    call_signer: DemoSigner,
) -> None:
    shaken = call_signer.sign(ORIG, [DEST], "A", "c3")
    async with udp_client(address_of(server, "udp", Mode.SIGN)) as client:
        response = await client.exchange(request(headers=[PAI, ("Identity", shaken)]))
    identity = response.header("identity")
    assert identity is not None
    assert parse_identity(identity).ppt == "shaken"


async def test_branded_diverted_call_logs_the_verified_name(
    server: SIPServer,  # noqa: F811
    call_signer: DemoSigner,
    passport_signer: PassportSigner,
    records: list[CallRecord],  # noqa: F811
) -> None:
    claims = ShakenClaims(ORIG, (DEST,), int(time.time()), "A", "branded")
    payload = {**claims.to_payload(), **build_rcd_claims(name="Example Bank")}
    shaken = format_identity(passport_signer.sign_payload(payload), X5U)
    div = call_signer.sign_div(ORIG, [FORWARDED], DEST, "c4")
    response = await _verify(server, [shaken, div], uri=TARGET, to=f"<{TARGET}>")
    assert response.status == 302
    [record] = [r for r in records if r.call_id == response.call_id]
    assert record.verstat == "TN-Validation-Passed"
    assert record.rcd_name == "Example Bank"


async def test_branded_call_logs_the_verified_name_and_keeps_its_verstat(
    server: SIPServer,  # noqa: F811
    passport_signer: PassportSigner,
    records: list[CallRecord],  # noqa: F811
) -> None:
    claims = ShakenClaims(ORIG, (DEST,), int(time.time()), "A", "branded-one")
    payload = {**claims.to_payload(), **build_rcd_claims(name="Example Bank")}
    branded = format_identity(passport_signer.sign_payload(payload), X5U)
    response = await _verify(server, [branded], FailurePolicy.REJECT)
    assert response.status == 302
    assert "verstat=TN-Validation-Passed" in (response.header("p-asserted-identity") or "")
    [record] = [r for r in records if r.call_id == response.call_id]
    assert record.rcd_name == "Example Bank"
