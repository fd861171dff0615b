"""Certificate entries and their leases."""

from __future__ import annotations

import datetime as dt

import pytest

from opensti.core.errors import Conflict, InvalidInput, NotFound
from opensti.store import (
    BROAD_SPC_PATTERN,
    Database,
    Secret,
    SecretBox,
    acquire_lease,
    create_entry,
    get_entry,
    get_entry_by_id,
    list_entries,
    release_lease,
    renew_lease,
    set_stipa_account,
)

from .conftest import NOW, add_entry, race_for_lease, row_counts

pytestmark = pytest.mark.db_dialect

TTL = dt.timedelta(minutes=5)


def test_create_and_list_entries(db, box) -> None:  # type: ignore[no-untyped-def]
    add_entry(db, box, "b-entry", "123h")
    with db.session() as session:
        set_stipa_account(session, box, account_id="123H", user_id="u", password=Secret(b"p"))
        create_entry(
            session,
            name="a-entry",
            spc="456J",
            acme_account="acct",
            stipa_account_id="123H",
            crl_url="https://sti-pa.example.test/crl",
            renew_before=dt.timedelta(days=2),
            orig_prefixes=["1215", "1301"],
            default_attest="A",
            enabled=False,
        )
    with db.read_session() as session:
        assert [e.name for e in list_entries(session)] == ["a-entry", "b-entry"]
        assert [e.name for e in list_entries(session, enabled_only=True)] == ["b-entry"]
        entry = get_entry(session, "a-entry")
        assert entry.spc == "456J"
        assert entry.stipa_account is not None
        assert entry.stipa_account.account_id == "123H"
        assert entry.acme_account.name == "acct"
        assert (entry.renew_before, entry.orig_prefixes) == (172800, ["1215", "1301"])
        assert get_entry(session, "b-entry").spc == "123H"  # upper-cased
        assert get_entry_by_id(session, entry.id).name == "a-entry"
        with pytest.raises(NotFound, match="no certificate entry with name 'zzz'"):
            get_entry(session, "zzz")
        with pytest.raises(NotFound, match="no certificate entry with id 999"):
            get_entry_by_id(session, 999)


def test_several_entries_share_one_stipa_account(db, box) -> None:  # type: ignore[no-untyped-def]
    add_entry(db, box, "first", "123H")
    with db.session() as session:
        set_stipa_account(session, box, account_id="123H", user_id="u", password=Secret(b"p"))
        for name, spc in (("one", "111A"), ("two", "222B")):
            create_entry(session, name=name, spc=spc, acme_account="acct", stipa_account_id="123H")
    with db.read_session() as session:
        ids = {get_entry(session, n).stipa_account_id for n in ("one", "two")}
        assert len(ids) == 1
        assert None not in ids


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"spc": "12"}, InvalidInput, "SPC '12' is not valid: expected an OCN"),
        ({"spc": "12345"}, InvalidInput, "expected an OCN"),
        ({"spc": "12_4"}, InvalidInput, "expected an OCN"),
        ({"name": "has space"}, InvalidInput, "certificate entry name 'has space' is not valid"),
        ({"acme_account": "missing"}, NotFound, "no ACME account with name 'missing'"),
        ({"stipa_account_id": "999Z"}, NotFound, "no STI-PA account"),
        ({"crl_url": "not a url"}, InvalidInput, "CRL URL"),
        ({"renew_before": dt.timedelta(0)}, InvalidInput, "renew-before must be a positive"),
        ({"orig_prefixes": ["12a"]}, InvalidInput, "prefix .12a. is not valid"),
        ({"default_attest": "D"}, InvalidInput, "attestation 'D' is not A, B or C"),
        ({"name": "main"}, Conflict, "certificate entry with name 'main' already exists"),
    ],
)
def test_bad_entry_input_is_refused_and_nothing_stored(db, box, options, error, message) -> None:  # type: ignore[no-untyped-def]
    add_entry(db, box, "main")
    before = row_counts(db)
    arguments = {"name": "new", "spc": "456J", "acme_account": "acct", **options}
    with pytest.raises(error, match=message), db.session() as session:
        create_entry(session, **arguments)
    assert row_counts(db) == before


