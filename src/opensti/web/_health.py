"""The dashboard line: every enabled entry healthy, or which ones need attention."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.store import Certificate, CertificateEntry, CertificateState

__all__ = ["AT_RISK_DEFAULT", "EntryHealth", "Health", "entry_health", "health_summary"]

#: Less than this much valid certificate left is "at risk" (the notification default).
AT_RISK_DEFAULT = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class EntryHealth:
    name: str
    problem: str | None

    @property
    def healthy(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class Health:
    entries: int
    at_risk: tuple[EntryHealth, ...]

    @property
    def healthy(self) -> bool:
        return not self.at_risk


def entry_health(
    entry: CertificateEntry,
    not_after: dt.datetime | None,
    now: dt.datetime,
    threshold: dt.timedelta = AT_RISK_DEFAULT,
) -> EntryHealth:
    """Why an enabled entry is at risk, in words, or None when it is fine."""
    if entry.failing_since is not None:
        problem = f"failing since {entry.failing_since:%Y-%m-%d %H:%M} UTC"
    elif not_after is None:
        problem = "no active certificate"
    elif not_after <= now:
        problem = "certificate expired"
    elif not_after - now < threshold:
        problem = f"certificate expires {not_after:%Y-%m-%d %H:%M} UTC"
    else:
        problem = None
    return EntryHealth(entry.name, problem)


def health_summary(session: Session, now: dt.datetime) -> Health:
    """One query: enabled entries with their active certificate's expiry."""
    rows = session.execute(
        select(CertificateEntry, Certificate.not_after)
        .outerjoin(
            Certificate,
            (Certificate.entry_id == CertificateEntry.id)
            & (Certificate.state == CertificateState.ACTIVE),
        )
        .where(CertificateEntry.enabled.is_(True))
        .order_by(CertificateEntry.name)
    ).all()
    states = [entry_health(entry, not_after, now) for entry, not_after in rows]
    return Health(len(states), tuple(s for s in states if not s.healthy))
