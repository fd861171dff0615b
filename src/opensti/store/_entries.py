"""Certificate entries (one per SPC) and the per-entry lease of the reconcile loop.

A lease is taken, renewed and given back with one conditional UPDATE each, so two
workers on one database (SQLite or PostgreSQL) can never both hold it: the database
decides which UPDATE matched. ``now`` is always a parameter; every worker must pass
its own clock, so leases assume clocks agree to well within the TTL. The UPDATEs
bypass the ORM: an entry object loaded earlier in the same session keeps its old lease
columns, so trust the returned :class:`Lease`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from opensti.core.errors import InvalidInput
from opensti.store._accounts import get_acme_account, get_stipa_account
from opensti.store._common import add, ensure_absent, get_by, get_by_id
from opensti.store._models import CertificateEntry, StiPaEnvironment
from opensti.store._routing import RoutingChange, change_routing, check_prefixes
from opensti.store._secrets import Secret, SecretBox
from opensti.store._validate import check_attest, check_name, check_spc, check_url

__all__ = [
    "SPC_TOKEN",
    "Lease",
    "acquire_lease",
    "create_entry",
    "entry_spc_token",
    "get_entry",
    "get_entry_by_id",
    "list_entries",
    "release_lease",
    "renew_lease",
    "set_entry_spc_token",
]

SPC_TOKEN = "certificate_entry.spc_token"  # noqa: S105  (a label, not a secret)


def create_entry(
    session: Session,
    *,
    name: str,
    spc: str,
    acme_account: str,
    stipa_account_id: str | None = None,
    stipa_environment: StiPaEnvironment = StiPaEnvironment.PRODUCTION,
    crl_url: str | None = None,
    renew_before: dt.timedelta | None = None,
    orig_prefixes: Sequence[str] = (),
    is_default_signer: bool = False,
    default_attest: str | None = None,
    enabled: bool = True,
    spc_pattern: str | None = None,
) -> CertificateEntry:
    """A new entry; the ACME and STI-PA accounts are named and must exist, and the
    routing follows the rules of :func:`~opensti.store._routing.change_routing`."""
    check_name(name, "certificate entry")
    spc = check_spc(spc, spc_pattern)
    if renew_before is not None and renew_before <= dt.timedelta(0):
        raise InvalidInput("renew-before must be a positive duration")
    routing = RoutingChange(
        default_signer=is_default_signer,
        add_prefixes=tuple(check_prefixes(orig_prefixes)),
        attest=check_attest(default_attest),
        enabled=enabled,
    )
    entry = CertificateEntry(
        name=name,
        spc=spc,
        acme_account_id=get_acme_account(session, acme_account).id,
        stipa_account_id=None
        if stipa_account_id is None
        else get_stipa_account(session, stipa_account_id, stipa_environment).id,
        crl_url=crl_url and check_url(crl_url, "CRL URL"),
        renew_before=None if renew_before is None else int(renew_before.total_seconds()),
        orig_prefixes=[],
        is_default_signer=False,
        enabled=enabled,
    )
    ensure_absent(session, CertificateEntry, "certificate entry", name=name)
    add(session, entry, "certificate entry")
    change_routing(session, entry, routing)
    return entry


def get_entry(session: Session, name: str) -> CertificateEntry:
    return get_by(session, CertificateEntry, "certificate entry", name=name)


def get_entry_by_id(session: Session, entry_id: int) -> CertificateEntry:
    return get_by_id(session, CertificateEntry, entry_id, "certificate entry")


def list_entries(session: Session, *, enabled_only: bool = False) -> Sequence[CertificateEntry]:
    query = select(CertificateEntry).order_by(CertificateEntry.name)
    if enabled_only:
        query = query.where(CertificateEntry.enabled.is_(True))
    return session.scalars(query).all()


def set_entry_spc_token(
    session: Session, box: SecretBox, entry: CertificateEntry, token: Secret | None
) -> None:
    """Keep (or with None, forget) an SPC token the operator brought for this entry."""
    entry.spc_token_ciphertext = None if token is None else box.seal(token, SPC_TOKEN)
    session.flush()


def entry_spc_token(box: SecretBox, entry: CertificateEntry) -> Secret | None:
    return box.open_optional(entry.spc_token_ciphertext, SPC_TOKEN)


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of holding an entry until ``expires_at``; ``epoch`` fences stale holders."""

    entry_id: int
    holder: str
    expires_at: dt.datetime
    epoch: int


def _check_lease_args(holder: str, ttl: dt.timedelta) -> None:
    if not holder or len(holder) > 128:
        raise InvalidInput("a lease holder is a name of 1 to 128 characters", value=holder)
    if ttl <= dt.timedelta(0):
        raise InvalidInput("a lease TTL must be positive")


def acquire_lease(
    session: Session, entry_id: int, holder: str, *, now: dt.datetime, ttl: dt.timedelta
) -> Lease | None:
    """Take the entry if it is free, expired, or already ours; None if another holds it.

    Re-acquiring an unexpired lease of ours keeps its epoch; any other take bumps it.
    """
    _check_lease_args(holder, ttl)
    table = CertificateEntry
    still_ours = and_(table.lease_holder == holder, table.lease_expires_at > now)
    result = session.execute(
        update(table)
        .where(
            table.id == entry_id,
            or_(
                table.lease_holder.is_(None),
                table.lease_holder == holder,
                table.lease_expires_at <= now,
            ),
        )
        .values(
            lease_holder=holder,
            lease_expires_at=now + ttl,
            lease_epoch=case((still_ours, table.lease_epoch), else_=table.lease_epoch + 1),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        get_entry_by_id(session, entry_id)  # NotFound if there is no such entry
        return None
    return _current_lease(session, entry_id)


def renew_lease(
    session: Session, lease: Lease, *, now: dt.datetime, ttl: dt.timedelta
) -> Lease | None:
    """Extend a lease still held; None if it expired or changed hands (stop working)."""
    _check_lease_args(lease.holder, ttl)
    table = CertificateEntry
    result = session.execute(
        update(table)
        .where(*_held(lease), table.lease_expires_at > now)
        .values(lease_expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return _current_lease(session, lease.entry_id)


def release_lease(session: Session, lease: Lease) -> bool:
    """Give the entry back; False if the lease had already been taken over."""
    result = session.execute(
        update(CertificateEntry)
        .where(*_held(lease))
        .values(lease_holder=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _held(lease: Lease) -> tuple[ColumnElement[bool], ...]:
    table = CertificateEntry
    return (
        table.id == lease.entry_id,
        table.lease_holder == lease.holder,
        table.lease_epoch == lease.epoch,
    )


def _current_lease(session: Session, entry_id: int) -> Lease:
    row = session.execute(
        select(
            CertificateEntry.lease_holder,
            CertificateEntry.lease_expires_at,
            CertificateEntry.lease_epoch,
        ).where(CertificateEntry.id == entry_id)
    ).one()
    holder, expires_at, epoch = row
    # Both were just set by our UPDATE, in this transaction.
    assert holder is not None
    assert expires_at is not None
    return Lease(entry_id=entry_id, holder=holder, expires_at=expires_at, epoch=epoch)
