"""Signing and verification for API clients, and the SIP message log.

``/sign`` and ``/verify`` run the same services as the SIP redirect server and the
lean ATIS-1000082 API; each call is recorded in the call log when there is one. A
batch answers 200 with one result per request, in order: the response, or the
problem body that request alone would have got.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from opensti.api._auth import require
from opensti.api._context import APIContext, Context
from opensti.api._models import (
    CallDetailOut,
    CallPageOut,
    SignBatchIn,
    SignBatchOut,
    SignIn,
    SignOut,
    VerifyBatchIn,
    VerifyBatchOut,
    VerifyIn,
    VerifyOut,
)
from opensti.api._problems import error_problem
from opensti.api.stir import _full_identity
from opensti.calls import MAX_PAGE, call_dict, certificate_info, find_calls, list_calls
from opensti.core.errors import InvalidInput, NotFound, OpenSTIError
from opensti.core.rcd import build_rcd_claims
from opensti.lifecycle.branding import fetch_icon_digest
from opensti.signing._extended import sign_div
from opensti.store import Role

__all__ = ["router"]

router = APIRouter()
ReadOnly = [Depends(require(Role.READ_ONLY))]
Operator = [Depends(require(Role.OPERATOR))]


def _dests(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _sign_div(ctx: APIContext, body: SignIn) -> dict[str, Any]:
    if body.attest is not None or _rcd_given(body):
        raise InvalidInput("a div PASSporT carries no attest or rcd claims")
    assert body.div is not None
    signed = sign_div(
        ctx.signer, body.orig, _dests(body.dest), body.div, entry=body.entry, now=body.iat
    )
    return {"identity": signed.identity, "entry": signed.entry, "x5u": signed.x5u}


def _rcd_given(body: SignIn) -> bool:
    return any(v is not None for v in (body.rcd_name, body.rcd_icon, body.rcd_reason))


async def _rcd(ctx: APIContext, body: SignIn) -> dict[str, Any] | None:
    """The request's own rcd claims (they replace the entry's), the logo fetched for
    its rcdi digest; None when the request names none."""
    if not _rcd_given(body):
        return None
    digest = None
    if body.rcd_icon is not None:
        digest = await fetch_icon_digest(ctx.icon_fetch, body.rcd_icon)
    return build_rcd_claims(
        name=body.rcd_name, icon=body.rcd_icon, icon_digest=digest, call_reason=body.rcd_reason
    )


async def _sign(ctx: APIContext, body: SignIn) -> dict[str, Any]:
    if body.div is not None:
        return _sign_div(ctx, body)
    dests = _dests(body.dest)
    rcd = await _rcd(ctx, body)
    try:
        signed = ctx.signer.sign(
            body.orig,
            dests,
            attest=body.attest,
            origid=body.origid,
            entry=body.entry,
            now=body.iat,
            rcd=rcd,
        )
    except OpenSTIError as error:
        if ctx.call_log is not None and not isinstance(error, InvalidInput):
            ctx.call_log.record_sign_failure(error, body.orig, dests, body.call_id)
        raise
    if ctx.call_log is not None:
        ctx.call_log.record_signed(signed, call_id=body.call_id)
    return {
        "identity": signed.identity,
        "entry": signed.entry,
        "x5u": signed.x5u,
        "attest": signed.claims.attest,
        # Said out loud: a request without attest is signed with the entry's default.
        "attest_from": "request" if body.attest else "entry default",
    }


def _identities(body: VerifyIn) -> list[str]:
    if (body.identity is None) == (body.identities is None):
        raise InvalidInput("give either identity or identities")
    values = [body.identity] if body.identity is not None else list(body.identities or ())
    return [_full_identity(value) for value in values]


async def _verify(ctx: APIContext, body: VerifyIn) -> dict[str, Any]:
    if ctx.verifier is None:
        raise NotFound("verification is not enabled on this server")
    dests = _dests(body.to)
    # verify_call: div PASSporTs (RFC 8946) and rcd claims (RFC 9795) are checked too.
    call = await ctx.verifier.verify_call(_identities(body), body.from_, dests, now=body.now)
    result = call.result
    if ctx.call_log is not None:
        ctx.call_log.record_verified(
            result, orig=body.from_, dest=dests, call_id=body.call_id, rcd=call.rcd
        )
    return {**call.to_dict(), "result_class": result.result_class.value}


async def _sign_or_problem(ctx: APIContext, body: SignIn) -> dict[str, Any]:
    try:
        return await _sign(ctx, body)
    except OpenSTIError as error:
        return error_problem(error)


async def _verify_or_problem(ctx: APIContext, body: VerifyIn) -> dict[str, Any]:
    try:
        return await _verify(ctx, body)
    except OpenSTIError as error:
        return error_problem(error)


@router.post("/sign", tags=["calls"], dependencies=Operator)
async def sign(ctx: Context, body: SignIn) -> SignOut:
    """Sign one call: the Identity header value, the entry that signed and its x5u."""
    return SignOut.model_validate(await _sign(ctx, body))


@router.post("/sign/batch", tags=["calls"], dependencies=Operator)
async def sign_batch(ctx: Context, body: SignBatchIn) -> SignBatchOut:
    """Sign up to 1000 calls; each result is a signature or that call's problem body."""
    return SignBatchOut.model_validate(
        {"results": [await _sign_or_problem(ctx, request) for request in body.requests]}
    )


@router.post("/verify", tags=["calls"], dependencies=Operator)
async def verify(ctx: Context, body: VerifyIn) -> VerifyOut:
    """Verify a call's Identity header(s) against its calling and called numbers.

    Answers 200 whatever the call's fate: the verstat, the SIP code to reject with (if
    any), the reason and the result class say it.
    """
    return VerifyOut.model_validate(await _verify(ctx, body))


@router.post("/verify/batch", tags=["calls"], dependencies=Operator)
async def verify_batch(ctx: Context, body: VerifyBatchIn) -> VerifyBatchOut:
    """Verify up to 1000 calls concurrently (one fetch per x5u URL however many share it)."""
    results = await asyncio.gather(*(_verify_or_problem(ctx, r) for r in body.requests))
    return VerifyBatchOut.model_validate({"results": results})


# -- the call log ---------------------------------------------------------------------


@router.get("/calls", tags=["calls"], dependencies=ReadOnly)
def calls(
    ctx: Context,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tn: Annotated[str | None, Query(max_length=64)] = None,
    call_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> CallPageOut:
    """Calls signed and verified, newest first; pass ``next_cursor`` back for older ones."""
    with ctx.database.read_session() as session:
        page = list_calls(
            session,
            since=_aware(since),
            until=_aware(until),
            tn=tn,
            call_id=call_id,
            limit=limit,
            cursor=cursor,
        )
        found = [call_dict(message) for message in page.calls]
    return CallPageOut.model_validate({"calls": found, "next_cursor": page.next_cursor})


@router.get("/calls/{call_id}", tags=["calls"], dependencies=ReadOnly)
def call(ctx: Context, call_id: str) -> CallDetailOut:
    """Every record of one Call-ID, each with the certificate that signed the call."""
    with ctx.database.read_session() as session:
        records = []
        for message in find_calls(session, call_id):
            info = certificate_info(session, message)
            records.append({**call_dict(message), "certificate": info and info.to_dict()})
    return CallDetailOut.model_validate({"call_id": call_id, "records": records})


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """A time given without an offset is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
