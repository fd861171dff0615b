"""Which number a diverted INVITE was diverted from (for a div PASSporT, RFC 8946).

Diversion (RFC 5806 section 4): each diverting proxy adds its entry on top, so the
first entry is the most recent diversion; its URI is the number the call was last
diverted from. History-Info (RFC 7044 section 4): entries in the order the request
was retargeted, the last one the current target; the one before it is the number
diverted from. Diversion is read first, as US SHAKEN networks mostly carry it.
"""

from __future__ import annotations

from opensti.sip.address import parse_name_addr, split_list, uri_tn
from opensti.sip.message import SIPRequest

__all__ = ["diverting_tn"]

#: History-Info entries looked at; more is not a call.
_MAX_ENTRIES = 32


def _entries(request: SIPRequest, name: str) -> list[str]:
    entries = [item for value in request.header_values(name) for item in split_list(value)]
    return entries[:_MAX_ENTRIES]


def diverting_tn(request: SIPRequest, *, nanp: bool = True) -> str | None:
    """The TN the call was diverted from, or None when the INVITE shows no diversion.

    Raises :class:`SIPParseError` for a Diversion/History-Info entry that does not parse.
    """
    diversion = _entries(request, "diversion")
    if diversion:
        return uri_tn(parse_name_addr(diversion[0], "Diversion").uri, nanp=nanp)
    history = _entries(request, "history-info")
    if len(history) >= 2:
        return uri_tn(parse_name_addr(history[-2], "History-Info").uri, nanp=nanp)
    return None
