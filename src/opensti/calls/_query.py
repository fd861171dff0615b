"""Reading the SIP message log: filtered pages of calls, and one call with its certificate
(ours for a call we signed, the other provider's for a call we verified).

Pages are keyset pages, newest first: the cursor names the last row of a page by
(time, id), so rows written while someone pages do not shift or repeat the next page,
and a deep page costs the same as the first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

from opensti.calls._search import CallIdWindow, call_id_search, number_condition, tn_prefixes
from opensti.core.certs import load_certificate_chain, tnauthlist_of
from opensti.core.errors import InvalidCertificate, InvalidInput, NotFound
from opensti.core.tn import canonicalize_tn
from opensti.store import Certificate, RemoteCertificate, SipMessage

__all__ = [
    "MAX_PAGE",
    "CallPage",
    "CertificateInfo",
    "call_dict",
    "certificate_info",
    "describe_certificate",
    "find_calls",
    "list_calls",
]

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: Sequence[SipMessage]
    #: Pass back as ``cursor`` for the next (older) page; None on the last page.
    next_cursor: str | None
    #: A search for part of a Call-ID looked only at the newest calls (None: at all).
    call_id_window: CallIdWindow | None = None


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The certificate behind a call: ours (``certificate_id``), another provider's that
    a verification checked (``remote_certificate_id``), or only the x5u it named."""

    x5u: str | None
    certificate_id: int | None = None
    remote_certificate_id: int | None = None
    entry: str | None = None
    state: str | None = None
    subject: str | None = None
    issuer: str | None = None
    spc: str | None = None
    serial: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    fingerprint: str | None = None
    #: Ours: the chain we publish; another provider's: its end-entity certificate.
    pem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            key: value.isoformat() if isinstance(value, dt.datetime) else value
            for key, value in asdict(self).items()
        }


def _encode_cursor(message: SipMessage) -> str:
    micros = int(message.at.timestamp() * 1_000_000)
    return f"{micros}.{message.id}"


def _decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    micros, _, ident = cursor.partition(".")
    if not (micros.isdigit() and ident.isdigit()):
        raise InvalidInput(f"not a call log cursor: {cursor[:40]!r}", value=cursor[:40])
    at = dt.datetime.fromtimestamp(0, dt.UTC) + dt.timedelta(microseconds=int(micros))
    return at, int(ident)


def _tn(value: str) -> str:
    """As the signing and verification paths store numbers (NANP 10 digits get the 1)."""
    return canonicalize_tn(value)


