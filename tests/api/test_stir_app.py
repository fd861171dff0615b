"""The ATIS-1000082 API through httpx's ASGI transport (the x5u repository is real HTTPS)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from opensti.api.stir import STIRApp
from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.verification import FailurePolicy
from tests._servers import TLSFiles
from tests.api.stir_support import STIR_HEADERS, Deployment, stir_app

pytestmark = pytest.mark.integration

ORIG, DEST = "12155550121", "12155550131"


@pytest.fixture
async def app(site: Deployment, tls: TLSFiles) -> AsyncIterator[STIRApp]:
    async with stir_app(site, tls) as built:
        yield built


@pytest.fixture
async def client(app: STIRApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://stir.test", headers=STIR_HEADERS
    ) as c:
        yield c


def signing_request(**overrides: Any) -> dict[str, Any]:
    request = {
        "attest": "A",
        "dest": {"tn": [DEST]},
        "iat": int(time.time()),
        "orig": {"tn": ORIG},
        "origid": "123e4567-e89b-12d3-a456-426655440000",
    }
    request.update(overrides)
    return {"signingRequest": request}


async def sign(client: httpx.AsyncClient, **overrides: Any) -> str:
    response = await client.post("/stir/v1/signing", json=signing_request(**overrides))
    assert response.status_code == 200, response.text
    return str(response.json()["signingResponse"]["identity"])


def verification_request(identity: str, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "from": {"tn": ORIG},
        "to": {"tn": [DEST]},
        "time": int(time.time()),
        "identity": identity,
    }
    request.update(overrides)
    return {"verificationRequest": request}


async def verify(client: httpx.AsyncClient, identity: str, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/stir/v1/verification", json=verification_request(identity, **overrides)
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["verificationResponse"])


async def test_signing_answers_an_identity_header(
    client: httpx.AsyncClient, site: Deployment
) -> None:
    identity = parse_identity(await sign(client))
    assert identity.info == site.x5u
    assert (identity.alg, identity.ppt) == ("ES256", "shaken")
    payload = decode_passport(identity.token).payload
    assert payload["attest"] == "A"
    assert payload["orig"] == {"tn": ORIG}
    assert payload["dest"] == {"tn": [DEST]}
    assert payload["origid"] == "123e4567-e89b-12d3-a456-426655440000"


async def test_signed_call_verifies(client: httpx.AsyncClient, site: Deployment) -> None:
    answer = await verify(client, await sign(client))
    assert answer == {"verstat": "TN-Validation-Passed"}
    assert site.repository.requests == ["/sti-cr/1234.pem"]


async def test_common_variants_are_accepted(client: httpx.AsyncClient) -> None:
    identity = await sign(client, dest={"tn": DEST}, orig={"tn": [ORIG]}, iat=str(int(time.time())))
    bare = identity.split(";", 1)[0]
    answer = await verify(client, bare, to={"tn": DEST}, **{"from": {"tn": [ORIG]}})
    assert answer["verstat"] == "TN-Validation-Passed"


async def test_failed_verification_carries_reason_code_and_text(
    client: httpx.AsyncClient,
) -> None:
    identity = await sign(client)
    answer = await verify(client, identity, to={"tn": ["12125550000"]})
    assert answer == {
        "verstat": "TN-Validation-Failed",
        "reasonCode": 438,
        "reasonText": "Invalid Identity Header",
    }
    stale = await sign(client, iat=int(time.time()) - 120)
    assert (await verify(client, stale))["reasonCode"] == 403


async def test_continue_policy_answers_the_verstat_alone(site: Deployment, tls: TLSFiles) -> None:
    async with stir_app(site, tls, FailurePolicy.CONTINUE) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://stir.test", headers=STIR_HEADERS
        ) as c:
            identity = await sign(c)
            answer = await verify(c, identity, to={"tn": ["12125550000"]})
    assert answer == {"verstat": "TN-Validation-Failed"}


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/stir/v1/signing", b"{not json", 400, "InvalidInput"),
        ("/stir/v1/signing", b'{"signingRequest": []}', 400, "InvalidInput"),
        ("/stir/v1/signing", b'{"signingRequest": {"orig": {"tn": "x"}}}', 400, "InvalidInput"),
        ("/stir/v1/verification", b'{"verificationRequest": {}}', 400, "InvalidInput"),
        ("/stir/v1/nothing", b"{}", 404, "NotFound"),
    ],
)
async def test_bad_requests_answer_json_errors(
    client: httpx.AsyncClient, path: str, body: bytes, status: int, error: str
) -> None:
    response = await client.post(path, content=body)
    assert response.status_code == status
    assert response.json()["error"]["type"] == error


async def test_unknown_entry_and_wrong_method(client: httpx.AsyncClient) -> None:
    response = await client.post("/stir/v1/signing", json=signing_request(entry="nope"))
    assert (response.status_code, response.json()["error"]["type"]) == (404, "NoSigningEntry")
    assert (await client.get("/stir/v1/signing")).status_code == 405


async def test_batches_answer_one_item_per_request(client: httpx.AsyncClient) -> None:
    requests = [signing_request()["signingRequest"], {"orig": {"tn": ORIG}}]
    response = await client.post("/stir/v1/signing/batch", json={"signingRequests": requests})
    signed, refused = response.json()["signingResponses"]
    assert refused["error"]["type"] == "InvalidInput"
    checks = [
        verification_request(signed["identity"])["verificationRequest"],
        verification_request(signed["identity"], to={"tn": ["12125550000"]})["verificationRequest"],
    ]
    response = await client.post(
        "/stir/v1/verification/batch", json={"verificationRequests": checks}
    )
    verstats = [a["verstat"] for a in response.json()["verificationResponses"]]
    assert verstats == ["TN-Validation-Passed", "TN-Validation-Failed"]


async def test_metrics_count_calls_and_cache_use(client: httpx.AsyncClient) -> None:
    identity = await sign(client)
    await verify(client, identity)
    await verify(client, identity)
    await client.post("/stir/v1/signing", json=signing_request(entry="nope"))
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    assert 'opensti_calls_signed_total{outcome="signed"} 1' in lines
    assert 'opensti_calls_signed_total{outcome="NoSigningEntry"} 1' in lines
    assert (
        'opensti_calls_verified_total{result="success",verstat="TN-Validation-Passed"} 2' in lines
    )
    assert 'opensti_request_seconds_count{op="verify"} 2' in lines
    assert "opensti_x5u_cache_hits_total 1" in lines
    assert "opensti_x5u_fetches_total 1" in lines
    assert "opensti_x5u_fetch_errors_total 0" in lines
