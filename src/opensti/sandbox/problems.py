"""ACME problem documents (RFC 8555 section 6.7, RFC 7807) as one exception type.

Every refusal of the sandbox CA is a :class:`Problem` raised inside a handler; the app
turns it into an ``application/problem+json`` response in one place.
"""

from __future__ import annotations

from typing import Any

from opensti.core.errors import OpenSTIError

__all__ = ["ACME_ERROR_PREFIX", "PROBLEM_CONTENT_TYPE", "Problem"]

ACME_ERROR_PREFIX = "urn:ietf:params:acme:error:"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# The HTTP status RFC 8555 implies for each error type; anything else is a 400.
_STATUS = {
    "unauthorized": 403,
    "externalAccountRequired": 403,
    "orderNotReady": 403,
    "userActionRequired": 403,
    "accountDoesNotExist": 400,
    "serverInternal": 500,
    "rateLimited": 429,
}


class Problem(OpenSTIError):
    """A refusal with its ACME error type (the part after ``...:acme:error:``)."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, value=kind)
        self.kind = kind
        self.detail = detail
        self.status = status or _STATUS.get(kind, 400)
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def type(self) -> str:
        return ACME_ERROR_PREFIX + self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "detail": self.detail, "status": self.status, **self.extra}
