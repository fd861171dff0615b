"""The dashboard line: every enabled entry healthy, or which ones need attention.

An entry is at risk when its renewal is failing, when it has no valid certificate,
when its certificate is past the time the loop should have renewed it (the loop's own
:func:`~opensti.lifecycle.reconcile.renew_at`, plus the time one attempt may take), or
when it has less life left than the notification policy's at-risk threshold (the
threshold of the at-risk email). So the line and the emails never disagree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.lifecycle.notify import Observation, get_policy
from opensti.lifecycle.reconcile import (
    ReconcilePolicy,
    get_renew_before,
    held_entries,
    renew_at,
)
from opensti.store import Certificate, CertificateEntry, CertificateState

__all__ = ["EntryHealth", "Health", "RiskPolicy", "entry_health", "health_summary"]

_LOOP = ReconcilePolicy()


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """The renewal and notification settings that decide what "at risk" means."""

    #: The notification policy's threshold: less life left than this is at risk.
    at_risk: dt.timedelta
    #: The global renewal margin in seconds (None: a fraction of the lifetime).
    renew_before: float | None
    renew_fraction: float = _LOOP.renew_fraction
    #: How long past its renewal time a certificate may still be in the works.
    grace: dt.timedelta = dt.timedelta(seconds=_LOOP.tick + _LOOP.attempt_timeout)
    #: Entries added without "request now": they wait for a first request.
    held: frozenset[int] = frozenset()

    @classmethod
    def load(cls, session: Session, loop: ReconcilePolicy) -> RiskPolicy:
        """The stored settings, with the running loop's fraction and grace (one pass
        plus one attempt)."""
        return cls(
            get_policy(session).at_risk,
            get_renew_before(session),
            loop.renew_fraction,
            dt.timedelta(seconds=loop.tick + loop.attempt_timeout),
            frozenset(held_entries(session)),
        )

    def renew_at(self, entry: CertificateEntry, cert: Certificate | None) -> dt.datetime | None:
        return renew_at(entry, cert, self.renew_before, self.renew_fraction)


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


def _at(value: dt.datetime) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _problem(
    entry: CertificateEntry, cert: Certificate | None, now: dt.datetime, policy: RiskPolicy
) -> str | None:
    if entry.failing_since is not None:
        return f"renewal failing since {_at(entry.failing_since)}"
    if cert is None and entry.id in policy.held:
        return "waiting: Renew now requests its first certificate"
    if cert is None or cert.not_after is None:
        return "no active certificate"
    if cert.not_after <= now:
        return "certificate expired"
    due = policy.renew_at(entry, cert)
    if due is not None and now > due + policy.grace:
        return f"renewal overdue since {_at(due)}; certificate expires {_at(cert.not_after)}"
    observation = Observation(failing=False, not_after=cert.not_after, not_before=cert.not_before)
    if observation.at_risk(now, policy.at_risk):
        return f"certificate expires {_at(cert.not_after)}"
    return None


def entry_health(
    entry: CertificateEntry, cert: Certificate | None, now: dt.datetime, policy: RiskPolicy
) -> EntryHealth:
    """Why an enabled entry is at risk, in words, or None when it is fine."""
    return EntryHealth(entry.name, _problem(entry, cert, now, policy))


def health_summary(session: Session, now: dt.datetime, loop: ReconcilePolicy) -> Health:
    """One query: enabled entries with their active certificate."""
    rows = session.execute(
        select(CertificateEntry, Certificate)
        .outerjoin(
            Certificate,
            (Certificate.entry_id == CertificateEntry.id)
            & (Certificate.state == CertificateState.ACTIVE),
        )
        .where(CertificateEntry.enabled.is_(True))
        .order_by(CertificateEntry.name)
    ).all()
    if not rows:
        return Health(0, ())
    policy = RiskPolicy.load(session, loop)
    states = [entry_health(entry, cert, now, policy) for entry, cert in rows]
    return Health(len(states), tuple(s for s in states if not s.healthy))
