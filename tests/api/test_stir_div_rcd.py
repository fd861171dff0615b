"""The ATIS-1000082 API (``/stir/v1``) with Rich Call Data (RFC 9795) and diverted calls
(RFC 8946), opensti extensions there: ``rcd``/``crn`` in a signing request, ``rcd`` and
``div`` in a verification response. The x5u and the logo are served over real HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from opensti.api.stir import STIRApp
from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.core.rcd import build_rcd_claims, rcdi_digest
from opensti.signing import Keyring, SigningEntry, SigningService
from opensti.signing._extended import sign_div
from opensti.verification import FetchPolicy, TrustStore, VerificationService, X5UFetcher
from opensti.verification.resources import ResourceFetcher
from tests._servers import Route, TLSFiles
from tests.api.stir_support import STIR_HEADERS, Deployment, signer_access
from tests.api.test_stir_app import DEST, ORIG, signing_request, verification_request
from tests.core.core_support import VECTORS

pytestmark = pytest.mark.integration

LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()
FORWARDED = "12155550199"


@pytest.fixture
async def client(site: Deployment, tls: TLSFiles) -> AsyncIterator[httpx.AsyncClient]:
    """The STIR app over an entry that asserts a name and logo of its own, with a
    verifier that fetches logos (both under the x5u rules, trusting the test root)."""
    logo = site.repository.url("/logo.png")
    site.repository.routes["/logo.png"] = Route.body(LOGO, content_type="image/png")
    rcd = build_rcd_claims(name="Entry Brand", icon=logo, icon_content=LOGO)
    entry = SigningEntry(
        name="main", spc="1234", key=site.key, x5u=site.x5u, is_default=True, rcd=rcd
    )
    local = FetchPolicy(allow_private=True)
    async with (
        X5UFetcher(local, verify=str(tls.root_pem)) as fetcher,
        ResourceFetcher(local, verify=str(tls.root_pem)) as resources,
    ):
        verifier = VerificationService(
            fetcher, TrustStore([site.pki.root.certificate]), resources=resources
        )
        signer = SigningService(Keyring([entry]))
        app = STIRApp(signer, verifier, access=signer_access(), icon_fetch=resources.fetch)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://stir.test", headers=STIR_HEADERS
        ) as c:
            c.app = app  # type: ignore[attr-defined]
            c.resources = resources  # type: ignore[attr-defined]
            yield c


async def _sign(client: httpx.AsyncClient, **overrides: Any) -> str:
    response = await client.post("/stir/v1/signing", json=signing_request(**overrides))
    assert response.status_code == 200, response.text
    return str(response.json()["signingResponse"]["identity"])


async def _verify(client: httpx.AsyncClient, *identities: str, **overrides: Any) -> dict[str, Any]:
    body = verification_request(identities[0], **overrides)
    if len(identities) > 1:
        del body["verificationRequest"]["identity"]
        body["verificationRequest"]["identities"] = list(identities)
    response = await client.post("/stir/v1/verification", json=body)
    assert response.status_code == 200, response.text
    return response.json()["verificationResponse"]  # type: ignore[no-any-return]


def _payload(identity: str) -> dict[str, Any]:
    return decode_passport(parse_identity(identity).token).payload


async def test_the_entry_brand_is_signed_and_verified(
    client: httpx.AsyncClient, site: Deployment
) -> None:
    identity = await _sign(client)
    payload = _payload(identity)
    assert payload["rcd"]["nam"] == "Entry Brand"
    assert payload["rcdi"] == {"/icn": rcdi_digest(LOGO)}
    answer = await _verify(client, identity)
    assert answer["verstat"] == "TN-Validation-Passed"
    assert answer["rcd"]["verified"] is True
    assert (answer["rcd"]["nam"], answer["rcd"]["icn"]) == ("Entry Brand", payload["rcd"]["icn"])


async def test_a_signing_request_brings_its_own_rcd(
    client: httpx.AsyncClient, site: Deployment
) -> None:
    logo = site.repository.url("/logo.png")
    identity = await _sign(client, rcd={"nam": "Call Brand", "icn": logo}, crn="Delivery")
    payload = _payload(identity)
    assert payload["rcd"] == {"nam": "Call Brand", "icn": logo}
    assert payload["rcdi"] == {"/icn": rcdi_digest(LOGO)}
    assert payload["crn"] == "Delivery"
    answer = await _verify(client, identity)
    assert (answer["rcd"]["verified"], answer["rcd"]["crn"]) == (True, "Delivery")


async def test_a_changed_logo_fails_rcd_but_not_the_call(
    client: httpx.AsyncClient, site: Deployment
) -> None:
    logo = site.repository.url("/other.png")
    site.repository.routes["/other.png"] = Route.body(LOGO, content_type="image/png")
    identity = await _sign(client, rcd={"icn": logo})
    site.repository.routes["/other.png"] = Route.body(LOGO + b"!", content_type="image/png")
    client.resources.cache_clear()  # type: ignore[attr-defined]
    answer = await _verify(client, identity)
    assert answer["verstat"] == "TN-Validation-Passed"
    assert answer["rcd"]["verified"] is False
    assert answer["rcd"]["sip_code"] == 438


@pytest.mark.parametrize(
    ("rcd", "why"),
    [
        ("Bank", "rcd must be an object"),
        ({"nam": "Bank", "jcd": []}, "rcd must be an object"),
        ({"icn": "http://127.0.0.1/logo.png"}, "https"),
        ({"nam": ""}, "1 to 256"),
    ],
)
async def test_bad_rcd_in_a_signing_request_is_a_clear_400(
    client: httpx.AsyncClient, rcd: object, why: str
) -> None:
    response = await client.post("/stir/v1/signing", json=signing_request(rcd=rcd))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "InvalidInput"
    assert why in error["message"]


async def test_a_diverted_call_reports_its_chain(client: httpx.AsyncClient) -> None:
    shaken = await _sign(client)
    signer: SigningService = client.app.signer  # type: ignore[attr-defined]
    div = sign_div(signer, ORIG, FORWARDED, DEST).identity
    answer = await _verify(client, shaken, div, to={"tn": [FORWARDED]})
    assert answer["verstat"] == "TN-Validation-Passed", answer
    assert [link["div"] for link in answer["div"]] == [DEST]
    gap = sign_div(signer, ORIG, FORWARDED, "12155550111").identity
    answer = await _verify(client, shaken, gap, to={"tn": [FORWARDED]})
    assert answer["verstat"] == "TN-Validation-Failed"
    assert answer["reasonCode"] == 438
