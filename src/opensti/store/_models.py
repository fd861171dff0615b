"""The tables. Columns ending in ``_ciphertext`` hold :class:`SecretBox` output, never plaintext.

Conventions: integer ids, aware UTC datetimes (:class:`UTCDateTime`), enums stored as
short strings with a CHECK constraint, names unique, and every constraint named (the
naming convention below) so migrations can address them on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from opensti.store._types import UTCDateTime, utcnow

__all__ = [
    "AccountOrigin",
    "AcmeAccount",
    "ApiToken",
    "Base",
    "CAKind",
    "Certificate",
    "CertificateAuthority",
    "CertificateEntry",
    "CertificateState",
    "DeploymentTask",
    "DeploymentTaskKind",
    "EventOutcome",
    "LifecycleEvent",
    "Role",
    "Setting",
    "SipAction",
    "SipDirection",
    "SipMessage",
    "StiPaAccount",
    "StiPaEnvironment",
    "User",
    "WebSession",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 64
URL_LENGTH = 2048
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class CAKind(StrEnum):
    KNOWN = "known"
    CUSTOM = "custom"


class AccountOrigin(StrEnum):
    CREATED = "created"
    IMPORTED = "imported"


class StiPaEnvironment(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"


class CertificateState(StrEnum):
    """``pending``: key made and order placed, not issued yet (resumable after a crash).
    ``failed``: issued but refused by our checks, never activated."""

    PENDING = "pending"
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    REVOKED = "revoked"
    EXPIRED = "expired"
    FAILED = "failed"


class DeploymentTaskKind(StrEnum):
    DIRECTORY = "directory"
    SCRIPT = "script"
    WEBHOOK = "webhook"


class EventOutcome(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class SipDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class SipAction(StrEnum):
    SIGNED = "signed"
    VERIFIED = "verified"
    #: A call the STI-AS could not sign (the reason says why); it went on unsigned.
    NOT_SIGNED = "not-signed"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    READ_ONLY = "read-only"
    #: API tokens only: may sign and verify on the STIR API (``/stir/v1``), nothing else.
    SIGNER = "signer"


def _enum(cls: type[StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012  (SQLAlchemy reads it as a class attribute)
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }

    def __repr__(self) -> str:
        # Only identifying columns: a generic repr could print a ciphertext or a hash.
        shown = ("id", "name", "key", "spc", "account_id", "state", "serial")
        fields = ", ".join(
            f"{column}={getattr(self, column)!r}" for column in shown if hasattr(self, column)
        )
        return f"{type(self).__name__}({fields})"


class _Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CertificateAuthority(_Timestamps, Base):
    """An STI-CA's ACME server and the quirks of its profile."""

    __tablename__ = "certificate_authority"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    kind: Mapped[CAKind] = mapped_column(_enum(CAKind, "kind"), default=CAKind.CUSTOM)
    directory_url: Mapped[str] = mapped_column(String(URL_LENGTH))
    staging_directory_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    needs_eab: Mapped[bool] = mapped_column(Boolean, default=False)
    terms_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    #: Profile settings (see shared spec acquisition.md, "Interop warning").
    identifier_encoding: Mapped[str] = mapped_column(String(16), default="base64")
    tkauth_field: Mapped[str] = mapped_column(String(16), default="atc")
    fingerprint_algorithm: Mapped[str] = mapped_column(String(16), default="jwk_thumbprint")
    cert_key_is_account_key: Mapped[bool] = mapped_column(Boolean, default=False)
    honours_validity: Mapped[bool] = mapped_column(Boolean, default=False)

    accounts: Mapped[list[AcmeAccount]] = relationship(back_populates="ca")


class AcmeAccount(_Timestamps, Base):
    __tablename__ = "acme_account"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    ca_id: Mapped[int] = mapped_column(
        ForeignKey("certificate_authority.id", ondelete="RESTRICT"), index=True
    )
    staging: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(254))
    account_url: Mapped[str | None] = mapped_column(String(URL_LENGTH), unique=True)
    key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    #: RFC 7638 JWK thumbprint (SHA-256, base64url) of the account key: public.
    thumbprint: Mapped[str] = mapped_column(String(64))
    eab_kid: Mapped[str | None] = mapped_column(String(256))
    eab_hmac_key_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    tos_agreed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The ACME account status as the CA last reported it (RFC 8555 7.1.2).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    origin: Mapped[AccountOrigin] = mapped_column(
        _enum(AccountOrigin, "origin"), default=AccountOrigin.CREATED
    )

    ca: Mapped[CertificateAuthority] = relationship(back_populates="accounts")


