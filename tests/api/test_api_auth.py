"""Bearer tokens and roles on every route, and the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from opensti.store import ApiToken, Role, create_api_token, revoke_api_token
from tests.api.api_support import Mgmt

SIGN = {"orig": "12025550100", "dest": "12025550199"}

#: (method, path, json body, the least role allowed)
ROUTES: list[tuple[str, str, Any, Role]] = [
    ("GET", "/cas", None, Role.READ_ONLY),
    ("GET", "/accounts", None, Role.READ_ONLY),
    ("GET", "/accounts/acct", None, Role.READ_ONLY),
    ("GET", "/stipa", None, Role.READ_ONLY),
    ("GET", "/entries", None, Role.READ_ONLY),
    ("GET", "/entries/main", None, Role.READ_ONLY),
    ("GET", "/entries/main/certificates", None, Role.READ_ONLY),
    ("GET", "/entries/main/chain", None, Role.READ_ONLY),
    ("GET", "/certificates/1", None, Role.READ_ONLY),
    ("GET", "/certificates/1/chain.pem", None, Role.READ_ONLY),
    ("GET", "/calls", None, Role.READ_ONLY),
    ("POST", "/sign", SIGN, Role.OPERATOR),
    ("POST", "/sign/batch", {"requests": [SIGN]}, Role.OPERATOR),
    ("POST", "/verify", {"identity": "x", "from": "12025550100", "to": "1"}, Role.OPERATOR),
    ("POST", "/verify/batch", {"requests": []}, Role.OPERATOR),
    ("POST", "/entries/nope/request", None, Role.OPERATOR),
    ("POST", "/cas", {"name": "x", "directory_url": "nope"}, Role.ADMIN),
    ("POST", "/accounts", {"ca": "nope", "email": "a@b.c", "agree_tos": True}, Role.ADMIN),
    ("POST", "/accounts/import", {"ca": "nope", "key_pem": "x"}, Role.ADMIN),
    ("PUT", "/stipa/123H", {"user_id": "u", "password": "p" * 300}, Role.ADMIN),
    ("POST", "/stipa/999Z/test", None, Role.ADMIN),
    ("POST", "/entries", {"name": "e", "spc": "1", "acme_account": "nope"}, Role.ADMIN),
    ("GET", "/tokens", None, Role.ADMIN),
    ("POST", "/tokens", {"name": "x!", "role": "admin"}, Role.ADMIN),
    ("DELETE", "/tokens/nope", None, Role.ADMIN),
    ("GET", "/settings/smtp.host", None, Role.ADMIN),
    ("PUT", "/settings/smtp.host", {"value": "mail.example.net"}, Role.ADMIN),
]
RANK = {Role.READ_ONLY: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


async def test_every_route_enforces_its_role(mgmt: Mgmt) -> None:
    for method, path, body, least in ROUTES:
        for role in (Role.READ_ONLY, Role.OPERATOR, Role.ADMIN):
            response = await mgmt.call(method, path, role, json=body)
            where = f"{method} {path} as {role.value}: {response.text}"
            if RANK[role] >= RANK[least]:
                assert response.status_code not in (401, 403), where
            else:
                assert response.status_code == 403, where
                problem = response.json()
                assert problem["type"] == "urn:opensti:problem:PermissionDenied"
                assert least.value in problem["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer osti_not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=["missing", "unknown", "basic", "huge"],
)
async def test_no_valid_token_is_401(mgmt: Mgmt, headers: dict[str, str]) -> None:
    for method, path, body, _ in ROUTES:
        response = await mgmt.client.request(method, f"/api/v1{path}", headers=headers, json=body)
        assert response.status_code == 401, f"{method} {path}"
        assert response.headers["www-authenticate"] == "Bearer"
        problem = response.json()
        assert set(problem) == {"type", "title", "detail", "status"}
        assert problem["title"] == "Unauthorized"


async def test_revoked_and_expired_tokens_are_refused(mgmt: Mgmt) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with mgmt.app.database.session() as session:
        _, expired = create_api_token(session, name="old", role=Role.ADMIN, expires_at=past)
        revoke_api_token(session, "test-operator")
    for token in (expired.reveal_text(), mgmt.tokens[Role.OPERATOR]):
        response = await mgmt.client.get(
            "/api/v1/calls", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401


async def test_use_is_recorded(mgmt: Mgmt) -> None:
    def last_used() -> dt.datetime | None:
        with mgmt.app.database.read_session() as session:
            row = session.query(ApiToken).filter_by(name="test-read-only").one()
            return row.last_used_at

    assert last_used() is None
    assert (await mgmt.call("GET", "/calls", Role.READ_ONLY)).status_code == 200
    first = last_used()
    assert first is not None
    assert (await mgmt.call("GET", "/calls", Role.READ_ONLY)).status_code == 200
    assert last_used() == first  # at most one write a minute per token


async def test_tokens_made_by_the_api_work_and_are_shown_once(mgmt: Mgmt) -> None:
    created = await mgmt.call("POST", "/tokens", json={"name": "sbc-1", "role": "operator"})
    assert created.status_code == 201, created.text
    value = created.json()["token"]
    assert value.startswith("osti_")
    listed = await mgmt.call("GET", "/tokens")
    assert value not in listed.text
    assert {"sbc-1", "test-admin"} <= {t["name"] for t in listed.json()}
    signed = await mgmt.client.post(
        "/api/v1/sign", json=SIGN, headers={"Authorization": f"Bearer {value}"}
    )
    assert signed.status_code == 200
    assert (await mgmt.call("DELETE", "/tokens/sbc-1")).json()["revoked"] is True
    again = await mgmt.client.post(
        "/api/v1/sign", json=SIGN, headers={"Authorization": f"Bearer {value}"}
    )
    assert again.status_code == 401
    duplicate = await mgmt.call("POST", "/tokens", json={"name": "sbc-1", "role": "admin"})
    assert duplicate.status_code == 409


async def test_settings_keep_secrets_write_only(mgmt: Mgmt) -> None:
    put = await mgmt.call("PUT", "/settings/smtp.password", json={"secret": "hunter2-smtp"})
    assert put.json() == {"key": "smtp.password", "value": None, "secret_set": True}
    got = await mgmt.call("GET", "/settings/smtp.password")
    assert "hunter2-smtp" not in got.text
    plain = await mgmt.call("PUT", "/settings/smtp.host", json={"value": "mail.example.net"})
    assert plain.json()["value"] == "mail.example.net"
    both = await mgmt.call("PUT", "/settings/smtp.host", json={"value": 1, "secret": "s"})
    assert both.status_code == 400


async def test_the_openapi_document_is_served(mgmt: Mgmt) -> None:
    response = await mgmt.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    patterns = [
        (re.compile(re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), set(operations))
        for template, operations in paths.items()
    ]
    for method, path, _, _ in ROUTES:
        assert any(
            pattern.match(f"/api/v1{path}") and method.lower() in operations
            for pattern, operations in patterns
        ), path
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # Write-only secrets: in request schemas only, never in a response schema.
    schemas = document["components"]["schemas"]
    assert "eab_hmac_key" in schemas["AccountIn"]["properties"]
    assert "password" in schemas["StiPaIn"]["properties"]
    for name, schema in schemas.items():
        if name.endswith("Out"):
            fields = set(schema.get("properties", {}))
            assert not fields & {"eab_hmac_key", "password", "key_pem", "token"}, name
    docs = await mgmt.client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
