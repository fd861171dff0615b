"""``/api/v1`` sign and verify, single and batch, and the call log they fill."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.signing import SigningEntry
from opensti.store import Role
from tests.api.api_support import Mgmt

ORIG, DEST = "12025550100", "12025550199"
PROBLEM_KEYS = {"type", "title", "detail", "status"}


def assert_problem(body: dict[str, Any], status: int, kind: str, detail: str) -> None:
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["type"] == f"urn:opensti:problem:{kind}"
    assert detail in body["detail"]


async def sign(mgmt: Mgmt, **body: Any) -> dict[str, Any]:
    response = await mgmt.call(
        "POST", "/sign", Role.OPERATOR, json={"orig": ORIG, "dest": DEST, **body}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_sign_returns_identity_entry_and_x5u(mgmt: Mgmt) -> None:
    signed = await sign(mgmt, attest="A", origid="o-1", dest=[DEST, "2025550198"])
    assert set(signed) == {"identity", "entry", "x5u", "attest", "attest_from"}
    assert (signed["attest"], signed["attest_from"]) == ("A", "request")
    assert signed["entry"] == "main"
    assert signed["x5u"] == mgmt.site.x5u
    header = parse_identity(signed["identity"])
    assert header.info == mgmt.site.x5u
    payload = decode_passport(header.token).payload
    assert payload["orig"] == {"tn": ORIG}
    assert payload["dest"] == {"tn": [DEST, "12025550198"]}
    assert (payload["attest"], payload["origid"]) == ("A", "o-1")


async def test_verify_what_was_signed(mgmt: Mgmt) -> None:
    signed = await sign(mgmt, attest="B")
    response = await mgmt.call(
        "POST",
        "/verify",
        Role.OPERATOR,
        json={"identity": signed["identity"], "from": ORIG, "to": DEST, "call_id": "v1@x"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["verstat"] == "TN-Validation-Passed"
    assert result["result_class"] == "success"
    assert result["sip_code"] is None
    assert (result["attest"], result["orig"], result["dest"]) == ("B", ORIG, [DEST])
    assert result["x5u"] == mgmt.site.x5u
    assert isinstance(result["iat"], int)


async def test_verify_reports_a_failed_call_with_200(mgmt: Mgmt) -> None:
    signed = await sign(mgmt)
    response = await mgmt.call(
        "POST",
        "/verify",
        Role.OPERATOR,
        json={"identities": [signed["identity"]], "from": "12025550111", "to": [DEST]},
    )
    assert response.status_code == 200
    result = response.json()
    assert result["verstat"] == "TN-Validation-Failed"
    assert result["sip_code"] == 438
    assert result["result_class"] == "calling-number-mismatch"


async def test_verify_a_bare_passport_and_stale_iat(mgmt: Mgmt) -> None:
    signed = await sign(mgmt, iat=int(time.time()) - 600)
    token = signed["identity"].split(";", 1)[0]
    result = (
        await mgmt.call(
            "POST", "/verify", Role.OPERATOR, json={"identity": token, "from": ORIG, "to": DEST}
        )
    ).json()
    assert (result["sip_code"], result["result_class"]) == (403, "invalid-iat")


async def test_batches_answer_each_request_in_order(mgmt: Mgmt) -> None:
    requests = [
        {"orig": ORIG, "dest": DEST},
        {"orig": "not a number", "dest": DEST},
        {"orig": ORIG, "dest": DEST, "entry": "missing"},
    ]
    response = await mgmt.call("POST", "/sign/batch", Role.OPERATOR, json={"requests": requests})
    assert response.status_code == 200, response.text
    good, bad_tn, no_entry = response.json()["results"]
    assert good["entry"] == "main"
    assert_problem(bad_tn, 400, "InvalidTN", "")
    assert_problem(no_entry, 404, "NoSigningEntry", "missing")
    verify_requests = [
        {"identity": good["identity"], "from": ORIG, "to": DEST},
        {"identity": good["identity"], "from": ORIG, "to": "12025550000"},
        {"from": ORIG, "to": DEST},
    ]
    response = await mgmt.call(
        "POST", "/verify/batch", Role.OPERATOR, json={"requests": verify_requests}
    )
    assert response.status_code == 200, response.text
    passed, mismatch, neither = response.json()["results"]
    assert passed["verstat"] == "TN-Validation-Passed"
    assert mismatch["result_class"] == "called-number-mismatch"
    assert_problem(neither, 400, "InvalidInput", "identity")


async def test_a_batch_is_bounded(mgmt: Mgmt) -> None:
    requests = [{"orig": ORIG, "dest": DEST}] * 1001
    response = await mgmt.call("POST", "/sign/batch", Role.OPERATOR, json={"requests": requests})
    assert_problem(response.json(), 400, "InvalidInput", "requests")
    assert mgmt.call_log.stats().queued == 0


@pytest.mark.parametrize(
    ("body", "status", "kind", "detail"),
    [
        ({"orig": "abc", "dest": DEST}, 400, "InvalidTN", ""),
        ({"orig": ORIG, "dest": DEST, "attest": "D"}, 400, "InvalidInput", "attest"),
        ({"orig": ORIG, "dest": []}, 400, "InvalidInput", "dest"),
        ({"orig": ORIG}, 400, "InvalidInput", "dest: Field required"),
        ({"orig": ORIG, "dest": DEST, "bogus": 1}, 400, "InvalidInput", "bogus"),
        ({"orig": ORIG, "dest": DEST, "entry": "nope"}, 404, "NoSigningEntry", "nope"),
    ],
)
async def test_sign_problems(
    mgmt: Mgmt, body: dict[str, Any], status: int, kind: str, detail: str
) -> None:
    response = await mgmt.call("POST", "/sign", Role.OPERATOR, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert_problem(response.json(), status, kind, detail)


async def test_sign_without_an_active_certificate_is_a_conflict(mgmt: Mgmt) -> None:
    mgmt.api.state.opensti.signer.keyring.upsert(
        SigningEntry(name="main", spc="123H", is_default=True)
    )
    response = await mgmt.call(
        "POST", "/sign", Role.OPERATOR, json={"orig": ORIG, "dest": DEST, "call_id": "f@x"}
    )
    assert_problem(response.json(), 409, "NoActiveCertificate", "main")
    assert mgmt.call_log.flush()
    calls = (await mgmt.call("GET", "/calls/f@x", Role.READ_ONLY)).json()["records"]
    assert (calls[0]["sip_code"], calls[0]["certificate"]) == (500, None)


async def test_calls_are_logged_with_the_signing_certificate(mgmt: Mgmt) -> None:
    signed = await sign(mgmt, call_id="c1@pbx", attest="A")
    await mgmt.call(
        "POST",
        "/verify",
        Role.OPERATOR,
        json={"identity": signed["identity"], "from": ORIG, "to": DEST, "call_id": "c1@pbx"},
    )
    assert mgmt.call_log.flush()
    page = (await mgmt.call("GET", "/calls", Role.READ_ONLY, params={"tn": DEST})).json()
    assert [(c["call_id"], c["direction"]) for c in page["calls"]] == [
        ("c1@pbx", "inbound"),
        ("c1@pbx", "outbound"),
    ]
    assert page["next_cursor"] is None
    detail = (await mgmt.call("GET", "/calls/c1@pbx", Role.READ_ONLY)).json()
    outbound, inbound = detail["records"]
    assert (outbound["action"], outbound["attest"], outbound["from"]) == ("signed", "A", ORIG)
    assert outbound["certificate_id"] == mgmt.site.certificate.id
    cert = outbound["certificate"]
    assert cert["spc"] == "123H"
    assert cert["fingerprint"] == mgmt.site.certificate.fingerprint
    assert "CN=" in cert["subject"]
    assert "CN=" in cert["issuer"]
    not_after = dt.datetime.fromisoformat(cert["not_after"])
    assert not_after == mgmt.site.certificate.not_after
    assert inbound["verstat"] == "TN-Validation-Passed"
    assert inbound["certificate"]["x5u"] == mgmt.site.x5u


async def test_calls_are_paged(mgmt: Mgmt) -> None:
    for n in range(5):
        await sign(mgmt, call_id=f"p{n}")
    assert mgmt.call_log.flush()
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await mgmt.call("GET", "/calls", Role.READ_ONLY, params=params)).json()
        seen += [c["call_id"] for c in page["calls"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["p4", "p3", "p2", "p1", "p0"]
    missing = await mgmt.call("GET", "/calls/none@x", Role.READ_ONLY)
    assert_problem(missing.json(), 404, "NotFound", "none@x")
    bad = await mgmt.call("GET", "/calls", Role.READ_ONLY, params={"cursor": "zz"})
    assert_problem(bad.json(), 400, "InvalidInput", "cursor")
