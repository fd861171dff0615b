"""Each fault class: retried with growing backoff, one email to the contact, and on
recovery an active certificate and one more email (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opensti.sandbox.config import DEMO_PASSWORD
from opensti.store import CertificateState, Secret
from tests.lifecycle.reconcile_support import CONTACT, World, start_world, states
from tests.lifecycle.test_notify import Mailbox, smtp_server

pytestmark = pytest.mark.integration

Switch = Callable[[World, bool], None]


def _ca_down(world: World, on: bool) -> None:
    world.sandbox.state.faults.set("ca", "refuse" if on else "ok")


def _stipa_down(world: World, on: bool) -> None:
    world.sandbox.state.faults.set("stipa", "refuse" if on else "ok")


def _wrong_stipa_password(world: World, on: bool) -> None:
    password = "not-the-password" if on else DEMO_PASSWORD
    world.app.accounts.set_stipa(
        account_id="123H",
        user_id="demo",
        password=Secret.from_text(password),
        base_url=world.sandbox.stipa_base_url,
    )


def _token_refused(world: World, on: bool) -> None:
    world.sandbox.state.faults.refuse_tokens = on


def _bad_profile(world: World, on: bool) -> None:
    world.sandbox.state.faults.bad_profile = on


FAULTS: dict[str, tuple[Switch, str]] = {
    "ca-down": (_ca_down, "serverInternal"),
    "stipa-down": (_stipa_down, "503"),
    "wrong-stipa-password": (_wrong_stipa_password, "STI-PA"),
    "spc-token-refused": (_token_refused, "refused"),
    "certificate-fails-profile": (_bad_profile, "policy"),
}


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def world(tmp_path: Path, mailbox: Mailbox) -> Iterator[World]:
    with start_world(tmp_path) as started:
        started.add_entries("123H")
        started.mail_to(mailbox.port)
        yield started


def _retry_in(world: World, name: str) -> float:
    deadline = world.entry(name).next_attempt_at
    assert deadline is not None
    return (deadline - world.clock()).total_seconds()


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_retries_with_backoff_emails_once_and_recovers(
    world: World, mailbox: Mailbox, fault: str
) -> None:
    switch, expected = FAULTS[fault]
    reconciler = world.reconciler()
    # One entry is healthy first; the fault then hits a new entry's first certificate.
    await reconciler.pass_once()
    healthy = world.active("e123H")
    assert healthy is not None
    world.add_entries("456J")
    switch(world, True)

    delays = []
    for attempt in range(1, 4):
        [result] = await reconciler.pass_once()
        assert result.outcome == "failed"
        assert expected.casefold() in (result.error or "").casefold()
        entry = world.entry("e456J")
        assert entry.failure_count == attempt
        assert entry.failing_since is not None
        delays.append(_retry_in(world, "e456J"))
        assert await reconciler.pass_once() == []  # backing off: not tried again yet
        world.clock.advance(dt.timedelta(seconds=delays[-1] + 1))
    # Exponential backoff with jitter: 30 s, 60 s, 120 s, each minus up to a quarter.
    for attempt, delay in enumerate(delays):
        assert 30 * 2**attempt * 0.75 - 2 <= delay <= 30 * 2**attempt
    assert mailbox.subjects() == ["[opensti] e456J (SPC 456J): certificate renewal is failing"]
    assert expected.casefold() in mailbox.messages[0].get_content().casefold()
    assert mailbox.messages[0]["To"] == CONTACT
    # A certificate refused by our checks is never activated nor published.
    failed = [c for c in world.certificates("e456J") if c.state is CertificateState.FAILED]
    assert bool(failed) == (fault == "certificate-fails-profile")
    for cert in failed:
        assert world.fetch(f"{world.base_url}/sti-cr/{cert.id}.pem").status_code == 404
    # The healthy entry was not touched.
    assert world.active("e123H").id == healthy.id  # type: ignore[union-attr]

    switch(world, False)
    [result] = await reconciler.pass_once()
    assert result.outcome == "activated", result.error
    assert world.valid_published("e456J")
    entry = world.entry("e456J")
    assert (entry.failure_count, entry.failing_since, entry.last_error) == (0, None, None)
    assert mailbox.subjects()[1:] == ["[opensti] e456J (SPC 456J): recovered"]
    # Healthy again: no further email.
    world.clock.advance(dt.timedelta(seconds=30))
    assert await reconciler.pass_once() == []
    await reconciler.observe_all()
    assert len(mailbox.messages) == 2
    assert states(world.certificates("e456J"))[0] is CertificateState.ACTIVE