def list_calls(
    session: Session,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tn: str | None = None,
    call_id: str | None = None,
    tn_prefix: str | None = None,
    call_id_part: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> CallPage:
    """One page of calls, newest first; ``tn`` matches the calling or the called number,
    ``tn_prefix`` the start of either, ``call_id_part`` a whole Call-ID or part of one
    (see :mod:`opensti.calls._search` for what each costs)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", value=limit)
    dates = []
    if since is not None:
        dates.append(SipMessage.at >= since)
    if until is not None:
        dates.append(SipMessage.at < until)
    query = select(SipMessage).where(*dates)
    window = None
    if call_id is not None:
        query = query.where(SipMessage.call_id == call_id)
    if call_id_part is not None:
        search = call_id_search(session, call_id_part, tuple(dates))
        query, window = query.where(search.condition), search.window
    if tn is not None:
        digits = _tn(tn)
        query = query.where(or_(SipMessage.from_tn == digits, SipMessage.to_tn == digits))
    if tn_prefix is not None:
        query = query.where(number_condition(session, tn_prefixes(tn_prefix)))
    if cursor is not None:
        at, ident = _decode_cursor(cursor)
        # A row-value comparison, so both databases start the (at, id) index at the cursor.
        query = query.where(tuple_(SipMessage.at, SipMessage.id) < tuple_(at, ident))
    order = (SipMessage.at.desc(), SipMessage.id.desc())
    rows = session.scalars(query.order_by(*order).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return CallPage(rows, _encode_cursor(rows[-1]) if more and rows else None, window)


def find_calls(session: Session, call_id: str) -> Sequence[SipMessage]:
    """Every record of one Call-ID (a call may be signed and verified), oldest first."""
    rows = session.scalars(
        select(SipMessage)
        .where(SipMessage.call_id == call_id)
        .order_by(SipMessage.at, SipMessage.id)
        .limit(MAX_PAGE)
    ).all()
    if not rows:
        raise NotFound(f"no call with Call-ID {call_id!r} in the log", value=call_id)
    return rows


def _leaf(chain_pem: str | None) -> x509.Certificate | None:
    if not chain_pem:
        return None
    try:
        return load_certificate_chain(chain_pem.encode("ascii")).leaf
    except (InvalidCertificate, UnicodeEncodeError):
        return None


#: What a call's certificate names as its entry once the entry was removed.
REMOVED_ENTRY = "(removed entry)"


def describe_certificate(row: Certificate, x5u: str | None = None) -> CertificateInfo:
    """Subject, SPC, issuer, validity and fingerprint of one of our certificates."""
    leaf = _leaf(row.chain_pem)
    tnauthlist = tnauthlist_of(leaf) if leaf is not None else None
    return CertificateInfo(
        x5u=row.x5u_url or x5u,
        certificate_id=row.id,
        entry=row.entry.name if row.entry is not None else REMOVED_ENTRY,
        state=row.state.value,
        subject=leaf.subject.rfc4514_string() if leaf is not None else None,
        issuer=leaf.issuer.rfc4514_string() if leaf is not None else None,
        spc=tnauthlist.single_spc
        if tnauthlist is not None
        else (row.entry.spc if row.entry is not None else None),
        serial=row.serial,
        not_before=row.not_before,
        not_after=row.not_after,
        fingerprint=row.fingerprint,
        pem=row.chain_pem,
    )


def _describe_remote(row: RemoteCertificate, x5u: str | None) -> CertificateInfo:
    """Another provider's certificate, as the call log stored it."""
    return CertificateInfo(
        x5u=x5u,
        remote_certificate_id=row.id,
        subject=row.subject,
        issuer=row.issuer,
        spc=row.spc,
        serial=row.serial,
        not_before=row.not_before,
        not_after=row.not_after,
        fingerprint=row.fingerprint,
        pem=row.pem,
    )


def certificate_info(session: Session, message: SipMessage) -> CertificateInfo | None:
    """The certificate that signed a call: ours by id, another provider's as stored when
    the call was verified, else one of ours found by its x5u."""
    row: Certificate | None = None
    if message.certificate_id is None and message.remote_certificate_id is not None:
        remote = session.get(RemoteCertificate, message.remote_certificate_id)
        if remote is not None:
            return _describe_remote(remote, message.x5u)
    if message.certificate_id is not None:
        row = session.get(Certificate, message.certificate_id)
    elif message.x5u:
        row = session.scalars(
            select(Certificate).where(Certificate.x5u_url == message.x5u).limit(1)
        ).first()
    if row is not None:
        return describe_certificate(row, message.x5u)
    return CertificateInfo(x5u=message.x5u) if message.x5u else None


def call_dict(message: SipMessage) -> dict[str, Any]:
    """One call as the CLI's ``--json`` and the REST API show it."""
    return {
        "id": message.id,
        "at": message.at.isoformat(),
        "call_id": message.call_id,
        "direction": message.direction.value,
        "action": message.action.value,
        "from": message.from_tn,
        "to": message.to_tn,
        "attest": message.attest,
        "verstat": message.verstat,
        "sip_code": message.sip_code,
        "reason": message.reason,
        "certificate_id": message.certificate_id,
        "remote_certificate_id": message.remote_certificate_id,
        "x5u": message.x5u,
        "rcd_name": message.rcd_name,
        "rcd_icon": message.rcd_icon,
    }
