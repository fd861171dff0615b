"""Turn what acme and requests raise into opensti's errors, once, at the client edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from acme import errors as acme_errors
from acme import messages
from josepy.errors import DeserializationError

from opensti.core.errors import AcmeProblem, OpenSTIError, ServiceUnreachable, UpstreamError

__all__ = ["ca_errors", "problem_of"]


def problem_of(error: messages.Error, status: int | None = None) -> AcmeProblem:
    """An :class:`AcmeProblem` with the type and every detail the CA gave."""
    details = [error.detail or error.title or error.description or "no detail given"]
    details.extend(str(sub.detail or sub.typ) for sub in error.subproblems or ())
    return AcmeProblem(str(error.typ), "; ".join(details), status=status)


@contextmanager
def ca_errors(where: str) -> Iterator[None]:
    """Everything the CA conversation can raise comes out as an :class:`UpstreamError`."""
    try:
        yield
    except OpenSTIError:
        raise
    except messages.Error as exc:
        raise problem_of(exc) from None
    except acme_errors.ConflictError as exc:
        raise UpstreamError(f"CA at {where} reported a conflict with {exc}") from None
    except acme_errors.Error as exc:
        raise UpstreamError(f"CA at {where} failed: {exc}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ServiceUnreachable(f"cannot reach the CA at {where}: {_reason(exc)}") from None
    except requests.RequestException as exc:
        raise UpstreamError(f"request to the CA at {where} failed: {_reason(exc)}") from None
    except (DeserializationError, ValueError, KeyError) as exc:
        raise UpstreamError(f"CA at {where} sent an answer that does not parse: {exc}") from None


def _reason(exc: requests.RequestException) -> str:
    # requests nests the socket error a few levels deep; its last line is the readable one.
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.rsplit(": ", 1)[-1].rstrip(")'\"") or type(exc).__name__