class StiPaAccount(_Timestamps, Base):
    """API credentials at the STI-PA; iconectiv names the account by the primary OCN."""

    __tablename__ = "stipa_account"
    __table_args__ = (UniqueConstraint("account_id", "environment"),)

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(16))
    environment: Mapped[StiPaEnvironment] = mapped_column(
        _enum(StiPaEnvironment, "environment"), default=StiPaEnvironment.PRODUCTION
    )
    user_id: Mapped[str] = mapped_column(String(255))
    password_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    #: None: the environment's default base URL.
    base_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))


class CertificateEntry(_Timestamps, Base):
    """One SPC to keep a valid certificate for: the unit of the reconcile loop."""

    __tablename__ = "certificate_entry"
    __table_args__ = (
        # At most one default signer, enforced by the DB as well as by the store.
        Index(
            "uq_certificate_entry_one_default",
            "is_default_signer",
            unique=True,
            sqlite_where=text("is_default_signer"),
            postgresql_where=text("is_default_signer"),
        ),
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    spc: Mapped[str] = mapped_column(String(16), index=True)
    acme_account_id: Mapped[int] = mapped_column(
        ForeignKey("acme_account.id", ondelete="RESTRICT"), index=True
    )
    stipa_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("stipa_account.id", ondelete="RESTRICT"), index=True
    )
    crl_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    #: Seconds of remaining life that trigger a renewal; None: a third of the lifetime.
    renew_before: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Signing scope: the entry for calls whose orig TN starts with one of these.
    orig_prefixes: Mapped[list[str]] = mapped_column(default=list)
    is_default_signer: Mapped[bool] = mapped_column(Boolean, default=False)
    default_attest: Mapped[str | None] = mapped_column(String(1))
    #: Rich Call Data (RFC 9795) asserted in every call the entry signs: the display
    #: name, the logo URL, and the logo's rcdi digest (fetched at set time and on
    #: refresh, never per call).
    rcd_name: Mapped[str | None] = mapped_column(String(256))
    rcd_icon_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    rcd_icon_digest: Mapped[str | None] = mapped_column(String(128))
    #: An SPC token the operator brought (token file or --token), sealed like any secret.
    spc_token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Reconcile state: backoff and failure episodes.
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    failing_since: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    # The lease: one worker at a time; lease_epoch is a fencing token that grows with
    # every change of holder, so a worker that lost its lease can tell.
    lease_holder: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column()
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)

    acme_account: Mapped[AcmeAccount] = relationship()
    stipa_account: Mapped[StiPaAccount | None] = relationship()


