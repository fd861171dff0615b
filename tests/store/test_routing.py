"""Routing rules in the store: one default signer (moved, never doubled), one entry per
prefix, the first active entry becomes the default, removal keeps published chains,
and migration 0006 gives an old install the default it never had."""

from __future__ import annotations

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from opensti.core.errors import Conflict, InvalidInput
from opensti.store import (
    CertificateEntry,
    RoutingChange,
    add_certificate,
    change_routing,
    default_signer,
    delete_entry,
    downgrade,
    get_entry,
    published_certificates,
    upgrade,
)

from .conftest import NOW, add_entry, row_counts
from .test_certificates import _active_cert, _issue

pytestmark = pytest.mark.db_dialect


def _change(db, name: str, **change: object) -> list[str]:  # type: ignore[no-untyped-def]
    with db.session() as session:
        return change_routing(session, get_entry(session, name), RoutingChange(**change))  # type: ignore[arg-type]


def test_the_default_moves_and_prefixes_belong_to_one_entry(db, box) -> None:  # type: ignore[no-untyped-def]
    add_entry(db, box, "east")
    add_entry(db, box, "west", "456J")
    assert _change(db, "east", default_signer=True, add_prefixes=("+1215", "1215")) == [
        "entry 'east' is now the default signer: it signs every call that no entry's prefix claims"
    ]
    notes = _change(db, "west", default_signer=True, add_prefixes=("12155",))
    assert "entry 'east' is no longer the default signer" in notes
    with db.read_session() as session:
        assert default_signer(session).name == "west"  # type: ignore[union-attr]
        assert get_entry(session, "east").orig_prefixes == ["1215"]
    before = row_counts(db), _snapshot(db)
    with pytest.raises(Conflict, match="prefix 1215 already belongs to entry 'east'"):
        _change(db, "west", add_prefixes=("1301", "1215"), attest="A")
    with pytest.raises(InvalidInput, match="prefix '1x' is not valid"):
        _change(db, "west", add_prefixes=("1x",))
    with pytest.raises(InvalidInput, match="1 to 15 digits"):
        _change(db, "west", add_prefixes=("1" * 16,))
    with pytest.raises(Conflict, match="default signer and cannot be disabled"):
        _change(db, "west", enabled=False)
    with db.session() as session, pytest.raises(Conflict, match="cannot be removed"):
        delete_entry(session, get_entry(session, "west"), now=NOW)
    assert (row_counts(db), _snapshot(db)) == before


def _snapshot(db) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    with db.read_session() as session:
        rows = session.query(CertificateEntry).order_by(CertificateEntry.name).all()
        return [
            (e.name, e.is_default_signer, tuple(e.orig_prefixes), e.default_attest, e.enabled)
            for e in rows
        ]


def test_the_database_refuses_a_second_default_signer(db, box) -> None:  # type: ignore[no-untyped-def]
    add_entry(db, box, "east")
    add_entry(db, box, "west", "456J")
    with db.session() as session, pytest.raises(IntegrityError):
        session.execute(update(CertificateEntry).values(is_default_signer=True))


def test_the_first_entry_to_become_active_becomes_the_default(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    east = add_entry(db, box, "east")
    west = add_entry(db, box, "west", "456J")
    _active_cert(db, box, west.id, pki)
    _active_cert(db, box, east.id, pki)
    with db.read_session() as session:
        assert default_signer(session).name == "west"  # type: ignore[union-attr]
    # Unset on purpose, it stays unset when another certificate becomes active.
    _change(db, "west", default_signer=False)
    _active_cert(db, box, east.id, pki)
    with db.read_session() as session:
        assert default_signer(session) is None


def test_removing_an_entry_keeps_its_published_chains(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box, "east")
    first = _active_cert(db, box, entry.id, pki)
    key, chain = _issue(pki)
    with db.session() as session:
        unpublished = add_certificate(session, box, entry.id, chain_pem=chain, key_pem=key, now=NOW)
        session.execute(text("UPDATE certificate SET state = 'failed' WHERE id = :id"),
                        {"id": unpublished.id})  # fmt: skip
    with db.session() as session:
        assert delete_entry(session, get_entry(session, "east"), now=NOW) == 1
    with db.read_session() as session:
        [kept] = published_certificates(session, now=NOW)
        assert (kept.id, kept.entry_id, kept.state) == (first.id, None, "superseded")
        assert session.query(CertificateEntry).count() == 0


def test_migration_0006_makes_the_oldest_active_entry_the_default(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    east = add_entry(db, box, "east")
    west = add_entry(db, box, "west", "456J")
    _active_cert(db, box, west.id, pki)
    _active_cert(db, box, east.id, pki)
    with db.session() as session:
        session.execute(update(CertificateEntry).values(is_default_signer=False))
    downgrade(db, "0005")
    upgrade(db)
    with db.read_session() as session:
        # west is the only active one at first... both are active now: the oldest wins.
        assert default_signer(session).name == "east"  # type: ignore[union-attr]
