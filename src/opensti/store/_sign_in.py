"""Failed sign-in counters in the database, so every node of an install sees them.

An attempt is charged before its password is checked (:func:`charge_sign_in_attempt`):
one upsert per key counts it and takes the row lock (PostgreSQL; SQLite's write lock is
taken by ``BEGIN IMMEDIATE``), so parallel attempts queue up and each sees the
deadline its predecessors set; a refused attempt is rolled back by the caller. Rows
are pruned by age and by number, so guessing from many addresses cannot grow the
table without bound.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from opensti.store._models import SignInFailure

__all__ = [
    "SignInKey",
    "charge_sign_in_attempt",
    "clear_sign_in_failures",
    "prune_sign_in_failures",
    "record_sign_in_failure",
    "sign_in_locked_until",
]

#: ``(kind, key)``: ``("user", folded name)`` or ``("address", client address)``.
SignInKey = tuple[str, str]
_KEY_LENGTH = 255


def _key(key: SignInKey) -> SignInKey:
    return key[0], key[1][:_KEY_LENGTH]


def _where(keys: Sequence[SignInKey]) -> Any:
    return tuple_(SignInFailure.kind, SignInFailure.key).in_([_key(k) for k in keys])


def sign_in_locked_until(session: Session, keys: Sequence[SignInKey]) -> dt.datetime | None:
    """The latest lock deadline among ``keys`` (None: none has failed)."""
    if not keys:
        return None
    query = select(func.max(SignInFailure.locked_until)).where(_where(keys))
    latest: dt.datetime | None = session.scalar(query)
    return latest


def _upsert(session: Session) -> Any:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(SignInFailure)


def _count(session: Session, key: SignInKey, now: dt.datetime) -> tuple[int, dt.datetime]:
    """One more failure for ``key`` (row locked until commit): the count and the
    deadline as it was before."""
    kind, value = _key(key)
    statement = _upsert(session).values(kind=kind, key=value, failures=1, locked_until=now)
    statement = statement.on_conflict_do_update(
        index_elements=["kind", "key"], set_={"failures": SignInFailure.failures + 1}
    ).returning(SignInFailure.failures, SignInFailure.locked_until)
    failures, until = session.execute(statement).one()
    return int(failures), until


def _lock(session: Session, key: SignInKey, until: dt.datetime) -> None:
    kind, value = _key(key)
    session.execute(
        update(SignInFailure)
        .where(SignInFailure.kind == kind, SignInFailure.key == value)
        .values(locked_until=until)
    )


def record_sign_in_failure(
    session: Session,
    key: SignInKey,
    now: dt.datetime,
    delay: Callable[[int], dt.timedelta],
) -> int:
    """Count one more failure for ``key``, lock it for ``delay(failures)``; the count."""
    failures, _ = _count(session, key, now)
    _lock(session, key, now + delay(failures))
    return failures


def charge_sign_in_attempt(
    session: Session,
    keys: Sequence[SignInKey],
    clock: Callable[[], dt.datetime],
    delay: Callable[[int], dt.timedelta],
) -> tuple[dt.datetime, dt.datetime | None]:
    """Count an attempt as a failure for every key before its password is checked.

    Returns the time read once the rows are locked, and None when the attempt may go
    on (each key is then locked for ``delay(failures)``), else the deadline that
    refuses it: the caller must roll the transaction back, so a refused attempt
    changes nothing. A success clears the keys. The clock is read after the locks are
    held, so an attempt that waited for another never compares its deadline with an
    earlier time than the one that deadline was set from.
    """
    before = clock()
    counted = [(key, *_count(session, key, before)) for key in keys]
    now = max(clock(), before)
    refused = [until for _, _, until in counted if until > now]
    if refused:
        return now, max(refused)
    for key, failures, _ in counted:
        _lock(session, key, now + delay(failures))
    return now, None


def clear_sign_in_failures(session: Session, keys: Sequence[SignInKey]) -> None:
    if keys:
        session.execute(delete(SignInFailure).where(_where(keys)))


def prune_sign_in_failures(session: Session, before: dt.datetime, keep: int) -> None:
    """Forget counters whose deadline is before ``before``, and all but the ``keep``
    latest deadlines."""
    newest = (
        select(SignInFailure.locked_until)
        .order_by(SignInFailure.locked_until.desc())
        .offset(keep)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(
        delete(SignInFailure).where(
            or_(SignInFailure.locked_until < before, SignInFailure.locked_until <= newest)
        )
    )
