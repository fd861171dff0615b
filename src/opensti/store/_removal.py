"""Removing entries, CAs and ACME accounts, refused while something still uses them.

An entry's published chains outlive it: they are detached from the entry and stay on
the STI-CR until they expire, so calls signed before the removal still verify.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.core.errors import Conflict
from opensti.store._certificates import is_published
from opensti.store._models import (
    AcmeAccount,
    Certificate,
    CertificateAuthority,
    CertificateEntry,
    CertificateState,
)
from opensti.store._routing import other_entries, refuse_default_leaving

__all__ = ["check_removable", "delete_acme_account", "delete_ca", "delete_entry"]


def check_removable(session: Session, entry: CertificateEntry) -> None:
    """Refuse removing the default signer while other entries remain (they would lose
    the entry that signs the calls their prefixes do not claim)."""
    if entry.is_default_signer and other_entries(session, entry):
        refuse_default_leaving(entry, "removed")


def delete_entry(session: Session, entry: CertificateEntry, *, now: dt.datetime) -> int:
    """Remove the entry with its events, tasks and unpublished certificates; the number
    of its chains that stay published (detached from it) until they expire.
    Refused as :func:`check_removable` says.
    """
    check_removable(session, entry)
    kept = session.scalars(
        select(Certificate).where(Certificate.entry_id == entry.id, is_published(now))
    ).all()
    for cert in kept:
        if cert.state is CertificateState.ACTIVE:
            cert.state, cert.state_changed_at = CertificateState.SUPERSEDED, now
        cert.entry_id = None
    session.flush()
    session.delete(entry)
    session.flush()
    return len(kept)


def _names(rows: Sequence[CertificateEntry | AcmeAccount]) -> str:
    return ", ".join(repr(row.name) for row in rows)


def delete_ca(session: Session, ca: CertificateAuthority) -> None:
    """Remove a CA no account uses (refused naming the accounts that do)."""
    users = session.scalars(
        select(AcmeAccount).where(AcmeAccount.ca_id == ca.id).order_by(AcmeAccount.name)
    ).all()
    if users:
        raise Conflict(
            f"CA {ca.name!r} is used by ACME account(s) {_names(users)}: remove them first",
            value=ca.name,
        )
    session.delete(ca)
    session.flush()


def delete_acme_account(session: Session, account: AcmeAccount) -> None:
    """Remove an ACME account no entry uses (refused naming the entries that do)."""
    users = session.scalars(
        select(CertificateEntry)
        .where(CertificateEntry.acme_account_id == account.id)
        .order_by(CertificateEntry.name)
    ).all()
    if users:
        raise Conflict(
            f"ACME account {account.name!r} is used by entry(ies) {_names(users)}: "
            "remove them first",
            value=account.name,
        )
    session.delete(account)
    session.flush()
