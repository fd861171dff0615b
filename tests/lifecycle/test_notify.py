"""Notifications through a real SMTP server (aiosmtpd) on 127.0.0.1, plain, STARTTLS and SSL."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from opensti.core.errors import DeliveryFailed, InvalidInput
from opensti.lifecycle.notify import (
    NoticeKind,
    Notifier,
    NotifyPolicy,
    SMTPSecurity,
    SMTPSettings,
    SummaryPeriod,
    load_smtp_settings,
    save_smtp_settings,
    set_contacts,
    set_policy,
)
from opensti.store import CertificateEntry, Secret, get_entry_by_id, get_setting
from tests._servers import TLSFiles, free_port, make_tls_files
from tests.lifecycle.lifecycle_support import Store

pytestmark = pytest.mark.integration

CONTACT = "noc@carrier.example"
USER, PASSWORD = "opensti", "smtp-pass-123"


@dataclass
class Mailbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for message in self.messages]


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 235/535


@contextmanager
def smtp_server(tls: TLSFiles | None = None, *, implicit: bool = False) -> Iterator[Mailbox]:
    """aiosmtpd on 127.0.0.1; with ``tls``: STARTTLS required (or implicit TLS) and AUTH."""
    box = Mailbox(free_port())
    options: dict[str, Any] = {}
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_pem, tls.key_pem)
        options = {"authenticator": _authenticate, "auth_required": True}
        if implicit:
            # aiosmtpd only counts STARTTLS as TLS for AUTH; here the socket itself is TLS.
            options.update(ssl_context=context, server_hostname="localhost", auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
    controller = Controller(box, hostname="127.0.0.1", port=box.port, **options)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("smtp-tls"), label="smtp")


def _configure(store: Store, port: int, **options: Any) -> None:
    with store.db.session() as session:
        settings = SMTPSettings(
            host="127.0.0.1",
            port=port,
            from_address="opensti <opensti@carrier.example>",
            **{"security": SMTPSecurity.NONE, **options},
        )
        save_smtp_settings(session, store.box, settings)
        set_contacts(session, [CONTACT])


def _set_failing(
    store: Store, entry: CertificateEntry, error: str | None, now: dt.datetime
) -> None:
    """What the reconcile loop does to an entry when an attempt fails (or None: succeeds)."""
    with store.db.session() as session:
        row = get_entry_by_id(session, entry.id)
        row.failing_since = (row.failing_since or now) if error else None
        row.last_error = error


@pytest.fixture
def now(store: Store) -> dt.datetime:
    return store.pki.now


# -- sending ----------------------------------------------------------------------------


async def test_test_email_reaches_the_contact(
    store: Store, mailbox: Mailbox, now: dt.datetime
) -> None:
    _configure(store, mailbox.port)
    assert await Notifier(store.db, store.box).send_test(now=now) == [CONTACT]
    (message,) = mailbox.messages
    assert message["To"] == CONTACT
    assert message["Subject"] == "[opensti] test email"
    assert "opensti@carrier.example" in message["From"]
    assert message["Message-ID"].endswith("@carrier.example>")


async def test_starttls_with_authentication(store: Store, tls: TLSFiles, now: dt.datetime) -> None:
    with smtp_server(tls) as box:
        _configure(
            store,
            box.port,
            security=SMTPSecurity.STARTTLS,
            username=USER,
            password=Secret.from_text(PASSWORD),
            ca_file=str(tls.root_pem),
        )
        await Notifier(store.db, store.box).send_test(now=now, to=["other@carrier.example"])
    assert [str(m["To"]) for m in box.messages] == ["other@carrier.example"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls(store: Store, tls: TLSFiles, now: dt.datetime) -> None:
    with smtp_server(tls, implicit=True) as box:
        _configure(
            store,
            box.port,
            security=SMTPSecurity.SSL,
            username=USER,
            password=Secret.from_text(PASSWORD),
            ca_file=str(tls.root_pem),
        )
        await Notifier(store.db, store.box).send_test(now=now)
    assert len(box.messages) == 1


async def test_wrong_password_and_untrusted_server_fail_cleanly(
    store: Store, tls: TLSFiles, now: dt.datetime
) -> None:
    notifier = Notifier(store.db, store.box)
    with smtp_server(tls) as box:
        _configure(
            store,
            box.port,
            security="starttls",
            username=USER,
            password=Secret.from_text("wrong-pass-456"),
            ca_file=str(tls.root_pem),
        )
        with pytest.raises(DeliveryFailed, match="refused the message: 535") as refused:
            await notifier.send_test(now=now)
        _configure(
            store, box.port, security="starttls", username=USER, password=Secret.from_text(PASSWORD)
        )
        with pytest.raises(DeliveryFailed, match="SSLCertVerificationError"):
            await notifier.send_test(now=now)  # our CA file is not given: not trusted
    assert "wrong-pass-456" not in str(refused.value)
    assert box.messages == []


def test_settings_round_trip_keeps_the_password_sealed(store: Store) -> None:
    _configure(store, 2525, username=USER, password=Secret.from_text(PASSWORD), security="ssl")
    with store.db.read_session() as session:
        loaded = load_smtp_settings(session, store.box)
        stored = get_setting(session, "smtp")
    assert loaded is not None
    assert loaded.password == Secret.from_text(PASSWORD)
    assert (loaded.security, loaded.port) == (SMTPSecurity.SSL, 2525)
    assert PASSWORD not in repr(loaded)
    assert PASSWORD not in str(stored)


@pytest.mark.parametrize(
    "options",
    [
        {"security": "none", "username": USER, "password": Secret(b"x")},
        {"username": USER},
        {"from_address": "not an address"},
        {"from_address": "a@b.example\r\nBcc: victim@example.test"},
        {"port": 0},
    ],
)
def test_bad_smtp_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        SMTPSettings(**{"host": "127.0.0.1", "from_address": "o@carrier.example", **options})


# -- episodes ---------------------------------------------------------------------------


async def test_failure_episode_sends_one_mail_then_one_recovery(
    store: Store, mailbox: Mailbox, now: dt.datetime
) -> None:
    _configure(store, mailbox.port)
    entry = store.entry()
    store.certificate(entry, days=7)
    notifier = Notifier(store.db, store.box)
    _set_failing(store, entry, "CA unreachable: ConnectError", now)
    assert await notifier.observe_entry(entry.id, now=now) == [NoticeKind.FAILING]
    for minutes in (1, 2, 3):
        _set_failing(store, entry, "CA unreachable: ConnectError", now)
        assert await notifier.observe_entry(entry.id, now=now + dt.timedelta(minutes=minutes)) == []
    # A restart: a new notifier on the same database remembers the episode.
    restarted = Notifier(store.db, store.box)
    assert await restarted.observe_entry(entry.id, now=now + dt.timedelta(minutes=5)) == []
    _set_failing(store, entry, None, now)
    assert await restarted.observe_entry(entry.id, now=now + dt.timedelta(minutes=6)) == [
        NoticeKind.RECOVERED
    ]
    assert await restarted.observe_entry(entry.id, now=now + dt.timedelta(minutes=7)) == []
    assert mailbox.subjects() == [
        "[opensti] main (SPC 123H): certificate renewal is failing",
        "[opensti] main (SPC 123H): recovered",
    ]
    assert "CA unreachable: ConnectError" in mailbox.messages[0].get_content()


async def test_at_risk_sends_one_mail(store: Store, mailbox: Mailbox, now: dt.datetime) -> None:
    _configure(store, mailbox.port)
    entry = store.entry()
    store.certificate(entry, days=7)
    notifier = Notifier(store.db, store.box)
    day6 = now + dt.timedelta(days=6)
    assert await notifier.observe_entry(entry.id, now=day6) == []  # 24 h left: not yet
    later = day6 + dt.timedelta(hours=2)
    _set_failing(store, entry, "SPC token refused", later)
    sent = await notifier.observe_entry(entry.id, now=later)
    assert sent == [NoticeKind.FAILING, NoticeKind.AT_RISK]
    for hours in (3, 10, 20):
        assert await notifier.observe_entry(entry.id, now=day6 + dt.timedelta(hours=hours)) == []
    assert mailbox.subjects()[1] == "[opensti] main (SPC 123H): certificate at risk of expiring"
    assert "in 22 h 0 min" in mailbox.messages[1].get_content()
    # The renewal succeeds: a fresh certificate ends the episode with one email.
    _set_failing(store, entry, None, later)
    store.certificate(entry, days=14)
    assert await notifier.observe_entry(entry.id, now=day6 + dt.timedelta(hours=21)) == [
        NoticeKind.RECOVERED
    ]
    assert len(mailbox.messages) == 3


async def test_threshold_is_configurable(store: Store, mailbox: Mailbox, now: dt.datetime) -> None:
    _configure(store, mailbox.port)
    with store.db.session() as session:
        set_policy(session, NotifyPolicy(at_risk_hours=72))
    entry = store.entry()
    store.certificate(entry, days=30)
    notifier = Notifier(store.db, store.box)
    assert await notifier.observe_entry(entry.id, now=now + dt.timedelta(days=26)) == []
    assert await notifier.observe_entry(entry.id, now=now + dt.timedelta(days=28)) == [
        NoticeKind.AT_RISK
    ]


async def test_a_short_lived_certificate_is_not_at_risk_from_birth(
    store: Store, mailbox: Mailbox, now: dt.datetime
) -> None:
    """The 24 h default scaled to a sixth of the life: a 6-hour certificate is at risk
    in its last hour, not from the moment it is issued."""
    _configure(store, mailbox.port)
    entry = store.entry()
    store.certificate(entry, days=0.25)
    notifier = Notifier(store.db, store.box)
    assert await notifier.observe_entry(entry.id, now=now) == []
    assert await notifier.observe_entry(entry.id, now=now + dt.timedelta(hours=4, minutes=55)) == []
    assert await notifier.observe_entry(entry.id, now=now + dt.timedelta(hours=5, minutes=5)) == [
        NoticeKind.AT_RISK
    ]
    assert "AT RISK" not in Notifier(store.db, store.box).summary_text(now=now)


async def test_undelivered_notice_is_sent_at_the_next_observation(
    store: Store, now: dt.datetime
) -> None:
    entry = store.entry()
    store.certificate(entry)
    notifier = Notifier(store.db, store.box)
    _set_failing(store, entry, "STI-PA login failed", now)
    _configure(store, free_port())  # nobody listens there
    assert await notifier.observe_entry(entry.id, now=now) == []
    with smtp_server() as box:
        _configure(store, box.port)
        assert await notifier.observe_entry(entry.id, now=now) == [NoticeKind.FAILING]
    assert len(box.messages) == 1


# -- summary ----------------------------------------------------------------------------


async def test_summary_lists_every_entry_and_follows_its_period(
    store: Store, mailbox: Mailbox, now: dt.datetime
) -> None:
    _configure(store, mailbox.port)
    healthy, failing = store.entry("east", "123H"), store.entry("west", "456J")
    store.certificate(healthy, days=7)
    _set_failing(store, failing, "order refused: badCSR", now)
    notifier = Notifier(store.db, store.box)
    assert await notifier.send_summary_if_due(now=now) is False  # the default is off
    with store.db.session() as session:
        set_policy(session, NotifyPolicy(summary=SummaryPeriod.DAILY))
    assert await notifier.send_summary_if_due(now=now) is True
    assert await notifier.send_summary_if_due(now=now + dt.timedelta(hours=12)) is False
    assert await notifier.send_summary_if_due(now=now + dt.timedelta(days=1)) is True
    assert mailbox.subjects() == ["[opensti] certificate summary"] * 2
    text = mailbox.messages[0].get_content()
    assert "east (SPC 123H): ok" in text
    assert "west (SPC 456J): FAILING" in text
    assert "last error: order refused: badCSR" in text
    assert "no active certificate" in text


def test_contacts_are_checked(store: Store) -> None:
    with store.db.session() as session, pytest.raises(InvalidInput):
        set_contacts(session, ["ok@carrier.example", "evil@x.example\nBcc: a@b.example"])


async def test_nothing_configured_is_an_input_error(store: Store) -> None:
    with pytest.raises(InvalidInput, match="no SMTP server"):
        await Notifier(store.db, store.box).send_test(now=store.pki.now)
