"""What the routes share: the App, the signing and verification services, the call log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from opensti.app import App
from opensti.calls import CallLog
from opensti.lifecycle.branding import IconFetch
from opensti.signing import SigningService
from opensti.store import Database
from opensti.verification import VerificationService

__all__ = ["APIContext", "Context", "RowID"]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class APIContext:
    app: App
    signer: SigningService
    verifier: VerificationService | None
    call_log: CallLog | None
    clock: Callable[[], dt.datetime] = _utc_now
    #: Fetches a logo a signing request names (cached in ``opensti serve``).
    icon_fetch: IconFetch | None = None

    @property
    def database(self) -> Database:
        return self.app.database

    def now(self) -> dt.datetime:
        return self.clock()

    def reload_signing(self) -> None:
        """Give the STI-AS the entries' current certificates (after one became active)."""
        self.signer.keyring.replace(self.app.certificates.signing_entries())


def _context(request: Request) -> APIContext:
    context: APIContext = request.app.state.opensti
    return context


Context = Annotated[APIContext, Depends(_context)]

#: A row id in a path: bounded like the BIGINT it names, so a huge number is a clean
#: 400 and never an OverflowError in the database driver.
RowID = Annotated[int, Path(ge=1, le=2**63 - 1)]
