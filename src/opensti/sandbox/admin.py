"""Admin endpoints of the sandbox, for tests and demos (not part of any real API).

Access: when the sandbox has an admin token (``--admin-token``), requests need
``Authorization: Bearer <token>``; without one, only loopback clients are served.

``GET /admin/faults``
    Current fault settings: ``{"fail_rate": .., "ca": {"mode","delay"}, "stipa": {..}}``.
``POST /admin/faults``
    ``{"role": "ca"|"stipa", "mode": "ok"|"refuse"|"delay", "delay": seconds}`` and/or
    ``{"fail_rate": 0..1}`` and/or ``{"refuse_tokens": bool}`` (the STI-PA answers 403
    to SPC token requests) and/or ``{"bad_profile": bool}`` (the CA issues certificates
    with a non-SHAKEN policy OID) and/or ``{"no_tnauthlist": bool}`` (without a
    TNAuthList). ``refuse`` answers 503 (an ACME ``serverInternal``
    problem with ``Retry-After`` for the CA, a JSON error for the STI-PA); ``delay``
    holds each request that many seconds before serving it.
``POST /admin/eab``
    A new EAB credential: ``{"kid": .., "hmac_key": <base64url>}``.
``POST /admin/spc/{spc}/revoke``
    Revoke an SPC at the STI-PA: ``{"revoked_serials": [...]}`` now on the CRL.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opensti.core.errors import NotFound, OpenSTIError
from opensti.sandbox.state import Sandbox

__all__ = ["AdminError", "admin_routes"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_MODES = frozenset({"ok", "refuse", "delay"})


class AdminError(OpenSTIError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, value=status)
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, self.status)


def _authorize(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    token = sandbox.config.admin_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise AdminError(401, "admin token required")
    elif request.client is None or request.client.host not in _LOOPBACK:
        raise AdminError(403, "admin endpoints answer loopback clients only")
    return sandbox


async def _body(request: Request) -> dict[str, Any]:
    try:
        value = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise AdminError(400, "body is not JSON") from None
    if not isinstance(value, dict):
        raise AdminError(400, "body is not a JSON object")
    return value


async def faults(request: Request) -> Response:
    sandbox = _authorize(request)
    if request.method == "POST":
        body = await _body(request)
        if "fail_rate" in body:
            rate = body["fail_rate"]
            if not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise AdminError(400, "fail_rate must be between 0 and 1")
            sandbox.faults.fail_rate = float(rate)
        for switch in ("refuse_tokens", "bad_profile", "no_tnauthlist"):
            if switch in body:
                if not isinstance(body[switch], bool):
                    raise AdminError(400, f"{switch} must be true or false")
                setattr(sandbox.faults, switch, body[switch])
        if "role" in body:
            role, mode, delay = body["role"], body.get("mode", "ok"), body.get("delay", 0)
            if role not in ("ca", "stipa") or mode not in _MODES:
                raise AdminError(400, "role must be ca|stipa and mode ok|refuse|delay")
            if not isinstance(delay, int | float) or delay < 0:
                raise AdminError(400, "delay must be a number of seconds")
            sandbox.faults.set(role, mode, float(delay))
    return JSONResponse(sandbox.faults.to_dict())


async def eab(request: Request) -> Response:
    kid, key = _authorize(request).add_eab()
    return JSONResponse({"kid": kid, "hmac_key": key})


async def revoke_spc(request: Request) -> Response:
    sandbox = _authorize(request)
    try:
        serials = sandbox.revoke_spc(request.path_params["spc"])
    except NotFound as exc:
        raise AdminError(404, str(exc)) from None
    return JSONResponse({"revoked_serials": serials})


admin_routes = [
    Route("/admin/faults", faults, methods=["GET", "POST"]),
    Route("/admin/eab", eab, methods=["POST"]),
    Route("/admin/spc/{spc}/revoke", revoke_spc, methods=["POST"]),
]
