"""Failed sign-in counters: shared by every connection to the store (every node),
counted atomically, cleared, and pruned by age and by number."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from opensti.store import (
    Database,
    SignInFailure,
    clear_sign_in_failures,
    open_database,
    prune_sign_in_failures,
    record_sign_in_failure,
    sign_in_locked_until,
)

from .conftest import NOW

pytestmark = pytest.mark.db_dialect


def _delay(failures: int) -> dt.timedelta:
    return dt.timedelta(seconds=0 if failures < 3 else 10 * failures)


@pytest.fixture
def other_node(db: Database, database_url: str) -> Iterator[Database]:
    """A second connection pool on the same database, as another node has."""
    database = open_database(database_url)
    yield database
    database.dispose()


def _fail(database: Database, key: tuple[str, str], now: dt.datetime = NOW) -> int:
    with database.session() as session:
        return record_sign_in_failure(session, key, now, _delay)


def _locked_until(database: Database, *keys: tuple[str, str]) -> dt.datetime | None:
    with database.read_session() as session:
        return sign_in_locked_until(session, keys)


def test_failures_count_across_nodes_and_lock(db: Database, other_node: Database) -> None:
    alice = ("user", "alice")
    assert _locked_until(db, alice) is None
    assert [_fail(db, alice), _fail(other_node, alice)] == [1, 2]
    assert _locked_until(other_node, alice) == NOW
    assert _fail(other_node, alice) == 3
    assert _locked_until(db, alice) == NOW + dt.timedelta(seconds=30)
    address = ("address", "192.0.2.1")
    _fail(db, address, NOW + dt.timedelta(seconds=50))
    assert _locked_until(db, alice, address) == NOW + dt.timedelta(seconds=50)
    with other_node.session() as session:
        clear_sign_in_failures(session, [alice])
    assert _locked_until(db, alice) is None
    assert _locked_until(db, address) is not None
    assert _fail(db, alice) == 1


def test_a_long_name_is_counted(db: Database) -> None:
    name = ("user", "x" * 400)
    assert [_fail(db, name), _fail(db, name)] == [1, 2]
    assert _locked_until(db, name) == NOW


def _stored(database: Database) -> set[str]:
    with database.read_session() as session:
        return set(session.scalars(select(SignInFailure.key)))


def test_prune_forgets_old_counters_and_keeps_at_most_the_newest(db: Database) -> None:
    for minutes in range(6):
        _fail(db, ("address", f"192.0.2.{minutes}"), NOW + dt.timedelta(minutes=minutes))
    with db.session() as session:
        prune_sign_in_failures(session, NOW + dt.timedelta(minutes=1), keep=10)
    assert _stored(db) == {f"192.0.2.{n}" for n in range(1, 6)}
    with db.session() as session:
        prune_sign_in_failures(session, NOW, keep=3)
    assert _stored(db) == {"192.0.2.3", "192.0.2.4", "192.0.2.5"}
    with db.session() as session:
        prune_sign_in_failures(session, NOW, keep=3)
        assert session.scalar(select(func.count()).select_from(SignInFailure)) == 3
