"""What the STIR API reads of an HTTP request, and what it answers.

Small values, so that one function (:meth:`opensti.api.stir.STIRApp.handle`) decides
every answer, whether the request came through ASGI or through the HTTP front's fast
path (:mod:`opensti.api._http_protocol`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["JSON_HEADERS", "STIRRequest", "STIRResponse"]

Headers = Sequence[tuple[bytes, bytes]]

JSON_HEADERS: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"application/json"),)


class STIRRequest(NamedTuple):
    """One request (a named tuple: made per request, it is four times cheaper than a
    frozen dataclass)."""

    method: str
    path: str
    #: Names in lower case, as uvicorn gives them (only ``authorization`` is read).
    headers: Headers = ()
    body: bytes = b""
    #: The client's address: the peer's, or X-Forwarded-For's from a trusted proxy.
    client: tuple[str, int] | None = None
    #: PEM certificates the TLS handshake verified (mutual TLS), leaf first.
    client_cert_chain: Sequence[str] = ()
    #: The body was longer than the API takes (and was not kept).
    oversized: bool = False


class STIRResponse(NamedTuple):
    status: int
    body: bytes
    #: Without content-length: whoever writes the response adds it.
    headers: Headers = JSON_HEADERS
