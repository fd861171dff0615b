"""Diverted (RFC 8946) and branded (RFC 9795) calls through the installed ``opensti
serve``: the README's CLI flow to a signing entry, then SIPp as the SBC at the served
node's UDP sign and verify listeners; the verifier fetches the x5u from the node's own
STI-CR (plain HTTP on loopback) and trusts the sandbox CA. Logos are served over HTTPS
on 127.0.0.1 by a test root the node is told to trust (``SSL_CERT_FILE``)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from opensti.core.certs import load_certificate_chain
from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.core.rcd import rcdi_digest
from opensti.sip.message import SIPResponse
from tests._servers import Route, free_port, free_udp_port, make_tls_files, serve
from tests.cli.test_cli_certificates import assert_refused, run_json, world
from tests.cli.test_cli_routing import _eventually, _invite, _readme_flow, _serving
from tests.core.core_support import VECTORS
from tests.lifecycle.acquire_support import World
from tests.sandbox.conftest import clock, sandbox_factory
from tests.sip.sip_support import identity_fields, needs_sipp, request, run_sipp, udp_client

__all__ = ["clock", "sandbox_factory", "world"]

pytestmark = [pytest.mark.integration, pytest.mark.interop, needs_sipp]

CALLER, DIVERTED_FROM, FORWARDED = "12155550121", "12155550131", "12155550199"
CALLS = 3
LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()
BRAND = "Example Bank"
SECSIPIDX = shutil.which("secsipidx")


@pytest.fixture
def logo(world: World, tmp_path: Path) -> Iterator[str]:
    """A logo's https URL on 127.0.0.1, whose TLS root every opensti process of the
    world trusts (requested before ``served``, which starts the node)."""
    tls = make_tls_files(tmp_path / "logo-tls", label="logos")
    world.env["SSL_CERT_FILE"] = str(tls.root_pem)
    with serve(tls) as server:
        server.routes["/logo.png"] = Route.body(LOGO, content_type="image/png")
        yield server.url("/logo.png")


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


def _rcd_of(response: SIPResponse) -> dict[str, Any] | None:
    value = response.header("identity")
    assert value is not None
    payload = decode_passport(parse_identity(value).token).payload
    return payload.get("rcd")  # type: ignore[no-any-return]


def _secsipidx_verifies(identity: str, tmp_path: Path) -> None:
    """secsipidx checks the SHAKEN PASSporT's signature with the x5u's leaf key."""
    if SECSIPIDX is None:
        pytest.skip("secsipidx not installed")
    chain = httpx.get(parse_identity(identity).info, trust_env=False).content
    public = load_certificate_chain(chain).leaf.public_key()
    key = tmp_path / "leaf-public.pem"
    key.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "identity.txt").write_text(identity)
    checked = subprocess.run(
        [SECSIPIDX, "-check", "-fidentity", str(tmp_path / "identity.txt"),
         "-fpubkey", str(key), "-expire", "60"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_entry_brand_is_signed_by_the_sign_listener_and_shown_once_verified(
    world: World, logo: str, served: tuple[str, str, str], tmp_path: Path
) -> None:
    _base, sign, verify = served
    assert _rcd_of(_invite(_address(sign), CALLER, "plain@t")) is None
    # Set while serve runs: the logo is fetched now, and the node's keyring follows.
    entry = run_json(world, "cert", "set", "east", "--rcd-name", BRAND, "--rcd-icon", logo)
    assert (entry["rcd_name"], entry["rcd_icon_digest"]) == (BRAND, rcdi_digest(LOGO))
    assert_refused(world, 2, "https", "cert", "set", "east", "--rcd-icon", "http://a.example/")
    missing = logo.replace("logo.png", "missing.png")
    assert_refused(world, 2, "cannot be used", "cert", "set", "east", "--rcd-icon", missing)
    _eventually(lambda: _rcd_of(_invite(_address(sign), CALLER, "brand@t")) is not None, "brand")
    # SIPp as the SBC at the sign listener: a 302 with a SHAKEN Identity per call.
    asyncio.run(run_sipp(sign, "brand_sign.xml", tmp_path, calls=CALLS))
    response = _invite(_address(sign), CALLER, "branded@t")
    identity = response.header("identity")
    assert identity is not None
    payload = decode_passport(parse_identity(identity).token).payload
    assert payload["rcd"] == {"nam": BRAND, "icn": logo}
    assert payload["rcdi"] == {"/icn": rcdi_digest(LOGO)}
    # secsipidx (which knows no rcd) still verifies the SHAKEN PASSporT carrying it.
    _secsipidx_verifies(identity, tmp_path)
    # The terminating STI-VS fetches the logo, checks its rcdi and logs the name.
    rows = identity_fields(tmp_path, [[identity]])
    asyncio.run(run_sipp(verify, "verify.xml", tmp_path, inf=rows, calls=CALLS))
    branded = _inbound(world)
    assert len(branded) == CALLS, branded
    assert {(c["verstat"], c["rcd_name"], c["rcd_icon"]) for c in branded} == {
        ("TN-Validation-Passed", BRAND, logo)
    }


def _address(target: str) -> tuple[str, int]:
    host, port = target.rsplit(":", 1)
    return host, int(port)
