"""Telling the other nodes that what they sign with or publish has changed.

Every node keeps two things in memory that come from the store: the signing keyring
(each enabled entry's signing settings and active certificate) and the STI-CR's
published chains. On PostgreSQL, a transaction that changes either sends
``NOTIFY opensti_certificates, '<kind>:<entry id>'`` (delivered at commit, never for
a rollback, duplicates within one transaction folded by the server); the watchers in
:mod:`opensti.store._watch` wake on it. SQLite has no NOTIFY and serves one node, so
its watchers poll and nothing is sent.

The notifications are not sent by hand at each write: an ``after_flush`` hook on every
:class:`~opensti.store.Database` session looks at the certificates and entries the
flush wrote and derives the kinds from their attribute history, so an edit made
anywhere (CLI, API, web UI, the reconcile loop) reaches the other nodes. Bulk
``UPDATE``/``DELETE`` statements bypass that history: code that changes these columns
that way must call :func:`notify_change` itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import NO_VALUE, Session, sessionmaker

from opensti.store._models import Certificate, CertificateEntry, CertificateState

__all__ = [
    "CERTIFICATES_CHANNEL",
    "Change",
    "notify_change",
    "parse_payload",
    "send_changes_on_flush",
]

CERTIFICATES_CHANNEL = "opensti_certificates"

#: What the STI-AS reads from an entry (besides its active certificate).
SIGNING_COLUMNS = (
    "name",
    "spc",
    "enabled",
    "orig_prefixes",
    "is_default_signer",
    "default_attest",
    "rcd_name",
    "rcd_icon_url",
    "rcd_icon_digest",
)
_PUBLISHED_STATES = (CertificateState.ACTIVE, CertificateState.SUPERSEDED)


class Change(StrEnum):
    """What changed, as the first part of a notification's payload."""

    #: The keyring: an active certificate, or an entry's signing settings.
    SIGNING = "signing"
    #: The STI-CR: a chain became published, or stopped being.
    PUBLISHED = "published"


def notify_change(session: Session, kind: Change, entry_id: int | str) -> None:
    """Tell the other nodes, when this transaction commits; nothing to do on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        notification = select(func.pg_notify(CERTIFICATES_CHANNEL, f"{kind}:{entry_id}"))
        session.connection().execute(notification)


def parse_payload(payload: str) -> frozenset[Change]:
    """The kinds a notification names; an unknown one (e.g. a bare entry id from an
    older node during a rolling upgrade) counts as every kind."""
    kind, _, _entry = payload.partition(":")
    try:
        return frozenset({Change(kind)})
    except ValueError:
        return frozenset(Change)


def send_changes_on_flush(sessions: sessionmaker[Session]) -> None:
    """Install the hook that notifies every change a flush of these sessions writes."""
    event.listen(sessions, "after_flush", _after_flush)


def _after_flush(session: Session, _context: Any) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return
    for kind, entry_id in sorted(_changes(session)):
        notify_change(session, kind, entry_id)


def _changes(session: Session) -> set[tuple[Change, int]]:
    found: set[tuple[Change, int]] = set()
    for row in session.new:
        if isinstance(row, Certificate):
            found.update(_certificate_changes(row, None, False))
        elif isinstance(row, CertificateEntry) and row.enabled:
            found.add((Change.SIGNING, row.id))  # it claims calls from now on
    for row in session.dirty:
        if isinstance(row, Certificate):
            old_state, old_chain = _old(row, "state"), _old(row, "chain_pem")
            found.update(_certificate_changes(row, old_state, old_chain is not None))
        elif isinstance(row, CertificateEntry) and _changed(row, SIGNING_COLUMNS):
            found.add((Change.SIGNING, row.id))
    for row in session.deleted:
        if isinstance(row, Certificate):
            found.update((kind, _entry_id(row)) for kind in Change)
        elif isinstance(row, CertificateEntry):
            found.update((kind, row.id) for kind in Change)
    return found


def _entry_id(cert: Certificate) -> int:
    """0 for the certificate of a removed entry: receivers go by the kind alone."""
    return cert.entry_id or 0


def _certificate_changes(
    cert: Certificate, old_state: CertificateState | None, old_chain: bool
) -> set[tuple[Change, int]]:
    kinds: set[tuple[Change, int]] = set()
    if (old_state is CertificateState.ACTIVE) != (cert.state is CertificateState.ACTIVE):
        kinds.add((Change.SIGNING, _entry_id(cert)))
    if _published(old_state, old_chain) != _published(cert.state, cert.chain_pem is not None):
        kinds.add((Change.PUBLISHED, _entry_id(cert)))
    return kinds


def _published(state: CertificateState | None, has_chain: bool) -> bool:
    """As :func:`~opensti.store.published_certificates` sees it (expiry aside)."""
    return state in _PUBLISHED_STATES or (state is CertificateState.PENDING and has_chain)


def _old(row: object, attribute: str) -> Any:
    """The value ``attribute`` had before this flush. Never loaded (a row inserted in
    this session without it) means the column's NULL."""
    state = inspect(row)
    if attribute not in state.committed_state:
        return getattr(row, attribute)
    old = state.committed_state[attribute]
    return None if old is NO_VALUE else old


def _changed(row: object, attributes: tuple[str, ...]) -> bool:
    state = inspect(row)
    return any(state.attrs[name].history.has_changes() for name in attributes)
