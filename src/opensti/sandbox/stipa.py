"""The sandbox STI-PA: the iconectiv STI-PA API paths and bodies real clients use.

``POST /api/v1/auth/login``
    ``{"userId","password"}`` -> ``{"status":"success","accessToken","refreshToken",..}``;
    wrong credentials -> 401 ``{"status":"error","message":...}``.
``POST /api/v1/account/{accountId}/token`` (with or without a trailing slash)
    ``Authorization: <accessToken>`` (raw, or with a ``Bearer`` prefix) and
    ``{"atc":{"tktype","tkvalue","ca","fingerprint"}}`` (or the bare RFC 9448 object)
    -> ``{"status":"success","message","token","crl"}``. 401: access token missing,
    unknown or expired; 403: the user's account is not ``accountId``, or the SPC is
    unknown, of another account or revoked; 400: any malformed field.
``GET /api/v1/ca-list``
    The trust list: a PEM bundle of approved STI-CA roots (``application/x-pem-file``),
    or ``{"certificates":[PEM,...]}`` when the client sends ``Accept: application/json``.
``GET /download/v1/crl``
    The STI-PA CRL, DER (``application/pkix-crl``), signed by the STI-PA certificate.
``GET /download/v1/certificate/<certificateId>.crt``
    The STI-PA certificate (PEM) that SPC tokens name in ``x5u``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opensti.core.errors import InvalidTNAuthList, OpenSTIError
from opensti.core.tnauthlist import TNAuthList
from opensti.sandbox.state import Sandbox
from opensti.sandbox.store import AccessToken, ApiUser, SPCRecord, SPCToken, password_matches
from opensti.sandbox.tokens import FINGERPRINT_PATTERN, issue_spc_token

__all__ = ["STIPAError", "stipa_routes"]

_MAX_BODY = 64 * 1024


class STIPAError(OpenSTIError):
    """A refusal of the STI-PA API, rendered as its JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, value=status)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"status": "error", "message": self.message}, self.status)


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise STIPAError(413, "request body too large")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise STIPAError(400, "request body is not JSON") from None
    if not isinstance(value, dict):
        raise STIPAError(400, "request body is not a JSON object")
    return value


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


async def login(request: Request) -> Response:
    sandbox = _sandbox(request)
    body = await _json_body(request)
    user_id, password = body.get("userId"), body.get("password")
    if not isinstance(user_id, str) or not isinstance(password, str):
        raise STIPAError(400, "userId and password are required")
    with sandbox.store.session() as session:
        user = session.get(ApiUser, user_id)
        if user is None or not password_matches(password, user.password_hash):
            raise STIPAError(401, "invalid user id or password")
        token = secrets.token_urlsafe(32)
        session.add(
            AccessToken(
                token_hash=_token_hash(token),
                user_id=user_id,
                expires=sandbox.now() + sandbox.config.access_token_validity,
            )
        )
    return JSONResponse(
        {
            "status": "success",
            "message": "login successful",
            "accessToken": token,
            "refreshToken": secrets.token_urlsafe(32),
        }
    )


def _authenticated_account(request: Request, sandbox: Sandbox) -> str:
    value = request.headers.get("authorization", "").strip()
    token = value[7:].strip() if value.lower().startswith("bearer ") else value
    if not token:
        raise STIPAError(401, "missing access token (Authorization header)")
    with sandbox.store.session() as session:
        record = session.get(AccessToken, _token_hash(token))
        if record is None:
            raise STIPAError(401, "invalid access token")
        if record.expires <= sandbox.now():
            raise STIPAError(401, "access token has expired; log in again")
        user = session.get(ApiUser, record.user_id)
        assert user is not None
        return user.account_id