def test_a_broader_spc_pattern_can_be_configured(db, box) -> None:  # type: ignore[no-untyped-def]
    add_entry(db, box, "main")
    with db.session() as session:
        entry = create_entry(
            session, name="ca", spc="ab12cd", acme_account="acct", spc_pattern=BROAD_SPC_PATTERN
        )
        assert entry.spc == "AB12CD"
        with pytest.raises(InvalidInput, match=r"expected \[0-9A-Z\]\{1,8\}"):
            create_entry(
                session,
                name="x",
                spc="123456789",
                acme_account="acct",
                spc_pattern=BROAD_SPC_PATTERN,
            )


# Leases -------------------------------------------------------------------------------


def _acquire(db: Database, entry_id: int, holder: str, now: dt.datetime = NOW):  # type: ignore[no-untyped-def]
    with db.session() as session:
        return acquire_lease(session, entry_id, holder, now=now, ttl=TTL)


def test_one_holder_at_a_time_until_expiry_then_takeover(db, box) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    first = _acquire(db, entry.id, "worker-a")
    assert first is not None
    assert (first.holder, first.expires_at, first.epoch) == ("worker-a", NOW + TTL, 1)
    # Another worker is refused while the lease runs, up to its last instant.
    assert _acquire(db, entry.id, "worker-b") is None
    assert _acquire(db, entry.id, "worker-b", NOW + TTL - dt.timedelta(microseconds=1)) is None
    # The holder may take it again without changing the epoch.
    again = _acquire(db, entry.id, "worker-a", NOW + dt.timedelta(minutes=1))
    assert again is not None
    assert again.epoch == 1
    # Once expired, another worker takes over, with a new epoch.
    later = NOW + dt.timedelta(minutes=1) + TTL
    taken = _acquire(db, entry.id, "worker-b", later)
    assert taken is not None
    assert (taken.holder, taken.epoch) == ("worker-b", 2)
    # The old holder can neither renew nor release what it lost.
    with db.session() as session:
        assert renew_lease(session, again, now=later, ttl=TTL) is None
        assert release_lease(session, again) is False
        assert get_entry_by_id(session, entry.id).lease_holder == "worker-b"


def test_renew_extends_and_release_frees(db, box) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    lease = _acquire(db, entry.id, "worker-a")
    assert lease is not None
    with db.session() as session:
        renewed = renew_lease(session, lease, now=NOW + dt.timedelta(minutes=4), ttl=TTL)
    assert renewed is not None
    assert renewed.expires_at == NOW + dt.timedelta(minutes=9)
    assert _acquire(db, entry.id, "worker-b", NOW + dt.timedelta(minutes=6)) is None
    with db.session() as session:
        assert release_lease(session, renewed) is True
    assert _acquire(db, entry.id, "worker-b", NOW + dt.timedelta(minutes=6)) is not None


def test_an_expired_lease_cannot_be_renewed(db, box) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    lease = _acquire(db, entry.id, "worker-a")
    assert lease is not None
    with db.session() as session:
        assert renew_lease(session, lease, now=NOW + TTL, ttl=TTL) is None


def test_lease_arguments_and_missing_entry(db, box) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(db, box)
    with db.session() as session:
        with pytest.raises(NotFound):
            acquire_lease(session, 12345, "w", now=NOW, ttl=TTL)
        with pytest.raises(InvalidInput, match="TTL must be positive"):
            acquire_lease(session, entry.id, "w", now=NOW, ttl=dt.timedelta(0))
        with pytest.raises(InvalidInput, match="lease holder"):
            acquire_lease(session, entry.id, "", now=NOW, ttl=TTL)


def test_concurrent_workers_on_separate_connections_get_one_lease(
    db: Database, box: SecretBox, database_url: str
) -> None:
    """Eight workers, each with its own engine on the same database, race for one entry."""
    entry = add_entry(db, box)
    winners = race_for_lease(database_url, entry.id, 8)
    assert len(winners) == 1
    with db.read_session() as session:
        assert get_entry_by_id(session, entry.id).lease_holder == winners[0]
