"""``/api/v1`` sign and verify for diverted calls (RFC 8946) and Rich Call Data (RFC 9795)."""

from __future__ import annotations

from typing import Any

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.store import Role
from tests.api.api_support import Mgmt
from tests.api.test_api_calls import ORIG, assert_problem, sign

FIRST, FORWARDED = "12025550199", "12025550177"


async def verify(mgmt: Mgmt, identities: list[str], to: str) -> dict[str, Any]:
    response = await mgmt.call(
        "POST",
        "/verify",
        Role.OPERATOR,
        json={"identities": identities, "from": ORIG, "to": to},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_diverted_call_signed_and_verified_through_the_api(mgmt: Mgmt) -> None:
    shaken = (await sign(mgmt, attest="A", dest=FIRST))["identity"]
    div = (await sign(mgmt, dest=FORWARDED, div=FIRST))["identity"]
    header = parse_identity(div)
    assert header.ppt == "div"
    assert decode_passport(header.token).payload["div"] == {"tn": FIRST}

    result = await verify(mgmt, [shaken, div], FORWARDED)
    assert result["verstat"] == "TN-Validation-Passed", result
    assert [link["div"] for link in result["div"]] == [FIRST]

    gap = (await sign(mgmt, dest=FORWARDED, div="12025550111"))["identity"]
    result = await verify(mgmt, [shaken, gap], FORWARDED)
    assert result["verstat"] == "TN-Validation-Failed"
    assert result["sip_code"] == 438
    assert result["result_class"] == "div-chain-broken"
    assert result["base"]["verstat"] == "TN-Validation-Passed"


async def test_branded_call_shows_the_verified_name(mgmt: Mgmt) -> None:
    signed = await sign(mgmt, attest="A", dest=FIRST, rcd_name="Example Bank")
    payload = decode_passport(parse_identity(signed["identity"]).token).payload
    assert payload["rcd"] == {"nam": "Example Bank"}
    result = await verify(mgmt, [signed["identity"]], FIRST)
    assert result["verstat"] == "TN-Validation-Passed"
    assert result["rcd"]["verified"] is True
    assert result["rcd"]["nam"] == "Example Bank"


async def test_div_with_shaken_claims_is_a_problem(mgmt: Mgmt) -> None:
    response = await mgmt.call(
        "POST",
        "/sign",
        Role.OPERATOR,
        json={"orig": ORIG, "dest": FORWARDED, "div": FIRST, "attest": "A"},
    )
    assert response.status_code == 400
    assert_problem(response.json(), 400, "InvalidInput", "div PASSporT")


async def test_call_log_keeps_the_name_only_when_verified(mgmt: Mgmt) -> None:
    signed = await sign(mgmt, attest="A", dest=FIRST, rcd_name="Example Bank")
    for call_id, to in (("good@pbx", FIRST), ("bad@pbx", FORWARDED)):
        await mgmt.call(
            "POST",
            "/verify",
            Role.OPERATOR,
            json={"identity": signed["identity"], "from": ORIG, "to": to, "call_id": call_id},
        )
    assert mgmt.call_log.flush()
    page = (await mgmt.call("GET", "/calls", Role.READ_ONLY, params={"tn": ORIG})).json()
    names = {c["call_id"]: c["rcd_name"] for c in page["calls"] if c["direction"] == "inbound"}
    # The second call fails TN validation (dest mismatch): its name is not kept.
    assert names == {"good@pbx": "Example Bank", "bad@pbx": None}
