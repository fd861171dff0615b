"""The management API: ``create_api(app)`` mounts ``/api/v1`` with its OpenAPI document."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from fastapi import APIRouter, FastAPI

from opensti import __version__
from opensti.api import _calls, _lifecycle, _management
from opensti.api._context import APIContext, _utc_now
from opensti.api._problems import install_problem_handlers
from opensti.app import App
from opensti.calls import CallLog
from opensti.lifecycle.branding import IconFetch
from opensti.signing import SigningService
from opensti.verification import VerificationService

__all__ = ["API_PREFIX", "create_api"]

API_PREFIX = "/api/v1"

_DESCRIPTION = """\
Manage CAs, ACME accounts, STI-PA credentials and certificate entries; sign and
verify calls; read the SIP message log.

Every endpoint takes a bearer token (`opensti token create --role ...`). Roles:
**read-only** may GET; **operator** may also request certificates and sign or verify
calls; **admin** may do everything, including accounts, STI-PA credentials, tokens and
settings. Secrets (EAB HMAC keys, STI-PA passwords, private keys, SPC tokens) are
write-only: no response contains them. Errors are RFC 9457 problem bodies.
"""


def create_api(
    app: App,
    *,
    signer: SigningService | None = None,
    verifier: VerificationService | None = None,
    call_log: CallLog | None = None,
    clock: Callable[[], dt.datetime] = _utc_now,
    icon_fetch: IconFetch | None = None,
) -> FastAPI:
    """The FastAPI application over ``app``'s store and services.

    ``signer`` defaults to one over the entries' active certificates; without a
    ``verifier``, ``/verify`` answers 404. ``call_log`` records every sign and verify;
    whoever owns it starts and stops it (it is shared with the SIP server).
    ``icon_fetch`` gets the logos signing requests name (default: the entries' fetcher,
    which keeps no cache).
    """
    api = FastAPI(
        title="opensti",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    api.state.opensti = APIContext(
        app=app,
        signer=signer if signer is not None else app.signing_service(),
        verifier=verifier,
        call_log=call_log,
        clock=clock,
        icon_fetch=icon_fetch or app.certificates.icon_fetch,
    )
    install_problem_handlers(api)
    v1 = APIRouter(prefix=API_PREFIX)
    v1.include_router(_management.router)
    v1.include_router(_calls.router)
    v1.include_router(_lifecycle.router)
    api.include_router(v1)
    return api
