"""Read models for the pages: one query per table, shaped as the templates show them.

Reads only; every change goes through the services (``app.accounts``,
``app.certificates``, ``opensti.lifecycle``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased, joinedload

from opensti.lifecycle.acquire import CertificateInfo
from opensti.lifecycle.reconcile import (
    MarginSource,
    ReconcilePolicy,
    renew_before,
    renew_margin,
)
from opensti.store import Certificate, CertificateEntry, CertificateState, active_certificate
from opensti.web._charts import Span, timeline
from opensti.web._forms import duration_text
from opensti.web._health import RiskPolicy, entry_health

__all__ = ["EntryRow", "RenewalView", "certificate_timeline", "entry_rows", "renewal_view"]

#: The newest certificates the entry page draws on its timeline (the table lists all).
TIMELINE_CERTIFICATES = 12


@dataclass(frozen=True, slots=True)
class EntryRow:
    name: str
    spc: str
    stipa_account_id: str | None
    acme_account: str
    ca: str
    state: str
    not_after: dt.datetime | None
    #: When the loop renews the active certificate (its own schedule).
    next_renewal: dt.datetime | None
    #: When the loop tries again after a failure (its backoff), if it is waiting.
    retry_at: dt.datetime | None
    last_error: str | None
    problem: str | None
    has_token: bool
    #: Which calls it signs: the default signer's, and those of its prefixes.
    default_signer: bool = False
    prefixes: tuple[str, ...] = ()


def _state(entry: CertificateEntry, cert: Certificate | None, held: frozenset[int]) -> str:
    if not entry.enabled:
        return "disabled"
    if entry.failing_since is not None:
        return "failing"
    if cert is None and entry.id in held:
        return "waiting"
    return "active" if cert is not None else "no certificate"


def entry_rows(session: Session, now: dt.datetime, loop: ReconcilePolicy) -> list[EntryRow]:
    active = aliased(Certificate)
    rows = session.execute(
        select(CertificateEntry, active)
        .outerjoin(
            active,
            (active.entry_id == CertificateEntry.id) & (active.state == CertificateState.ACTIVE),
        )
        .options(
            joinedload(CertificateEntry.acme_account),
            joinedload(CertificateEntry.stipa_account),
        )
        .order_by(CertificateEntry.name)
    ).all()
    policy = RiskPolicy.load(session, loop)
    return [
        EntryRow(
            name=entry.name,
            spc=entry.spc,
            stipa_account_id=entry.stipa_account.account_id if entry.stipa_account else None,
            acme_account=entry.acme_account.name,
            ca=entry.acme_account.ca.name,
            state=_state(entry, cert, policy.held),
            not_after=cert.not_after if cert else None,
            next_renewal=policy.renew_at(entry, cert),
            retry_at=entry.next_attempt_at if entry.failing_since is not None else None,
            last_error=entry.last_error,
            problem=entry_health(entry, cert, now, policy).problem if entry.enabled else None,
            has_token=entry.spc_token_ciphertext is not None,
            default_signer=entry.is_default_signer,
            prefixes=tuple(entry.orig_prefixes or ()),
        )
        for entry, cert in rows
    ]


_SOURCES = {
    MarginSource.ENTRY: "this entry's own setting",
    MarginSource.GLOBAL: "the global setting (Settings, renewal policy)",
    MarginSource.DEFAULT: "the default: no margin is set here or in Settings",
}


@dataclass(frozen=True, slots=True)
class RenewalView:
    """An entry's renewal margin: its own (as the form shows it) and the one in force."""

    own: str
    source: MarginSource
    #: The margin in force, in words.
    margin: str
    #: Where it comes from, in words.
    origin: str
    #: The margin applied to the active certificate (cut to half its life) and when.
    applied: str | None
    renew_at: dt.datetime | None


def _margin_words(seconds: float | None, fraction: float) -> str:
    if seconds is not None:
        return f"{duration_text(seconds)} before expiry"
    share = "a third" if abs(fraction - 1 / 3) < 1e-9 else f"{fraction:.0%}"
    return f"{share} of each certificate's life"


def renewal_view(session: Session, entry: CertificateEntry, policy: RiskPolicy) -> RenewalView:
    seconds, source = renew_margin(entry, policy.renew_before)
    cert = active_certificate(session, entry.id)
    applied = renew_at = None
    if cert is not None and cert.not_before is not None and cert.not_after is not None:
        margin = renew_before(entry, cert, policy.renew_before, policy.renew_fraction)
        applied = duration_text(round(margin.total_seconds()))
        renew_at = cert.not_after - margin
    return RenewalView(
        own=duration_text(entry.renew_before),
        source=source,
        margin=_margin_words(seconds, policy.renew_fraction),
        origin=_SOURCES[source],
        applied=applied,
        renew_at=renew_at,
    )


def certificate_timeline(
    certificates: Sequence[CertificateInfo], now: dt.datetime, renew_at: dt.datetime | None
) -> Markup | None:
    """The entry's certificates as bars in time, newest on top; each one after the first
    issued is a renewal. None before any certificate was issued."""
    issued = sorted(
        (c.not_before, c.id, c.not_after, c)
        for c in certificates
        if c.not_before is not None and c.not_after is not None
    )
    if not issued:
        return None
    first_id = issued[0][1]
    spans = [
        Span(
            label=f"#{ident} {cert.serial[:8] if cert.serial else ''}".strip(),
            start=start,
            end=end,
            state=cert.state,
            renewal=ident != first_id,
        )
        for start, ident, end, cert in reversed(issued[-TIMELINE_CERTIFICATES:])
    ]
    return timeline("Certificate validity", spans, now=now, renew_at=renew_at)