def _check_atc(atc: Any) -> tuple[dict[str, Any], str]:
    """Validate the requested atc; return it and its single SPC."""
    if not isinstance(atc, dict):
        raise STIPAError(400, "atc object is required")
    if atc.get("tktype") != "TNAuthList":
        raise STIPAError(400, "atc.tktype must be TNAuthList")
    if atc.get("ca") is not False:
        raise STIPAError(400, "atc.ca must be false (delegate certificates are not offered)")
    fingerprint = atc.get("fingerprint")
    if not isinstance(fingerprint, str) or not FINGERPRINT_PATTERN.fullmatch(fingerprint):
        raise STIPAError(
            400, "atc.fingerprint must be 'SHA256 ' and 32 uppercase hex pairs joined by ':'"
        )
    tkvalue = atc.get("tkvalue")
    try:
        spc = TNAuthList.from_acme_value(tkvalue).single_spc if isinstance(tkvalue, str) else None
    except InvalidTNAuthList as exc:
        raise STIPAError(400, f"atc.tkvalue is not a TNAuthList: {exc}") from None
    if spc is None:
        raise STIPAError(400, "atc.tkvalue must be a TNAuthList of exactly one SPC")
    clean = {"tktype": "TNAuthList", "tkvalue": tkvalue, "ca": False, "fingerprint": fingerprint}
    return clean, spc


async def spc_token(request: Request) -> Response:
    sandbox = _sandbox(request)
    account_id = request.path_params["account_id"]
    user_account = _authenticated_account(request, sandbox)
    if user_account != account_id:
        raise STIPAError(403, f"this user may not request tokens for account {account_id}")
    body = await _json_body(request)
    atc, spc = _check_atc(body.get("atc", body))
    with sandbox.store.session() as session:
        record = session.get(SPCRecord, spc)
        if record is None:
            raise STIPAError(403, f"SPC {spc} is not registered at this STI-PA")
        if record.account_id != account_id:
            raise STIPAError(403, f"SPC {spc} does not belong to account {account_id}")
        if record.revoked_at is not None:
            raise STIPAError(403, f"SPC {spc} has been revoked")
        if sandbox.faults.refuse_tokens:
            raise STIPAError(403, f"SPC token for {spc} refused (fault injected by the sandbox)")
        token, jti, expires = issue_spc_token(
            atc,
            key=_signing_key(sandbox),
            x5u=sandbox.pki.stipa_certificate_url,
            now=sandbox.now(),
            validity=sandbox.config.spc_token_validity,
        )
        session.add(SPCToken(jti=jti, account_id=account_id, spc=spc, expires=expires))
    return JSONResponse(
        {
            "status": "success",
            "message": f"SPC token for spc: {spc} is created successfully",
            "token": token,
            "crl": sandbox.urls.crl,
        }
    )


def _signing_key(sandbox: Sandbox) -> Any:
    assert sandbox.pki.stipa.key is not None
    return sandbox.pki.stipa.key


async def ca_list(request: Request) -> Response:
    anchors = _sandbox(request).pki.trust_anchors
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in anchors]
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"certificates": pems})
    return Response("".join(pems), media_type="application/x-pem-file")


async def crl(request: Request) -> Response:
    sandbox = _sandbox(request)
    der = sandbox.pki.crl(sandbox.now()).public_bytes(serialization.Encoding.DER)
    return Response(der, media_type="application/pkix-crl")


async def stipa_certificate(request: Request) -> Response:
    sandbox = _sandbox(request)
    if request.path_params["certificate_id"] != sandbox.pki.stipa_certificate_id:
        raise STIPAError(404, "no such certificate")
    return Response(sandbox.pki.stipa.pem, media_type="application/x-pem-file")


stipa_routes = [
    Route("/api/v1/auth/login", login, methods=["POST"]),
    Route("/api/v1/account/{account_id}/token", spc_token, methods=["POST"]),
    Route("/api/v1/account/{account_id}/token/", spc_token, methods=["POST"]),
    Route("/api/v1/ca-list", ca_list, methods=["GET"]),
    Route("/download/v1/crl", crl, methods=["GET"]),
    Route("/download/v1/certificate/{certificate_id}.crt", stipa_certificate, methods=["GET"]),
]
