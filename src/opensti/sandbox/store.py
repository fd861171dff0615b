"""The sandbox's own SQLite schema: STI-PA providers and ACME state survive a restart.

This is deliberately separate from opensti's main store (and its migrations): the
sandbox plays other parties, and its tables are created on start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, LargeBinary, String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

__all__ = [
    "AccessToken",
    "Account",
    "ApiUser",
    "Authorization",
    "Base",
    "Certificate",
    "Challenge",
    "EABKey",
    "Order",
    "PKIEntry",
    "Provider",
    "SPCRecord",
    "SPCToken",
    "SandboxStore",
    "hash_password",
    "password_matches",
    "utcnow",
]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return secrets.token_urlsafe(12)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """SQLite drops tzinfo; store UTC and hand back aware datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.replace(tzinfo=dt.UTC) if value else None


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


class PKIEntry(Base):
    """A certificate and key of the sandbox itself (STI-PA, CA root, intermediate)."""

    __tablename__ = "sandbox_pki"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    cert_pem: Mapped[bytes] = mapped_column(LargeBinary)
    key_pem: Mapped[bytes] = mapped_column(LargeBinary)


class Provider(Base):
    __tablename__ = "stipa_provider"
    account_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")


class SPCRecord(Base):
    __tablename__ = "stipa_spc"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("stipa_provider.account_id"))
    revoked_at: Mapped[dt.datetime | None]


class ApiUser(Base):
    __tablename__ = "stipa_user"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("stipa_provider.account_id"))
    password_hash: Mapped[str] = mapped_column(String(300))


class AccessToken(Base):
    __tablename__ = "stipa_access_token"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("stipa_user.user_id"))
    expires: Mapped[dt.datetime]


class SPCToken(Base):
    __tablename__ = "stipa_spc_token"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(16))
    spc: Mapped[str] = mapped_column(String(16))
    expires: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class EABKey(Base):
    __tablename__ = "acme_eab"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    hmac_key: Mapped[bytes] = mapped_column(LargeBinary)
    account_id: Mapped[str | None]
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Account(Base):
    __tablename__ = "acme_account"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    jwk: Mapped[dict[str, Any]]
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="valid")
    contact: Mapped[dict[str, Any]] = mapped_column(default=dict)
    eab_kid: Mapped[str | None]
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Order(Base):
    __tablename__ = "acme_order"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_account.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    identifier: Mapped[str] = mapped_column(String(2000))
    tnauthlist_der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime | None]
    not_after: Mapped[dt.datetime | None]
    expires: Mapped[dt.datetime]
    certificate_id: Mapped[str | None]
    error: Mapped[dict[str, Any] | None]
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Authorization(Base):
    __tablename__ = "acme_authz"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("acme_order.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires: Mapped[dt.datetime]


class Challenge(Base):
    __tablename__ = "acme_challenge"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    authz_id: Mapped[str] = mapped_column(ForeignKey("acme_authz.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    token: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_urlsafe(16))
    validated: Mapped[dt.datetime | None]
    error: Mapped[dict[str, Any] | None]


class Certificate(Base):
    __tablename__ = "acme_certificate"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_account.id"))
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    spc: Mapped[str] = mapped_column(String(16))
    chain_pem: Mapped[bytes] = mapped_column(LargeBinary)
    not_after: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    revocation_reason: Mapped[int | None]


_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    return hmac.compare_digest(candidate.hex(), digest)


class SandboxStore:
    """The SQLite database in the data dir; one short session per request."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        self.engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def pki_entries(self) -> dict[str, PKIEntry]:
        with self.session() as session:
            return {e.name: e for e in session.scalars(select(PKIEntry))}


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
