"""Certificates of an entry: pending -> issued -> active -> superseded, and the constraints."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, insert, text
from sqlalchemy.exc import IntegrityError

from opensti.core.errors import Conflict, InvalidCertificate, InvalidInput, NotFound
from opensti.sandbox.pki import DemoPKI, private_key_pem
from opensti.store import (
    Certificate,
    CertificateEntry,
    CertificateState,
    Database,
    EventOutcome,
    LifecycleEvent,
    Secret,
    SecretBox,
    activate_certificate,
    active_certificate,
    add_certificate,
    certificate_key,
    create_pending_certificate,
    get_certificate,
    list_certificates,
    list_events,
    pending_certificate,
    published_certificates,
    record_event,
    record_issued_chain,
    set_certificate_state,
)

from .conftest import NOW, add_entry, key_pem, row_counts

pytestmark = pytest.mark.db_dialect

LATER = NOW + dt.timedelta(hours=1)


def _issue(pki: DemoPKI, spc: str = "123H", days: float = 7) -> tuple[Secret, bytes]:
    key, cert = pki.issue(spc, days=days)
    return Secret(private_key_pem(key)), pki.chain_pem(cert)


def _active_cert(db: Database, box: SecretBox, entry_id: int, pki: DemoPKI) -> Certificate:
    key, chain = _issue(pki)
    with db.session() as session:
        return add_certificate(
            session, box, entry_id, chain_pem=chain, key_pem=key, now=NOW, activate=True
        )


def test_pending_then_issued_then_active(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    key, chain = _issue(pki)
    with db.session() as session:
        pending = create_pending_certificate(
            session, box, entry.id, key_pem=key, now=NOW, order_url="https://ca.test/order/1"
        )
    with db.session() as session:
        assert pending_certificate(session, entry.id).id == pending.id  # type: ignore[union-attr]
        with pytest.raises(Conflict, match="not been issued"):
            activate_certificate(session, pending.id, now=LATER)
    with db.session() as session:
        issued = record_issued_chain(session, box, get_certificate(session, pending.id), chain)
        assert issued.state is CertificateState.PENDING
        activate_certificate(session, pending.id, now=LATER)
    with db.read_session() as session:
        cert = active_certificate(session, entry.id)
        assert cert is not None
        assert (cert.id, cert.activated_at, cert.order_url) == (
            pending.id,
            LATER,
            "https://ca.test/order/1",
        )
        assert cert.not_after is not None
        assert cert.not_after > NOW + dt.timedelta(days=6)
        assert cert.not_after.tzinfo is dt.UTC
        assert cert.chain_pem == chain.decode()
        assert len(cert.fingerprint or "") == 64
        assert certificate_key(box, cert) == key
        assert pending_certificate(session, entry.id) is None


def test_activation_supersedes_and_old_certs_stay_published(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    first = _active_cert(db, box, entry.id, pki)
    key, chain = _issue(pki, days=1)
    with db.session() as session:
        second = add_certificate(session, box, entry.id, chain_pem=chain, key_pem=key, now=LATER)
        activate_certificate(session, second.id, now=LATER)
    with db.read_session() as session:
        states = {c.id: c.state for c in list_certificates(session, entry.id)}
        assert states == {first.id: "superseded", second.id: "active"}
        assert [c.id for c in list_certificates(session, entry.id)] == [second.id, first.id]
        assert {c.id for c in published_certificates(session, now=LATER)} == {first.id, second.id}
        # After the second one expires only the first (7 days) is still served.
        after = NOW + dt.timedelta(days=2)
        assert [c.id for c in published_certificates(session, now=after)] == [first.id]
    with db.session() as session:
        set_certificate_state(session, first.id, CertificateState.REVOKED, now=LATER)
    with db.read_session() as session:
        assert [c.id for c in published_certificates(session, now=LATER)] == [second.id]
        revoked = list_certificates(session, entry.id, states=[CertificateState.REVOKED])
        assert [c.id for c in revoked] == [first.id]


def test_only_pending_certificates_can_be_activated(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    old = _active_cert(db, box, entry.id, pki)
    _active_cert(db, box, entry.id, pki)
    with db.session() as session:
        with pytest.raises(Conflict, match="is superseded: it cannot become active"):
            activate_certificate(session, old.id, now=LATER)
        with pytest.raises(InvalidInput, match="use activate_certificate"):
            set_certificate_state(session, old.id, CertificateState.ACTIVE, now=LATER)
        with pytest.raises(NotFound, match="no certificate with id 4242"):
            get_certificate(session, 4242)


def test_refused_certificates_change_nothing(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    key, chain = _issue(pki)
    other_key, _ = _issue(pki)
    before = row_counts(db)
    cases = [
        (
            {"chain_pem": chain, "key_pem": other_key},
            InvalidInput,
            "does not match its private key",
        ),
        ({"chain_pem": b"not pem", "key_pem": key}, InvalidCertificate, "certificate"),
        ({"chain_pem": chain, "key_pem": Secret(b"x")}, InvalidInput, "not a PEM private key"),
    ]
    for arguments, error, message in cases:
        with pytest.raises(error, match=message), db.session() as session:
            add_certificate(session, box, entry.id, now=NOW, activate=True, **arguments)
    with pytest.raises(NotFound), db.session() as session:
        add_certificate(session, box, 999, chain_pem=chain, key_pem=key, now=NOW)
    assert row_counts(db) == before


def test_one_pending_certificate_per_entry(db, box) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    with db.session() as session:
        create_pending_certificate(session, box, entry.id, key_pem=key_pem(), now=NOW)
    with pytest.raises(Conflict, match="already has a pending certificate"), db.session() as s:
        create_pending_certificate(s, box, entry.id, key_pem=key_pem(), now=NOW)


def _raw_insert(db: Database, **values: object) -> None:
    row = {"key_ciphertext": b"x", "created_at": NOW, "state_changed_at": NOW, **values}
    with db.engine.begin() as connection:
        connection.execute(insert(Certificate), [row])


def test_database_allows_one_active_certificate_per_entry(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    _active_cert(db, box, entry.id, pki)
    with pytest.raises(IntegrityError, match=r"(?i)unique constraint"):
        _raw_insert(db, entry_id=entry.id, state="active", serial="ff")
    _raw_insert(db, entry_id=entry.id, state="superseded", serial="fe")


def test_serial_is_unique_per_entry(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    other = add_entry(db, box, "other", "456J")
    _raw_insert(db, entry_id=entry.id, state="expired", serial="abc")
    _raw_insert(db, entry_id=other.id, state="expired", serial="abc")
    with pytest.raises(IntegrityError, match=r"(?i)unique constraint"):
        _raw_insert(db, entry_id=entry.id, state="expired", serial="abc")


def test_state_outside_the_enum_is_refused_by_the_database(db, box) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    statement = text(
        "INSERT INTO certificate (entry_id, state, key_ciphertext, created_at, state_changed_at)"
        " VALUES (:entry, 'bogus', :key, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
    )
    with (
        pytest.raises(IntegrityError, match=r"(?i)check constraint"),
        db.engine.begin() as connection,
    ):
        connection.execute(statement, {"entry": entry.id, "key": b"\x00"})


def _record_activation(db: Database, entry_id: int, certificate_id: int) -> None:
    with db.session() as session:
        record_event(
            session,
            entry_id,
            "activate",
            EventOutcome.SUCCEEDED,
            at=NOW,
            certificate_id=certificate_id,
        )


def test_deleting_an_entry_deletes_its_certificates_and_events(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    cert = _active_cert(db, box, entry.id, pki)
    _record_activation(db, entry.id, cert.id)
    with db.session() as session:
        session.execute(delete(CertificateEntry).where(CertificateEntry.id == entry.id))
    counts = row_counts(db)
    assert (counts["certificate"], counts["lifecycle_event"]) == (0, 0)


def test_deleting_a_certificate_keeps_events_but_unlinks_them(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    cert = _active_cert(db, box, entry.id, pki)
    _record_activation(db, entry.id, cert.id)
    with db.session() as session:
        session.execute(delete(Certificate))
    with db.read_session() as session:
        (event,) = list_events(session, entry.id)
        assert isinstance(event, LifecycleEvent)
        assert event.certificate_id is None
