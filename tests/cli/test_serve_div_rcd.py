"""Diverted (RFC 8946) and branded (RFC 9795) calls through the installed ``opensti
serve``: the README's CLI flow to a signing entry, then SIPp as the SBC at the served
node's UDP sign and verify listeners; the verifier fetches the x5u from the node's own
STI-CR (plain HTTP on loopback) and trusts the sandbox CA."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.sip.message import SIPResponse
from tests._servers import free_udp_port
from tests.cli.test_cli_certificates import run_json, world
from tests.cli.test_cli_routing import _invite, _readme_flow, _serving, free_port
from tests.lifecycle.acquire_support import World
from tests.sandbox.conftest import clock, sandbox_factory
from tests.sip.sip_support import identity_fields, needs_sipp, request, run_sipp, udp_client

__all__ = ["clock", "sandbox_factory", "world"]

pytestmark = [pytest.mark.integration, pytest.mark.interop, needs_sipp]

CALLER, DIVERTED_FROM, FORWARDED = "12155550121", "12155550131", "12155550199"
CALLS = 3


@pytest.fixture
def served(world: World, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """``opensti serve`` after the README flow, its x5u on its own STI-CR, with a verify
    listener that trusts the sandbox CA: (base URL, sign target, verify target)."""
    port = free_port()
    world.env["OPENSTI_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    _readme_flow(world)
    anchors = tmp_path / "ca-roots.pem"
    anchors.write_bytes(
        b"".join(a.public_bytes(serialization.Encoding.PEM) for a in world.sandbox.trust_anchors)
    )
    world.env.update(
        OPENSTI_CA_TRUST_ANCHORS=str(anchors),
        OPENSTI_X5U_ALLOW_HTTP="true",
        OPENSTI_X5U_PRIVATE_HOSTS="127.0.0.1",
    )
    verify = f"127.0.0.1:{free_udp_port()}"
    with _serving(world, port=port, listen=[f"udp:{verify}/verify"]) as (base, sip):
        yield base, f"{sip[0]}:{sip[1]}", verify


def _diverted_invite(target: str, shaken: str) -> SIPResponse:
    """What the sign listener answers an INVITE to ``FORWARDED`` diverted from the
    SHAKEN PASSporT's dest (a Diversion header, RFC 5806)."""
    invite = request(
        uri=f"sip:+{FORWARDED}@127.0.0.1;user=phone",
        from_=f"<sip:+{CALLER}@127.0.0.1;user=phone>;tag=d1",
        to=f"<sip:+{FORWARDED}@127.0.0.1;user=phone>",
        headers=[
            ("Diversion", f"<sip:+{DIVERTED_FROM}@127.0.0.1;user=phone>;reason=unconditional"),
            ("Identity", shaken),
        ],
    )

    async def exchange() -> SIPResponse:
        async with udp_client(_address(target)) as client:
            return await client.exchange(invite)

    return asyncio.run(exchange())


def _inbound(world: World) -> list[dict[str, Any]]:
    calls = run_json(world, "calls", "list", "--tn", CALLER, "--limit", "200")["calls"]
    return [call for call in calls if call["direction"] == "inbound"]


def test_a_diverted_call_is_signed_then_verified_as_a_whole(
    world: World, served: tuple[str, str, str], tmp_path: Path
) -> None:
    _base, sign, verify = served
    shaken = _invite(_address(sign), CALLER, "original@t").header("identity")
    assert shaken is not None
    # (a) The diverting provider's STI-AS adds a div PASSporT (RFC 8946 section 4).
    received = identity_fields(tmp_path, [[shaken]])
    asyncio.run(run_sipp(sign, "divert_sign.xml", tmp_path, inf=received, calls=CALLS))
    response = _diverted_invite(sign, shaken)
    div = response.header("identity")
    assert response.status == 302
    assert div is not None
    payload = decode_passport(parse_identity(div).token).payload
    assert payload["div"] == {"tn": DIVERTED_FROM}
    assert payload["dest"] == {"tn": [FORWARDED]}
    # (b) The terminating STI-VS verifies SHAKEN + div as one chain to the request's dest.
    rows = identity_fields(tmp_path, [[shaken, div]])
    asyncio.run(run_sipp(verify, "divert_verify.xml", tmp_path, inf=rows, calls=CALLS))
    verified = _inbound(world)
    assert len(verified) == CALLS, verified
    assert {(c["action"], c["to"], c["verstat"], c["sip_code"]) for c in verified} == {
        ("verified", FORWARDED, "TN-Validation-Passed", 302)
    }


def test_a_branded_call_shows_its_verified_name_in_the_call_log(
    world: World, served: tuple[str, str, str], tmp_path: Path
) -> None:
    base, _sign, verify = served
    token = run_json(world, "token", "create", "--role", "operator", "--name", "sbc")["token"]
    signed = httpx.post(
        f"{base}/api/v1/sign",
        json={"orig": CALLER, "dest": DIVERTED_FROM, "rcd_name": "Example Bank"},
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    assert signed.status_code == 200, signed.text
    rows = identity_fields(tmp_path, [[signed.json()["identity"]]])
    asyncio.run(run_sipp(verify, "verify.xml", tmp_path, inf=rows, calls=CALLS))
    branded = _inbound(world)
    assert len(branded) == CALLS, branded
    assert {(c["action"], c["verstat"], c["rcd_name"]) for c in branded} == {
        ("verified", "TN-Validation-Passed", "Example Bank")
    }


def _address(target: str) -> tuple[str, int]:
    host, port = target.rsplit(":", 1)
    return host, int(port)
