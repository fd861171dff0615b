"""Email to the technical contact: one message per failure episode, not a flood.

Settings live in the store's ``setting`` rows: ``smtp`` (host, port, security,
username, from address; the password sealed in ``smtp.password``), ``notify.contacts``
(addresses), ``notify.policy`` (at-risk threshold, summary period).

An entry's *episode* starts when it is failing (the reconcile loop keeps
``CertificateEntry.failing_since`` set while it fails) or at risk (its active
certificate has less life left than the threshold, 24 h by default, scaled down to a
sixth of a shorter-lived certificate's life: :func:`at_risk_threshold`). Within one
episode the contact gets at most one "failing" email (with the error) and one "at
risk" email; when the episode ends, one "recovered" email. The episode's state is a
setting row per entry (``notify.entry.<id>``), written after each successful send, so a
restart neither resends nor forgets; an email that could not be sent is tried again
at the next observation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from opensti.core.errors import DeliveryFailed, InvalidInput
from opensti.store import (
    CertificateEntry,
    Database,
    Secret,
    SecretBox,
    active_certificate,
    get_entry_by_id,
    get_secret_setting,
    get_setting,
    list_entries,
    put_secret_setting,
    put_setting,
)

__all__ = [
    "AT_RISK_FRACTION",
    "NoticeKind",
    "Notifier",
    "NotifyPolicy",
    "SMTPSecurity",
    "SMTPSettings",
    "SummaryPeriod",
    "at_risk_threshold",
    "get_contacts",
    "get_policy",
    "load_smtp_settings",
    "save_smtp_settings",
    "send_email",
    "set_contacts",
    "set_policy",
]

SMTP_KEY = "smtp"
SMTP_PASSWORD_KEY = "smtp.password"  # noqa: S105  (a setting key, not a secret)
CONTACTS_KEY = "notify.contacts"
POLICY_KEY = "notify.policy"
SUMMARY_SENT_KEY = "notify.summary_sent_at"
_log = logging.getLogger(__name__)


class SMTPSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class SummaryPeriod(StrEnum):
    OFF = "off"
    DAILY = "daily"
    WEEKLY = "weekly"


_PERIODS = {SummaryPeriod.DAILY: dt.timedelta(days=1), SummaryPeriod.WEEKLY: dt.timedelta(days=7)}
# A summary sent a little early (a loop tick before the period ends) still counts.
_SUMMARY_SLACK = dt.timedelta(minutes=10)


def _check_address(value: str) -> str:
    _name, address = email.utils.parseaddr(value)
    if any(c in value for c in "\r\n") or "@" not in address or len(address) > 254:
        raise InvalidInput(f"not an email address: {value!r}", value=value)
    return value.strip()


# -- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SMTPSettings:
    """How to reach the mail server; ``ca_file`` trusts a private CA for its TLS."""

    host: str
    from_address: str
    port: int = 587
    security: SMTPSecurity = SMTPSecurity.STARTTLS
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.host or any(c in self.host for c in "\r\n /"):
            raise InvalidInput(f"not an SMTP host: {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise InvalidInput("the SMTP port is between 1 and 65535", value=self.port)
        object.__setattr__(self, "security", SMTPSecurity(self.security))
        _check_address(self.from_address)
        if self.username and self.security is SMTPSecurity.NONE:
            raise InvalidInput("SMTP authentication needs starttls or ssl (no password in clear)")
        if self.username and self.password is None:
            raise InvalidInput("an SMTP username needs a password")
        if not 0 < self.timeout <= 600:
            raise InvalidInput("the SMTP timeout is between 0 and 600 s", value=self.timeout)

    def public(self) -> dict[str, Any]:
        """Everything but the password (what the store keeps in clear and the UI shows)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "password"}
        return {**values, "security": str(self.security)}


def save_smtp_settings(session: Session, box: SecretBox, settings: SMTPSettings) -> None:
    put_setting(session, SMTP_KEY, settings.public())
    if settings.password is not None:
        put_secret_setting(session, box, SMTP_PASSWORD_KEY, settings.password)


def load_smtp_settings(session: Session, box: SecretBox) -> SMTPSettings | None:
    values = get_setting(session, SMTP_KEY)
    if not isinstance(values, dict):
        return None
    password = (
        get_secret_setting(session, box, SMTP_PASSWORD_KEY) if values.get("username") else None
    )
    return SMTPSettings(**values, password=password)


