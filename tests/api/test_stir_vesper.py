"""Comcast vesper's simplified bodies on the ATIS-1000082 paths, answered in vesper's
shape (Comcast/vesper APIs.md: the claims at the top level, ``signingResponse`` and
``verificationResponse`` with ``reasonCode``/``reasonString`` on failure), and /health."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from opensti.api.stir import create_stir_app
from opensti.core.identity import parse_identity
from tests.api.stir_support import Deployment
from tests.api.test_stir_app import DEST, ORIG, app, client, verify

__all__ = ["app", "client"]

pytestmark = pytest.mark.integration


def vesper_signing(**overrides: Any) -> dict[str, Any]:
    body = {
        "attest": "A",
        "dest": {"tn": [DEST]},
        "iat": int(time.time()),
        "orig": {"tn": ORIG},
        "origid": "1db966a6-8f30-11e7-bc77-fa163e70349d",
    }
    return {**body, **overrides}


def vesper_verification(identity: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "dest": {"tn": [DEST]},
        "iat": int(time.time()),
        "identity": identity,
        "orig": {"tn": [ORIG]},
    }
    return {**body, **overrides}


async def test_a_vesper_signing_body_gets_an_identity(
    client: httpx.AsyncClient, site: Deployment
) -> None:
    response = await client.post("/stir/v1/signing", json=vesper_signing())
    assert response.status_code == 200, response.text
    identity = response.json()["signingResponse"]["identity"]
    assert parse_identity(identity).info == site.x5u
    assert (await verify(client, identity))["verstat"] == "TN-Validation-Passed"


async def test_a_vesper_verification_body_is_answered_in_vesper_shape(
    client: httpx.AsyncClient, site: Deployment
) -> None:
    signed = await client.post("/stir/v1/signing", json=vesper_signing())
    identity = signed.json()["signingResponse"]["identity"]
    body = vesper_verification(identity)
    response = await client.post("/stir/v1/verification", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()["verificationResponse"]
    assert answer["verstat"] == "TN-Validation-Passed"
    assert (answer["orig"], answer["dest"], answer["iat"]) == (
        body["orig"],
        body["dest"],
        body["iat"],
    )
    assert answer["jwt"]["header"] == {
        "alg": "ES256",
        "ppt": "shaken",
        "typ": "passport",
        "x5u": site.x5u,
    }
    assert answer["jwt"]["claims"]["orig"] == {"tn": ORIG}
    assert answer["jwt"]["claims"]["attest"] == "A"


async def test_vesper_failures_come_back_in_vesper_shape(client: httpx.AsyncClient) -> None:
    bad = await client.post("/stir/v1/signing", json=vesper_signing(attest="D"))
    assert bad.status_code == 400
    assert bad.json() == {
        "signingResponse": {
            "reasonCode": "InvalidInput",
            "reasonString": "attest must be A, B or C, not 'D'",
        }
    }
    signed = await client.post("/stir/v1/signing", json=vesper_signing())
    identity = signed.json()["signingResponse"]["identity"]
    wrong_dest = vesper_verification(identity, dest={"tn": ["12155550199"]})
    failed = await client.post("/stir/v1/verification", json=wrong_dest)
    assert failed.status_code == 400, failed.text
    reason = failed.json()["verificationResponse"]
    assert reason["verstat"] == "TN-Validation-Failed"
    assert reason["reasonCode"] == 438
    assert set(reason) == {"verstat", "reasonCode", "reasonString"}


async def test_health_reports_what_goes_unsigned() -> None:
    problems = ["no entry is the default signer: no call is signed"]
    stir = create_stir_app(problems=lambda: problems)
    transport = httpx.ASGITransport(app=stir)
    async with httpx.AsyncClient(transport=transport, base_url="http://stir.test") as c:
        degraded = (await c.get("/health")).json()
        problems.clear()
        healthy = (await c.get("/health")).json()
    assert degraded == {
        "status": "degraded",
        "problems": ["no entry is the default signer: no call is signed"],
    }
    assert healthy == {"status": "ok"}
