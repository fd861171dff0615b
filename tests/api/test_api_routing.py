"""Which entry signs which call over /api/v1: routing on POST, PATCH and DELETE with the
same checks as the CLI (problem JSON, nothing half-changed), and /sign saying which
attestation it used and where it came from."""

from __future__ import annotations

from typing import Any

import pytest

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.store import Role
from tests.api.api_support import Mgmt
from tests.api.test_api_accounts import flow, ok, sandbox_ca
from tests.lifecycle.acquire_support import World

__all__ = ["flow"]

pytestmark = pytest.mark.integration


async def _two_entries(mgmt: Mgmt, world: World) -> None:
    """east (prefix 1215, attest A) and west, west with the first certificate."""
    await ok(await mgmt.call("POST", "/cas", json=sandbox_ca(world)), 201)
    kid, hmac_key = world.sandbox.state.add_eab()
    account = {"ca": "sandbox", "email": "ops@example.net", "agree_tos": True,
               "eab_kid": kid, "eab_hmac_key": hmac_key, "name": "main"}  # fmt: skip
    await ok(await mgmt.call("POST", "/accounts", json=account), 201)
    stipa = {"user_id": "demo", "password": DEMO_PASSWORD, "base_url": world.sandbox.stipa_base_url}
    await ok(await mgmt.call("PUT", "/stipa/123H", json=stipa))
    base = {"acme_account": "main", "stipa_account_id": "123H"}
    east = await ok(
        await mgmt.call(
            "POST",
            "/entries",
            json={**base, "name": "east", "spc": "123H", "prefixes": ["1215"], "attest": "A"},
        ),
        201,
    )
    assert (east["prefixes"], east["attest"], east["default_signer"]) == (["1215"], "A", False)
    await ok(await mgmt.call("POST", "/entries", json={**base, "name": "west", "spc": "456J"}), 201)


async def _sign(mgmt: Mgmt, orig: str, **fields: Any) -> dict[str, Any]:
    body = {"orig": orig, "dest": "12155550131", **fields}
    return await ok(await mgmt.call("POST", "/sign", Role.OPERATOR, json=body))  # type: ignore[no-any-return]


async def test_routing_over_the_api(flow: tuple[Mgmt, World]) -> None:
    mgmt, world = flow
    await _two_entries(mgmt, world)
    issued = await ok(await mgmt.call("POST", "/entries/west/request", Role.OPERATOR))
    assert issued["notes"][0].startswith("entry 'west' is the default signer")
    west_x5u = issued["certificate"]["x5u"]

    # Without attest the entry's default is used, and the answer says so.
    signed = await _sign(mgmt, "12025550100")
    assert (signed["entry"], signed["attest"], signed["attest_from"]) == (
        "west",
        "C",
        "entry default",
    )
    assert decode_passport(parse_identity(signed["identity"]).token).payload["attest"] == "C"
    asked = await _sign(mgmt, "12025550100", attest="B")
    assert (asked["attest"], asked["attest_from"]) == ("B", "request")

    # east claims 1215 but has no certificate: its calls are refused, not signed by west.
    refused = await mgmt.call("POST", "/sign", Role.OPERATOR, json={"orig": "12155550121",
                              "dest": "12025550199"})  # fmt: skip
    assert refused.status_code == 409
    assert "has no active certificate" in refused.json()["detail"]

    # PATCH moves the default and says from whom; prefixes replace the list.
    changed = await ok(
        await mgmt.call("PATCH", "/entries/east", json={"default_signer": True, "prefixes": []})
    )
    assert (changed["default_signer"], changed["prefixes"]) == (True, [])
    assert "entry 'west' is no longer the default signer" in changed["notes"]
    moved_back = await ok(
        await mgmt.call("PATCH", "/entries/west", json={"default_signer": True, "attest": "B"})
    )
    assert moved_back["attest"] == "B"
    assert (await _sign(mgmt, "12155550121"))["x5u"] == west_x5u

    # Disabled, west signs nothing; enabled again, it does.
    await ok(await mgmt.call("PATCH", "/entries/west", json={"default_signer": False}))
    await ok(await mgmt.call("PATCH", "/entries/west", json={"enabled": False}))
    off = await mgmt.call("POST", "/sign", Role.OPERATOR, json={"orig": "12025550100",
                          "dest": "12155550131", "entry": "west"})  # fmt: skip
    assert off.status_code == 404  # a disabled entry is not among the signers
    await ok(
        await mgmt.call("PATCH", "/entries/west", json={"enabled": True, "prefixes": ["1202"]})
    )
    assert (await _sign(mgmt, "12025550100"))["attest"] == "B"

    # Removed, its chain stays published (the STI-CR serves it until it expires).
    removed = await ok(await mgmt.call("DELETE", "/entries/west"))
    assert removed == {"name": "west", "still_published": 1, "revoked": []}
    names = {e["name"] for e in await ok(await mgmt.call("GET", "/entries", Role.READ_ONLY))}
    assert names == {"east"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("PATCH", "/entries/west", {"prefixes": ["1215"]}, 409, "belongs to entry 'east'"),
        ("PATCH", "/entries/west", {"prefixes": ["12a"]}, 400, "prefix '12a' is not valid"),
        ("PATCH", "/entries/east", {"attest": "D"}, 400, "attestation 'D' is not A, B or C"),
        ("PATCH", "/entries/nope", {"enabled": True}, 404, "nope"),
        ("DELETE", "/entries/west", None, 409, "default signer and cannot be removed"),
        ("PATCH", "/entries/west", {"enabled": False}, 409, "cannot be disabled"),
        ("DELETE", "/accounts/main", None, 409, "used by entry(ies) 'east', 'west'"),
        ("DELETE", "/cas/sandbox", None, 409, "used by ACME account(s) 'main'"),
    ],
)
async def test_routing_refusals_are_problems_and_change_nothing(
    flow: tuple[Mgmt, World], method: str, path: str, body: Any, status: int, detail: str
) -> None:
    mgmt, world = flow
    await _two_entries(mgmt, world)
    await ok(await mgmt.call("PATCH", "/entries/west", json={"default_signer": True}))
    before = world.snapshot()
    response = await mgmt.call(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]
    assert world.snapshot() == before