def set_contacts(session: Session, addresses: Sequence[str]) -> list[str]:
    checked = [_check_address(address) for address in addresses]
    put_setting(session, CONTACTS_KEY, checked)
    return checked


def get_contacts(session: Session) -> list[str]:
    return list(get_setting(session, CONTACTS_KEY, []))


@dataclass(frozen=True)
class NotifyPolicy:
    at_risk_hours: float = 24.0
    summary: SummaryPeriod = SummaryPeriod.OFF

    def __post_init__(self) -> None:
        if not 0 < self.at_risk_hours <= 24 * 365:
            raise InvalidInput("the at-risk threshold is a positive number of hours")
        object.__setattr__(self, "summary", SummaryPeriod(self.summary))

    @property
    def at_risk(self) -> dt.timedelta:
        return dt.timedelta(hours=self.at_risk_hours)


def set_policy(session: Session, policy: NotifyPolicy) -> None:
    put_setting(session, POLICY_KEY, {**asdict(policy), "summary": str(policy.summary)})


def get_policy(session: Session) -> NotifyPolicy:
    return NotifyPolicy(**get_setting(session, POLICY_KEY, {}))


# -- sending ----------------------------------------------------------------------------


def send_email(settings: SMTPSettings, message: EmailMessage) -> None:
    """Deliver one message with :mod:`smtplib` (blocking); DeliveryFailed on any failure."""
    context = ssl.create_default_context(cafile=settings.ca_file)
    where = f"SMTP server {settings.host}:{settings.port}"
    try:
        with _connect(settings, context) as smtp:
            if settings.security is SMTPSecurity.STARTTLS:
                smtp.starttls(context=context)
            if settings.username and settings.password is not None:
                smtp.login(settings.username, settings.password.reveal_text())
            smtp.send_message(message)
    except smtplib.SMTPException as exc:
        raise DeliveryFailed(f"{where} refused the message: {_smtp_reason(exc)}") from None
    except OSError as exc:
        raise DeliveryFailed(f"{where} unreachable: {type(exc).__name__}: {exc}") from None


def _connect(settings: SMTPSettings, context: ssl.SSLContext) -> smtplib.SMTP:
    # Our own host name for EHLO: getfqdn() can stall on a slow resolver.
    helo = socket.gethostname()
    if settings.security is SMTPSecurity.SSL:
        return smtplib.SMTP_SSL(
            settings.host, settings.port, helo, timeout=settings.timeout, context=context
        )
    return smtplib.SMTP(settings.host, settings.port, helo, timeout=settings.timeout)


def _smtp_reason(exc: smtplib.SMTPException) -> str:
    code, text = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", b"")
    if code is None:
        return str(exc) or type(exc).__name__
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {reply}"