class Certificate(Base):
    __tablename__ = "certificate"
    __table_args__ = (
        UniqueConstraint("entry_id", "serial"),
        Index("ix_certificate_entry_id_state", "entry_id", "state"),
        # At most one active and one pending certificate per entry, enforced by the DB
        # so that two workers (or a crash and a restart) cannot make a second one.
        Index(
            "uq_certificate_one_active",
            "entry_id",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        Index(
            "uq_certificate_one_pending",
            "entry_id",
            unique=True,
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    #: None once the entry was removed: its published chains stay on the STI-CR until
    #: they expire, so calls signed before the removal still verify.
    entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate_entry.id", ondelete="CASCADE")
    )
    state: Mapped[CertificateState] = mapped_column(
        _enum(CertificateState, "state"), default=CertificateState.PENDING
    )
    #: Hex serial, fingerprint (SHA-256 of the leaf DER, hex) and validity: set on issue.
    serial: Mapped[str | None] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
    not_before: Mapped[dt.datetime | None] = mapped_column()
    not_after: Mapped[dt.datetime | None] = mapped_column(index=True)
    chain_pem: Mapped[str | None] = mapped_column(Text)
    key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    x5u_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    order_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column()
    state_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    entry: Mapped[CertificateEntry | None] = relationship()


class DeploymentTask(_Timestamps, Base):
    """Run after a certificate becomes active; ``config`` holds no secrets."""

    __tablename__ = "deployment_task"
    __table_args__ = (UniqueConstraint("entry_id", "name"),)

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("certificate_entry.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[DeploymentTaskKind] = mapped_column(_enum(DeploymentTaskKind, "kind"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: E.g. a webhook's HMAC key.
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=60)
    last_certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate.id", ondelete="SET NULL")
    )
    last_run_at: Mapped[dt.datetime | None] = mapped_column()
    last_outcome: Mapped[EventOutcome | None] = mapped_column(_enum(EventOutcome, "outcome"))
    last_error: Mapped[str | None] = mapped_column(Text)


class LifecycleEvent(Base):
    """The audit trail: one row per step attempted on an entry."""

    __tablename__ = "lifecycle_event"
    __table_args__ = (Index("ix_lifecycle_event_entry_id_at", "entry_id", "at"),)

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("certificate_entry.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column()
    step: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[EventOutcome] = mapped_column(_enum(EventOutcome, "outcome"))
    error: Mapped[str | None] = mapped_column(Text)
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate.id", ondelete="SET NULL")
    )
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SipMessage(Base):
    """One signed or verified call (the SIP message log); written in batches.

    Every query is by time range (newest first, keyset pages on ``(at, id)``), Call-ID
    or number, so each has a plain B-tree: ``(at, id)`` is the page order itself, so a
    page deep in the log starts at its cursor in the index instead of filtering every
    newer row, and it serves the retention delete, which a BRIN index could not.
    """

    __tablename__ = "sip_message"
    __table_args__ = (Index("ix_sip_message_at_id", "at", "id"),)

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column()
    direction: Mapped[SipDirection] = mapped_column(_enum(SipDirection, "direction"))
    action: Mapped[SipAction] = mapped_column(_enum(SipAction, "action"))
    call_id: Mapped[str] = mapped_column(String(255), index=True)
    from_tn: Mapped[str | None] = mapped_column(String(32), index=True)
    to_tn: Mapped[str | None] = mapped_column(String(32), index=True)
    attest: Mapped[str | None] = mapped_column(String(1))
    verstat: Mapped[str | None] = mapped_column(String(32))
    sip_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(255))
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate.id", ondelete="SET NULL"), index=True
    )
    x5u: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    #: For a verified call, the other provider's certificate its PASSporT was checked with.
    remote_certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("remote_certificate.id", ondelete="SET NULL"), index=True
    )
    #: A verified call's Rich Call Data (RFC 9795), only when it verified.
    rcd_name: Mapped[str | None] = mapped_column(String(256))
    rcd_icon: Mapped[str | None] = mapped_column(String(URL_LENGTH))


class RemoteCertificate(Base):
    """Another provider's certificate that a verified call was checked against.

    One row per certificate (unique SHA-256 fingerprint), however many calls reference
    it, so the log of a million calls from one peer holds its certificate once.
    """

    __tablename__ = "remote_certificate"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    #: SHA-256 of the DER, hex, as :attr:`Certificate.fingerprint`.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    #: The SPC of its TNAuthList (None if the list is not exactly one SPC).
    spc: Mapped[str | None] = mapped_column(String(32))
    serial: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dt.datetime] = mapped_column()
    not_after: Mapped[dt.datetime] = mapped_column()
    pem: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(_Timestamps, Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    #: ``scrypt$n$r$p$salt$hash`` (base64url parts).
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored (the token has 256 bits of entropy)."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Setting(Base):
    """Key/value settings edited at run time (SMTP, technical contact, renewal policy)."""

    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    value_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SignInFailure(Base):
    """Failed sign-ins for one user name or one client address, shared by every node.

    ``locked_until`` is when the next attempt may be checked (the time of the last
    failure while no delay applies); old rows are pruned by it.
    """

    __tablename__ = "sign_in_failure"

    #: ``user`` or ``address``.
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[dt.datetime] = mapped_column(index=True)


class WebSession(Base):
    """A signed-in browser: the cookie carries a random id, the store only its SHA-256,
    so signing out, changing the password or an admin can end it on every node."""

    __tablename__ = "web_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
