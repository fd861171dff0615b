"""Lookups and writes shared by the repository modules: one clear error per failure."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opensti.core.errors import Conflict, NotFound
from opensti.store._models import Base

_M = TypeVar("_M", bound=Base)


def get_by_id(session: Session, model: type[_M], ident: int, what: str) -> _M:
    found = session.get(model, ident)
    if found is None:
        raise NotFound(f"no {what} with id {ident}", value=ident)
    return found


def get_by(session: Session, model: type[_M], what: str, **filters: Any) -> _M:
    found = session.scalars(select(model).filter_by(**filters)).one_or_none()
    if found is None:
        raise NotFound(f"no {what} {_describe(filters)}", value=next(iter(filters.values())))
    return found


def ensure_absent(session: Session, model: type[Base], what: str, **filters: Any) -> None:
    if session.scalars(select(model).filter_by(**filters).limit(1)).first() is not None:
        raise Conflict(f"{what} {_describe(filters)} already exists")


def add(session: Session, row: _M, what: str) -> _M:
    """Insert now, so a constraint a concurrent writer won the race for is a Conflict."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"cannot store the {what}: {exc.orig}") from None
    return row


def _describe(filters: dict[str, Any]) -> str:
    return " and ".join(f"with {key.replace('_', ' ')} {value!r}" for key, value in filters.items())
