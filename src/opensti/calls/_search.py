"""Searching the call log by the start of a number and by part of a Call-ID, fast at a
million calls on SQLite and PostgreSQL with plain B-tree indexes.

A number prefix is a range on the ``from_tn`` and ``to_tn`` indexes (``>= "1415" AND
< "1416"``) rather than ``LIKE '1415%'``: PostgreSQL only uses an index for a prefix
``LIKE`` with ``text_pattern_ops`` (or the C collation), while a range works on any
B-tree on both databases. Numbers are digits, which every collation orders as bytes.

Which plan is cheap depends on how many calls match: a rare prefix is best looked up in
the two number indexes and the few rows sorted; a common one (``1``) is best found by
walking the log newest first until a page is full, since sorting a million matches to
show fifty takes seconds. PostgreSQL's planner chooses from its statistics; SQLite's has
none (no ANALYZE), so there we count the matches first, up to a cap, through the
indexes alone, and write the condition so that only the chosen plan can serve it.

A Call-ID is searched whole through its index in the entire log; if no call has it, as
a part of the value (``instr``/``strpos``, case-sensitive as RFC 3261 compares
Call-IDs) only among the newest :data:`CALL_ID_WINDOW` calls of the chosen dates: no
index serves a match inside a value, so that part is a bounded scan of the time index.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from opensti.core.errors import InvalidInput, InvalidTN
from opensti.core.tn import MAX_TN_DIGITS, canonicalize_tn
from opensti.store import SipMessage

__all__ = [
    "BROAD_PREFIX",
    "CALL_ID_WINDOW",
    "CallIdSearch",
    "CallIdWindow",
    "call_id_search",
    "number_condition",
    "tn_prefixes",
]

#: A number prefix matching at least this many calls (in either column) is searched by
#: walking the log newest first; below it, through the number indexes and a sort.
BROAD_PREFIX = 5_000
#: A part of a Call-ID is looked for among this many newest calls (of the chosen dates).
CALL_ID_WINDOW = 50_000

_SEPARATORS = str.maketrans("", "", "-.() \t")


def tn_prefixes(value: str) -> tuple[str, ...]:
    """The digit prefixes a typed number stands for: ``+1 415`` is ``1415``; a whole
    ten-digit NANP number also as the log stores it, with the country code ``1``."""
    digits = value.strip().removeprefix("+").translate(_SEPARATORS)
    if not digits.isascii() or not digits.isdigit() or len(digits) > MAX_TN_DIGITS:
        raise InvalidInput(
            f"not a number or the start of one (digits, optionally after +): {value[:40]!r}",
            value=value[:40],
        )
    try:
        canonical = canonicalize_tn(value.strip())
    except InvalidTN:
        canonical = digits
    return (digits,) if canonical == digits else (digits, canonical)


def _next_prefix(prefix: str) -> str | None:
    """The first digit string after every string starting with ``prefix`` (None: no
    bound, for ``99``), kept to digits so the range holds in any collation."""
    stripped = prefix.rstrip("9")
    if not stripped:
        return None
    return stripped[:-1] + str(int(stripped[-1]) + 1)


def _range(column: InstrumentedAttribute[str | None], prefix: str) -> ColumnElement[bool]:
    upper = _next_prefix(prefix)
    if upper is None:
        # Both ends bounded even for 99..., or SQLite reads the whole log instead.
        return and_(column >= prefix, column <= "9" * MAX_TN_DIGITS)
    return and_(column >= prefix, column < upper)


def _matches(session: Session, prefixes: tuple[str, ...]) -> int:
    """How many calls match, counted through the number indexes up to the cap per column."""
    counts = [
        select(func.count())
        .select_from(select(column).where(_range(column, prefix)).limit(BROAD_PREFIX).subquery())
        .scalar_subquery()
        for prefix in prefixes
        for column in (SipMessage.from_tn, SipMessage.to_tn)
    ]
    return int(session.execute(select(functools.reduce(operator.add, counts))).scalar_one())


def number_condition(session: Session, prefixes: tuple[str, ...]) -> ColumnElement[bool]:
    """Calls whose calling or called number starts with one of ``prefixes``."""
    # PostgreSQL's statistics tell its planner how many calls a range matches, so it
    # picks the number indexes or the time index itself; SQLite's planner is told here.
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql or _matches(session, prefixes) < BROAD_PREFIX:
        return or_(
            *(
                _range(column, prefix)
                for prefix in prefixes
                for column in (SipMessage.from_tn, SipMessage.to_tn)
            )
        )
    # Many matches: the same test as an expression no index serves, so both databases
    # walk the time index newest first and stop when the page is full.
    return or_(
        *(
            func.substr(column, 1, len(prefix)) == prefix
            for prefix in prefixes
            for column in (SipMessage.from_tn, SipMessage.to_tn)
        )
    )


@dataclass(frozen=True, slots=True)
class CallIdWindow:
    """A part of a Call-ID was looked for only among the newest ``calls``, from ``start``."""

    start: dt.datetime
    calls: int


@dataclass(frozen=True, slots=True)
class CallIdSearch:
    condition: ColumnElement[bool]
    #: None: the whole log was searched.
    window: CallIdWindow | None


def _contains(session: Session, text: str) -> ColumnElement[bool]:
    # LIKE would ignore case on SQLite only and needs its wildcards escaped.
    if session.get_bind().dialect.name == "postgresql":
        return func.strpos(SipMessage.call_id, text) > 0
    return func.instr(SipMessage.call_id, text) > 0


def call_id_search(
    session: Session, text: str, dates: tuple[ColumnElement[bool], ...]
) -> CallIdSearch:
    """The calls of a whole Call-ID anywhere in the log; failing that, the calls whose
    Call-ID contains ``text`` among the newest :data:`CALL_ID_WINDOW` of ``dates``.

    Two plans, not one ``OR``: with the two in one condition both databases give up the
    indexes and read the whole log.
    """
    exact = SipMessage.call_id == text
    size = CALL_ID_WINDOW
    if session.scalars(select(SipMessage.id).where(exact, *dates).limit(1)).first() is not None:
        return CallIdSearch(exact, None)
    oldest = session.execute(
        select(SipMessage.at, SipMessage.id)
        .where(*dates)
        .order_by(SipMessage.at.desc(), SipMessage.id.desc())
        .offset(size - 1)
        .limit(1)
    ).first()
    if oldest is None:
        return CallIdSearch(_contains(session, text), None)
    window = tuple_(SipMessage.at, SipMessage.id) >= tuple_(*oldest)
    return CallIdSearch(and_(window, _contains(session, text)), CallIdWindow(oldest.at, size))
