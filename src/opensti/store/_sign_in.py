"""Failed sign-in counters in the database, so every node of an install sees them.

A failure is one upsert (the counter goes up atomically, whichever node counts) and
one update of the lock deadline in the same transaction. Rows are pruned by age and
by number, so guessing from many addresses cannot grow the table without bound.
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


def record_sign_in_failure(
    session: Session,
    key: SignInKey,
    now: dt.datetime,
    delay: Callable[[int], dt.timedelta],
) -> int:
    """Count one more failure for ``key``, lock it for ``delay(failures)``; the count."""
    kind, value = _key(key)
    statement = _upsert(session).values(kind=kind, key=value, failures=1, locked_until=now)
    statement = statement.on_conflict_do_update(
        index_elements=["kind", "key"], set_={"failures": SignInFailure.failures + 1}
    ).returning(SignInFailure.failures)
    failures: int = session.execute(statement).scalar_one()
    session.execute(
        update(SignInFailure)
        .where(SignInFailure.kind == kind, SignInFailure.key == value)
        .values(locked_until=now + delay(failures))
    )
    return failures


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
