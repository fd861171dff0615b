"""Every error of the management API as one RFC 9457 problem body.

``{"type", "title", "detail", "status"}`` with ``application/problem+json``. An
:class:`OpenSTIError` gets its status from :func:`opensti.core.errors.http_status` (the
one table); request validation and routing errors of the framework are turned into the
same shape, validation as 400 like any other bad input. A detail never repeats a
submitted value: it might be a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from opensti.core.errors import InvalidInput, OpenSTIError, http_status

__all__ = ["PROBLEM_TYPE", "install_problem_handlers", "problem_body"]

#: Prefix of the ``type`` URI; the exception class name follows.
PROBLEM_TYPE = "urn:opensti:problem:"
_MEDIA_TYPE = "application/problem+json"


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, detail: str, kind: str) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE + kind,
        "title": _title(status),
        "detail": detail,
        "status": status,
    }


def error_problem(error: OpenSTIError) -> dict[str, Any]:
    return problem_body(http_status(error), error.message, type(error).__name__)


def _response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=_MEDIA_TYPE, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",)) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _on_opensti_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenSTIError)
    body = error_problem(exc)
    headers = {"WWW-Authenticate": "Bearer"} if body["status"] == 401 else None
    return _response(body, headers)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _response(problem_body(400, _validation_detail(exc), InvalidInput.__name__))


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    return _response(problem_body(exc.status_code, detail, "HTTPError"), exc.headers)


def install_problem_handlers(api: FastAPI) -> None:
    api.add_exception_handler(OpenSTIError, _on_opensti_error)
    api.add_exception_handler(RequestValidationError, _on_validation_error)
    api.add_exception_handler(HTTPException, _on_http_error)
