"""Server-side web sessions: the cookie holds a random id, the store its SHA-256.

A session ends when its user signs out, when the user's password changes, when an
admin ends the user's sessions, or when it expires; whichever node answers the next
request sees it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from opensti.store._models import User, WebSession

__all__ = [
    "create_web_session",
    "end_user_sessions",
    "end_web_session",
    "web_session_user",
]

_MAX_ID = 128


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def create_web_session(
    session: Session, user_id: int, *, now: dt.datetime, lifetime: dt.timedelta
) -> str:
    """A new session for ``user_id``; its id (for the cookie) is returned, never stored.
    Expired sessions are pruned on the way."""
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    session_id = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id_hash=_hash(session_id), user_id=user_id, created_at=now, expires_at=now + lifetime
        )
    )
    session.flush()
    return session_id


def web_session_user(session: Session, session_id: str, *, now: dt.datetime) -> User | None:
    """The enabled user of a live session, or None (unknown, ended or expired)."""
    if not session_id or len(session_id) > _MAX_ID:
        return None
    user = session.scalars(
        select(User)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.id_hash == _hash(session_id), WebSession.expires_at > now)
    ).one_or_none()
    return user if user is not None and user.enabled else None


def end_web_session(session: Session, session_id: str) -> None:
    if session_id and len(session_id) <= _MAX_ID:
        session.execute(delete(WebSession).where(WebSession.id_hash == _hash(session_id)))


def end_user_sessions(session: Session, user_id: int) -> int:
    """End every session of a user (password changed, or an admin said so); how many."""
    result = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)
