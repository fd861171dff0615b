"""SIP Messages: recent signed and verified calls, filtered (by the start of a number,
a whole or partial Call-ID, dates) and paged (keyset pages, so a deep page costs what
the first does), and the certificate that signed one call: ours,
or for a verified call the other provider's, as stored when it was verified."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from opensti.calls import certificate_info, list_calls
from opensti.core.errors import InvalidInput, OpenSTIError, http_status
from opensti.store import SipMessage
from opensti.web._deps import RowID, Viewer
from opensti.web._render import render

router = APIRouter()

PAGE_SIZE = 50


def _day(value: str | None, what: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


@router.get("/calls")
async def calls(
    request: Request,
    user: Viewer,
    tn: str = "",
    call_id: str = "",
    since: str = "",
    until: str = "",
    cursor: str = "",
) -> Response:
    values = {"tn": tn, "call_id": call_id, "since": since, "until": until}
    context: dict[str, object] = {"title": "SIP Messages", "values": values, "rows": []}
    try:
        with request.app.state.database.read_session() as session:
            page = list_calls(
                session,
                tn_prefix=tn.strip() or None,
                call_id_part=call_id.strip() or None,
                since=_day(since, "from date"),
                until=_day(until, "to date"),
                cursor=cursor or None,
                limit=PAGE_SIZE,
            )
            context.update(
                rows=list(page.calls),
                next_cursor=page.next_cursor,
                window=page.call_id_window,
            )
    except OpenSTIError as exc:
        context["error"] = str(exc)
        return render(request, "calls.html", context, status_code=http_status(exc))
    context["first_page"] = not cursor
    return render(request, "calls.html", context)


@router.get("/calls/{message_id}")
async def call(request: Request, message_id: RowID, user: Viewer) -> Response:
    with request.app.state.database.read_session() as session:
        message = session.get(SipMessage, message_id)
        if message is None:
            missing = {"title": "Not found", "message": f"no SIP message {message_id} in the log"}
            return render(request, "error.html", missing, status_code=404)
        info = certificate_info(session, message)
    context = {"title": f"Call {message.call_id}", "call": message, "cert": info}
    return render(request, "call.html", context)
