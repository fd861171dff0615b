"""Certificates of an entry and their states.

A certificate row is made ``pending`` with its private key before the ACME order, so
an interrupted run resumes with the same key and order; it gets its chain when issued
and becomes ``active`` through :func:`activate_certificate`, which supersedes the
previous one in the same transaction. Partial unique indexes keep at most one active
and one pending certificate per entry. Every change of an entry's active certificate
notifies the other nodes at commit (see :mod:`opensti.store._changes`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Sequence

from cryptography.hazmat.primitives import serialization
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from opensti.core.certs import load_certificate_chain
from opensti.core.errors import Conflict, InvalidInput
from opensti.core.passport import load_private_key
from opensti.store._common import add, get_by_id
from opensti.store._entries import get_entry_by_id
from opensti.store._models import Certificate, CertificateEntry, CertificateState
from opensti.store._routing import default_signer
from opensti.store._secrets import Secret, SecretBox

__all__ = [
    "CERTIFICATE_KEY",
    "activate_certificate",
    "active_certificate",
    "add_certificate",
    "certificate_key",
    "create_pending_certificate",
    "get_certificate",
    "list_certificates",
    "pending_certificate",
    "published_certificate_ids",
    "published_certificates",
    "record_issued_chain",
    "set_certificate_state",
]

CERTIFICATE_KEY = "certificate.key"
_PUBLISHED = (CertificateState.ACTIVE, CertificateState.SUPERSEDED)


def create_pending_certificate(
    session: Session,
    box: SecretBox,
    entry_id: int,
    *,
    key_pem: Secret,
    now: dt.datetime,
    order_url: str | None = None,
) -> Certificate:
    """The key (and order) of the next certificate, stored before asking the CA."""
    load_private_key(key_pem.reveal())
    cert = _new_certificate(session, box, entry_id, key_pem, now, order_url=order_url)
    _refuse_second_pending(session, entry_id)
    return add(session, cert, "certificate")


def _new_certificate(
    session: Session,
    box: SecretBox,
    entry_id: int,
    key_pem: Secret,
    now: dt.datetime,
    **fields: str | None,
) -> Certificate:
    get_entry_by_id(session, entry_id)
    return Certificate(
        entry_id=entry_id,
        state=CertificateState.PENDING,
        key_ciphertext=box.seal(key_pem, CERTIFICATE_KEY),
        created_at=now,
        state_changed_at=now,
        **fields,
    )


def _refuse_second_pending(session: Session, entry_id: int) -> None:
    if pending_certificate(session, entry_id) is not None:
        raise Conflict(f"entry {entry_id} already has a pending certificate")


def record_issued_chain(
    session: Session, box: SecretBox, certificate: Certificate, chain_pem: bytes
) -> Certificate:
    """Attach the issued chain to a pending certificate, checking it fits the stored key."""
    if certificate.state is not CertificateState.PENDING:
        raise Conflict(f"certificate {certificate.id} is {certificate.state}, not pending")
    _fill_from_chain(certificate, chain_pem, certificate_key(box, certificate))
    session.flush()
    return certificate


def add_certificate(
    session: Session,
    box: SecretBox,
    entry_id: int,
    *,
    chain_pem: bytes,
    key_pem: Secret,
    now: dt.datetime,
    x5u_url: str | None = None,
    activate: bool = False,
) -> Certificate:
    """Store an already issued certificate (imported, or obtained in one go)."""
    cert = _new_certificate(session, box, entry_id, key_pem, now, x5u_url=x5u_url)
    _fill_from_chain(cert, chain_pem, key_pem)
    if not activate:
        _refuse_second_pending(session, entry_id)
        return add(session, cert, "certificate")
    _supersede_active(session, entry_id, now)
    cert.state, cert.activated_at = CertificateState.ACTIVE, now
    add(session, cert, "certificate")
    promote_first_default(session, get_entry_by_id(session, entry_id))
    return cert


def _fill_from_chain(cert: Certificate, chain_pem: bytes, key_pem: Secret) -> None:
    chain = load_certificate_chain(chain_pem)
    leaf_public = chain.leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_public = (
        load_private_key(key_pem.reveal())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if leaf_public != key_public:
        raise InvalidInput("the certificate does not match its private key")
    cert.serial = format(chain.leaf.serial_number, "x")
    cert.fingerprint = hashlib.sha256(
        chain.leaf.public_bytes(serialization.Encoding.DER)
    ).hexdigest()
    cert.not_before = chain.leaf.not_valid_before_utc
    cert.not_after = chain.leaf.not_valid_after_utc
    cert.chain_pem = chain_pem.decode("ascii")


def activate_certificate(session: Session, certificate_id: int, *, now: dt.datetime) -> Certificate:
    """Make an issued certificate the entry's active one; the previous becomes superseded.

    The first entry ever to get an active certificate, with no default signer set,
    becomes the default signer (see :mod:`opensti.store._routing`).
    """
    cert = get_certificate(session, certificate_id)
    if cert.chain_pem is None:
        raise Conflict(f"certificate {certificate_id} has not been issued yet")
    if cert.state is CertificateState.ACTIVE:
        return cert
    if cert.state is not CertificateState.PENDING:
        raise Conflict(f"certificate {certificate_id} is {cert.state}: it cannot become active")
    if cert.entry is None:
        raise Conflict(f"certificate {certificate_id} belongs to a removed entry")
    _supersede_active(session, cert.entry.id, now)
    cert.state, cert.activated_at, cert.state_changed_at = CertificateState.ACTIVE, now, now
    session.flush()
    promote_first_default(session, cert.entry)
    return cert


def promote_first_default(session: Session, entry: CertificateEntry) -> bool:
    """Make ``entry`` the default signer if it is the first with an active certificate
    and no entry is the default; True if it did (see :mod:`opensti.store._routing`)."""
    if entry.is_default_signer or not entry.enabled or default_signer(session) is not None:
        return False
    others_active = session.scalar(
        select(func.count(Certificate.id)).where(
            Certificate.entry_id != entry.id, Certificate.state == CertificateState.ACTIVE
        )
    )
    if others_active:
        return False
    entry.is_default_signer = True
    session.flush()
    return True


def _supersede_active(session: Session, entry_id: int, now: dt.datetime) -> None:
    # An explicit UPDATE first, so the one-active index never sees two active rows. It
    # bypasses the change hook; the activation that always follows it notifies.
    session.execute(
        update(Certificate)
        .where(Certificate.entry_id == entry_id, Certificate.state == CertificateState.ACTIVE)
        .values(state=CertificateState.SUPERSEDED, state_changed_at=now)
        .execution_options(synchronize_session="fetch")
    )


def set_certificate_state(
    session: Session, certificate_id: int, state: CertificateState, *, now: dt.datetime
) -> Certificate:
    """Mark a certificate revoked, expired or failed (activation has its own function)."""
    if state in (CertificateState.ACTIVE, CertificateState.PENDING):
        raise InvalidInput(f"use activate_certificate or a new certificate, not state {state}")
    cert = get_certificate(session, certificate_id)
    cert.state, cert.state_changed_at = state, now
    session.flush()
    return cert


def get_certificate(session: Session, certificate_id: int) -> Certificate:
    return get_by_id(session, Certificate, certificate_id, "certificate")


def list_certificates(
    session: Session, entry_id: int, *, states: Collection[CertificateState] | None = None
) -> Sequence[Certificate]:
    """Newest first."""
    query = select(Certificate).where(Certificate.entry_id == entry_id)
    if states is not None:
        query = query.where(Certificate.state.in_(list(states)))
    return session.scalars(query.order_by(Certificate.id.desc())).all()


def _one_in_state(session: Session, entry_id: int, state: CertificateState) -> Certificate | None:
    return session.scalars(
        select(Certificate).where(Certificate.entry_id == entry_id, Certificate.state == state)
    ).one_or_none()


def active_certificate(session: Session, entry_id: int) -> Certificate | None:
    return _one_in_state(session, entry_id, CertificateState.ACTIVE)


def pending_certificate(session: Session, entry_id: int) -> Certificate | None:
    return _one_in_state(session, entry_id, CertificateState.PENDING)


def is_published(now: dt.datetime) -> ColumnElement[bool]:
    """The filter of what the STI-CR serves (see :func:`published_certificates`)."""
    issued_pending = and_(
        Certificate.state == CertificateState.PENDING, Certificate.chain_pem.is_not(None)
    )
    return and_(or_(Certificate.state.in_(_PUBLISHED), issued_pending), Certificate.not_after > now)


def published_certificates(session: Session, *, now: dt.datetime) -> Sequence[Certificate]:
    """What the STI-CR serves: active and superseded certificates not yet expired, and a
    pending one once its chain is stored, so its x5u answers before anyone signs with it.

    The reconcile loop stores a chain only after validating it; a chain that fails is
    marked ``failed`` and never served.
    """
    query = select(Certificate).where(is_published(now)).order_by(Certificate.id)
    return session.scalars(query).all()


def published_certificate_ids(session: Session, *, now: dt.datetime) -> tuple[int, ...]:
    """The ids of :func:`published_certificates`: cheap enough to ask on every change."""
    query = select(Certificate.id).where(is_published(now)).order_by(Certificate.id)
    return tuple(session.scalars(query))


def certificate_key(box: SecretBox, certificate: Certificate) -> Secret:
    """The certificate's private key PEM."""
    return box.open(certificate.key_ciphertext, CERTIFICATE_KEY)