def _message(
    settings: SMTPSettings, to: Sequence[str], subject: str, body: str, now: dt.datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.from_address
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(now)
    domain = email.utils.parseaddr(settings.from_address)[1].rpartition("@")[2]
    message["Message-ID"] = email.utils.make_msgid("opensti", domain=domain or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


# -- episodes ---------------------------------------------------------------------------


class NoticeKind(StrEnum):
    FAILING = "failing"
    AT_RISK = "at_risk"
    RECOVERED = "recovered"


@dataclass(frozen=True)
class EpisodeState:
    """What the contact has been told about the current episode of one entry."""

    since: str | None = None
    failing_sent: bool = False
    at_risk_sent: bool = False

    @property
    def told(self) -> bool:
        return self.failing_sent or self.at_risk_sent


#: A certificate is at risk with less than this share of its life left (and less than
#: the policy's hours): half the default renewal margin (a third), so a short-lived
#: certificate is not "at risk" from birth, nor at the very moment it is due.
AT_RISK_FRACTION = 1 / 6


def at_risk_threshold(
    threshold: dt.timedelta, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> dt.timedelta:
    """The policy's threshold, scaled down to a certificate's life: the one rule behind
    the at-risk email, the summary and the web UI's status line."""
    if not_before is None or not_after is None:
        return threshold
    return min(threshold, (not_after - not_before) * AT_RISK_FRACTION)


@dataclass(frozen=True)
class Observation:
    """An entry as the loop leaves it: failing or not, and its active certificate's life."""

    failing: bool
    error: str | None = None
    not_after: dt.datetime | None = None
    not_before: dt.datetime | None = None

    def at_risk(self, now: dt.datetime, threshold: dt.timedelta) -> bool:
        if self.not_after is None:
            return False
        return self.not_after - now < at_risk_threshold(threshold, self.not_before, self.not_after)


def due_notices(
    state: EpisodeState, observation: Observation, now: dt.datetime, threshold: dt.timedelta
) -> list[NoticeKind]:
    """The emails this observation calls for, in order (pure: no I/O)."""
    at_risk = observation.at_risk(now, threshold)
    if not observation.failing and not at_risk:
        return [NoticeKind.RECOVERED] if state.told else []
    due = []
    if observation.failing and not state.failing_sent:
        due.append(NoticeKind.FAILING)
    if at_risk and not state.at_risk_sent:
        due.append(NoticeKind.AT_RISK)
    return due


def _after(state: EpisodeState, kind: NoticeKind, now: dt.datetime) -> EpisodeState:
    if kind is NoticeKind.RECOVERED:
        return EpisodeState()
    started = replace(state, since=state.since or now.isoformat())
    if kind is NoticeKind.FAILING:
        return replace(started, failing_sent=True)
    return replace(started, at_risk_sent=True)


def _state_key(entry_id: int) -> str:
    return f"notify.entry.{entry_id}"


def _describe(entry: CertificateEntry) -> str:
    return f"{entry.name} (SPC {entry.spc})"


def _left(not_after: dt.datetime | None, now: dt.datetime) -> str:
    if not_after is None:
        return "no active certificate"
    seconds = int((not_after - now).total_seconds())
    if seconds <= 0:
        return f"expired at {not_after.isoformat()}"
    hours, rest = divmod(seconds, 3600)
    return f"expires {not_after.isoformat()} (in {hours} h {rest // 60} min)"


def _notice_text(
    kind: NoticeKind, entry: CertificateEntry, observation: Observation, now: dt.datetime
) -> tuple[str, str]:
    what = _describe(entry)
    cert = _left(observation.not_after, now)
    if kind is NoticeKind.FAILING:
        return (
            f"[opensti] {what}: certificate renewal is failing",
            f"Renewing the certificate of {what} failed.\n\nError: {observation.error or 'unknown'}"
            f"\nActive certificate: {cert}\n\nopensti keeps retrying with backoff; you will get"
            " one more email when it recovers.\n",
        )
    if kind is NoticeKind.AT_RISK:
        return (
            f"[opensti] {what}: certificate at risk of expiring",
            f"The active certificate of {what} {cert}, and no renewal has succeeded yet.\n\n"
            f"Last error: {observation.error or 'none'}\n\nCalls signed after expiry will"
            " fail verification. Check the CA and STI-PA settings of this entry.\n",
        )
    return (
        f"[opensti] {what}: recovered",
        f"{what} is healthy again.\nActive certificate: {cert}\n",
    )


# -- the notifier -----------------------------------------------------------------------


class Notifier:
    """Sends the episode emails, the test email and the summary, with settings from the store."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box

    def _mail_setup(self, session: Session) -> tuple[SMTPSettings, list[str]] | None:
        settings = load_smtp_settings(session, self._box)
        contacts = get_contacts(session)
        return None if settings is None or not contacts else (settings, contacts)

    async def _send(
        self, setup: tuple[SMTPSettings, list[str]], subject: str, body: str, now: dt.datetime
    ) -> None:
        settings, contacts = setup
        message = _message(settings, contacts, subject, body, now)
        await asyncio.to_thread(send_email, settings, message)

    async def send_test(self, *, now: dt.datetime, to: Sequence[str] | None = None) -> list[str]:
        """Send a test email (to ``to`` or the contacts); returns the recipients."""
        with self._db.read_session() as session:
            settings = load_smtp_settings(session, self._box)
            contacts = [_check_address(a) for a in to] if to else get_contacts(session)
        if settings is None:
            raise InvalidInput("no SMTP server configured (opensti notify set-smtp)")
        if not contacts:
            raise InvalidInput("no technical contact configured (opensti notify set-contact)")
        body = (
            "This is a test email from opensti.\n\nFailure, at-risk and recovery notices "
            f"for your certificates will reach {', '.join(contacts)} this way.\n"
        )
        await self._send((settings, contacts), "[opensti] test email", body, now)
        return contacts

    async def observe_entry(self, entry_id: int, *, now: dt.datetime) -> list[NoticeKind]:
        """Look at the entry as the store has it and send what its episode calls for."""
        with self._db.read_session() as session:
            entry = get_entry_by_id(session, entry_id)
            active = active_certificate(session, entry_id)
            observation = Observation(
                failing=entry.enabled and entry.failing_since is not None,
                error=entry.last_error,
                not_after=active.not_after if active is not None and entry.enabled else None,
                not_before=active.not_before if active is not None else None,
            )
        return await self.observe(entry_id, observation, now=now)

    async def observe(
        self, entry_id: int, observation: Observation, *, now: dt.datetime
    ) -> list[NoticeKind]:
        """Send the emails due for this observation; returns those actually sent."""
        with self._db.read_session() as session:
            entry = get_entry_by_id(session, entry_id)
            state = EpisodeState(**get_setting(session, _state_key(entry_id), {}))
            policy = get_policy(session)
            setup = self._mail_setup(session)
        sent: list[NoticeKind] = []
        for kind in due_notices(state, observation, now, policy.at_risk):
            if setup is None:
                _log.warning("%s: %s notice not sent: no SMTP server or contact", entry.name, kind)
                break
            try:
                await self._send(setup, *_notice_text(kind, entry, observation, now), now)
            except DeliveryFailed as exc:
                _log.warning("%s: %s notice not sent: %s", entry.name, kind, exc)
                break
            state = _after(state, kind, now)
            with self._db.session() as session:
                put_setting(session, _state_key(entry_id), asdict(state))
            sent.append(kind)
        return sent

    # -- summary -------------------------------------------------------------------------

    def summary_text(self, *, now: dt.datetime) -> str:
        """Every entry: state, certificate expiry, last error."""
        lines = [f"opensti certificate summary, {now.isoformat()}", ""]
        with self._db.read_session() as session:
            threshold = get_policy(session).at_risk
            for entry in list_entries(session):
                active = active_certificate(session, entry.id)
                not_after = active.not_after if active is not None else None
                observation = Observation(
                    entry.failing_since is not None,
                    entry.last_error,
                    not_after,
                    active.not_before if active is not None else None,
                )
                lines.append(
                    f"{_describe(entry)}: {_entry_state(entry, observation, now, threshold)}"
                )
                lines.append(f"  certificate: {_left(not_after, now)}")
                if entry.last_error:
                    lines.append(f"  last error: {entry.last_error}")
        if len(lines) == 2:
            lines.append("No certificate entries are configured.")
        return "\n".join(lines) + "\n"

    async def send_summary(self, *, now: dt.datetime) -> list[str]:
        """Send the summary now and remember when; returns the recipients."""
        body = self.summary_text(now=now)
        with self._db.read_session() as session:
            setup = self._mail_setup(session)
        if setup is None:
            raise InvalidInput("no SMTP server or technical contact configured")
        await self._send(setup, "[opensti] certificate summary", body, now)
        with self._db.session() as session:
            put_setting(session, SUMMARY_SENT_KEY, now.isoformat())
        return setup[1]

    async def send_summary_if_due(self, *, now: dt.datetime) -> bool:
        """Send the periodic summary when the policy's period has passed since the last."""
        with self._db.read_session() as session:
            period = _PERIODS.get(get_policy(session).summary)
            last = get_setting(session, SUMMARY_SENT_KEY)
            configured = self._mail_setup(session) is not None
        if period is None or not configured:
            return False
        if last is not None and now - dt.datetime.fromisoformat(last) < period - _SUMMARY_SLACK:
            return False
        await self.send_summary(now=now)
        return True


def _entry_state(
    entry: CertificateEntry, observation: Observation, now: dt.datetime, threshold: dt.timedelta
) -> str:
    if not entry.enabled:
        return "disabled"
    if observation.failing:
        return "FAILING"
    if observation.not_after is None:
        return "no active certificate"
    return "AT RISK" if observation.at_risk(now, threshold) else "ok"
