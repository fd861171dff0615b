"""The reconcile loop over /api/v1: every entry's renewal status, and renewing one.

GET  /api/v1/lifecycle/status           each entry: active certificate, expiry,
                                        next renewal, backoff, last error
POST /api/v1/entries/{name}/renew       ask the running loop to renew at its next pass
POST /api/v1/entries/{name}/renew?now=true   renew here and now (the whole flow)
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends

from opensti.api._auth import require
from opensti.api._context import Context
from opensti.core.errors import Conflict, UpstreamError
from opensti.lifecycle.reconcile import (
    EntryStatus,
    ReconcilePolicy,
    entry_statuses,
    reconciler_for,
    request_renewal,
)
from opensti.store import Role

__all__ = ["router"]

router = APIRouter()
ReadOnly = [Depends(require(Role.READ_ONLY))]
Operator = [Depends(require(Role.OPERATOR))]


@router.get("/lifecycle/status", tags=["certificates"], dependencies=ReadOnly)
def lifecycle_status(ctx: Context) -> list[EntryStatus]:
    return entry_statuses(
        ctx.database, ReconcilePolicy(), public_base_url=ctx.app.settings.public_base_url
    )


@router.post("/entries/{name}/renew", tags=["certificates"], dependencies=Operator)
def renew_entry(ctx: Context, name: str, now: bool = False) -> dict[str, Any]:
    """Renew even if not due: by the running loop, or (``now=true``) in this request."""
    if not now:
        request_renewal(ctx.database, name)
        return {"entry": name, "outcome": "requested"}
    # A plain handler runs in the thread pool, where no event loop is running.
    result = asyncio.run(reconciler_for(ctx.app).reconcile(name, force=True))
    if result.outcome == "busy":
        raise Conflict(f"entry {name!r} is being worked on by another worker; try later")
    if result.outcome == "failed":
        raise UpstreamError(f"renewing {name!r} failed: {result.error}")
    ctx.reload_signing()
    return result.to_dict()
