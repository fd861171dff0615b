"""/api/v1 served by a real uvicorn on 127.0.0.1: token, sign, verify, call log, docs."""

from __future__ import annotations

import httpx
import pytest

from opensti.store import Role
from tests._servers import serve_asgi
from tests.api.api_support import Mgmt

pytestmark = pytest.mark.integration


async def test_over_a_socket(mgmt: Mgmt) -> None:
    async with serve_asgi(mgmt.api) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        operator = {"Authorization": f"Bearer {mgmt.tokens[Role.OPERATOR]}"}
        assert (await client.get("/api/v1/calls")).status_code == 401
        call = {"orig": "12025550100", "dest": "12025550199", "call_id": "sock@x"}
        signed = await client.post("/api/v1/sign", json=call, headers=operator)
        assert signed.status_code == 200, signed.text
        verified = await client.post(
            "/api/v1/verify",
            json={"identity": signed.json()["identity"], "from": call["orig"], "to": call["dest"]},
            headers=operator,
        )
        assert verified.json()["verstat"] == "TN-Validation-Passed"
        assert mgmt.call_log.flush()
        logged = await client.get("/api/v1/calls/sock@x", headers=operator)
        assert logged.json()["records"][0]["certificate"]["spc"] == "123H"
        document = await client.get("/api/v1/openapi.json")
        assert "/api/v1/sign" in document.json()["paths"]
