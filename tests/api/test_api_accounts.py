"""Accounts, STI-PA credentials, entries and certificates over /api/v1, against a real
sandbox STI-PA + STI-CA on 127.0.0.1; secrets never come back out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensti.api import create_api
from opensti.calls import CallLog
from opensti.core.certs import load_certificate_chain, tnauthlist_of
from opensti.core.identity import parse_identity
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.sandbox.pki import new_key, private_key_pem
from opensti.store import Role
from tests.api.api_support import Mgmt, add_tokens
from tests.lifecycle.acquire_support import World, make_world
from tests.sandbox.conftest import SandboxFactory

pytestmark = pytest.mark.integration


@pytest.fixture
async def flow(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> AsyncIterator[tuple[Mgmt, World]]:
    world = make_world(sandbox_factory(), tmp_path)
    api = create_api(world.app)
    transport = httpx.ASGITransport(app=api)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            log = CallLog(world.app.database)
            yield Mgmt(None, world.app, api, client, log, add_tokens(world.app)), world  # type: ignore[arg-type]
    finally:
        world.app.close()


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def sandbox_ca(world: World) -> dict[str, Any]:
    return {
        "name": "sandbox",
        "directory_url": world.sandbox.ca_directory_url,
        "needs_eab": True,
        "honours_validity": True,
    }


async def test_account_to_certificate_to_signed_call(flow: tuple[Mgmt, World]) -> None:
    mgmt, world = flow
    await ok(await mgmt.call("POST", "/cas", json=sandbox_ca(world)), 201)
    assert "sandbox" in {ca["name"] for ca in await ok(await mgmt.call("GET", "/cas"))}
    kid, hmac_key = world.sandbox.state.add_eab()
    account = await ok(
        await mgmt.call(
            "POST",
            "/accounts",
            json={
                "ca": "sandbox",
                "email": "ops@example.net",
                "agree_tos": True,
                "eab_kid": kid,
                "eab_hmac_key": hmac_key,
                "name": "main",
            },
        ),
        201,
    )
    assert account["account_url"].startswith("https://127.0.0.1:")
    assert account["fingerprint"].startswith("SHA256 ")
    shown = await ok(await mgmt.call("GET", "/accounts/main", Role.READ_ONLY))
    assert (shown["thumbprint"], shown["eab_kid"]) == (account["thumbprint"], kid)

    stipa = {"user_id": "demo", "password": DEMO_PASSWORD, "base_url": world.sandbox.stipa_base_url}
    assert (await ok(await mgmt.call("PUT", "/stipa/123h", json=stipa)))["account_id"] == "123H"
    await ok(await mgmt.call("POST", "/stipa/123H/test"))
    for name, spc in (("east", "123H"), ("west", "456J")):
        entry = {"name": name, "spc": spc, "acme_account": "main", "stipa_account_id": "123H"}
        await ok(await mgmt.call("POST", "/entries", json=entry), 201)

    issued = await ok(await mgmt.call("POST", "/entries/west/request", Role.OPERATOR))
    cert_id = issued["certificate"]["id"]
    assert issued["steps"][-1] == "activate"
    detail = await ok(await mgmt.call("GET", "/entries/west", Role.READ_ONLY))
    assert detail["entry"]["active"]["id"] == cert_id
    assert [c["id"] for c in detail["certificates"]] == [cert_id]
    listed = await ok(await mgmt.call("GET", "/entries/west/certificates", Role.READ_ONLY))
    assert [c["state"] for c in listed] == ["active"]
    chain = await mgmt.call("GET", "/entries/west/chain", Role.READ_ONLY)
    assert chain.headers["content-type"] == "application/pem-certificate-chain"
    leaf = load_certificate_chain(chain.content).leaf
    assert tnauthlist_of(leaf).single_spc == "456J"  # type: ignore[union-attr]
    by_id = await mgmt.call("GET", f"/certificates/{cert_id}/chain.pem", Role.READ_ONLY)
    assert by_id.content == chain.content
    cert = await ok(await mgmt.call("GET", f"/certificates/{cert_id}", Role.READ_ONLY))
    assert (cert["spc"], cert["entry"], cert["state"]) == ("456J", "west", "active")
    no_cert = await mgmt.call("GET", "/entries/east/chain", Role.READ_ONLY)
    assert no_cert.status_code == 409

    # The new certificate signs at once: the API reloads the keyring after a request.
    signed = await ok(
        await mgmt.call(
            "POST",
            "/sign",
            Role.OPERATOR,
            json={"orig": "12025550100", "dest": "12025550199", "entry": "west"},
        )
    )
    assert parse_identity(signed["identity"]).info == issued["certificate"]["x5u"]
    assert signed["x5u"].endswith(f"/sti-cr/{cert_id}.pem")

    # No response, in any of these steps, gave a secret back.
    secrets = [hmac_key, DEMO_PASSWORD, "PRIVATE KEY"]
    for body in mgmt.seen:
        for secret in secrets:
            assert secret not in body


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind", "detail"),
    [
        (
            "POST",
            "/accounts",
            {"ca": "nope", "email": "a@b.net", "agree_tos": True},
            404,
            "NotFound",
            "unknown CA 'nope'",
        ),
        (
            "POST",
            "/accounts",
            {
                "ca": "sandbox",
                "email": "a@b.net",
                "agree_tos": True,
                "eab_kid": "k",
                "eab_hmac_key": "not base64url!",
            },
            400,
            "InvalidInput",
            "base64url",
        ),
        (
            "POST",
            "/cas",
            {"name": "sandbox", "directory_url": "https://x.example/d"},
            409,
            "Conflict",
            "sandbox",
        ),
        (
            "PUT",
            "/stipa/123H",
            {"user_id": "demo", "password": "p" * 190},
            400,
            "InvalidInput",
            "at most 189",
        ),
        (
            "PUT",
            "/stipa/123H",
            {"user_id": "u" * 256, "password": "p"},
            400,
            "InvalidInput",
            "at most 255",
        ),
        ("PUT", "/stipa/12345", {"user_id": "demo", "password": "p"}, 400, "InvalidInput", "OCN"),
        (
            "POST",
            "/entries",
            {"name": "e", "spc": "123H", "acme_account": "nope", "stipa_account_id": "123H"},
            404,
            "NotFound",
            "nope",
        ),
        ("POST", "/entries/nope/request", None, 404, "NotFound", "nope"),
        ("GET", "/certificates/99", None, 404, "NotFound", "99"),
    ],
)
async def test_refusals_are_problems_and_change_nothing(
    flow: tuple[Mgmt, World],
    method: str,
    path: str,
    body: Any,
    status: int,
    kind: str,
    detail: str,
) -> None:
    mgmt, world = flow
    await ok(await mgmt.call("POST", "/cas", json=sandbox_ca(world)), 201)
    before = world.snapshot()
    response = await mgmt.call(method, path, json=body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["type"] == f"urn:opensti:problem:{kind}"
    assert problem["status"] == status
    assert detail in problem["detail"]
    assert world.snapshot() == before
    for secret in ("not base64url!", "p" * 190):
        assert secret not in response.text


async def test_upstream_refusals_are_502(flow: tuple[Mgmt, World]) -> None:
    mgmt, world = flow
    await ok(await mgmt.call("POST", "/cas", json=sandbox_ca(world)), 201)
    wrong = {
        "user_id": "demo",
        "password": "wrong-password-1",
        "base_url": world.sandbox.stipa_base_url,
    }
    await ok(await mgmt.call("PUT", "/stipa/123H", json=wrong))
    refused = await mgmt.call("POST", "/stipa/123H/test")
    assert refused.status_code == 502
    assert refused.json()["type"] == "urn:opensti:problem:StiPaRefused"
    key_pem = private_key_pem(new_key()).decode()
    before = world.snapshot()
    unknown = await mgmt.call(
        "POST", "/accounts/import", json={"ca": "sandbox", "key_pem": key_pem}
    )
    assert unknown.status_code == 502, unknown.text
    assert unknown.json()["type"] == "urn:opensti:problem:AcmeProblem"
    assert world.snapshot() == before
    for body in mgmt.seen:
        assert "wrong-password-1" not in body
        assert key_pem.splitlines()[1] not in body
