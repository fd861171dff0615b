"""The reconcile loop against the real sandbox: first certificate, renewal before expiry
with the old chain still published, deployment, leases, isolation and clock jumps."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opensti.api import create_api
from opensti.core.errors import AcmeProblem
from opensti.lifecycle.deploy import create_deployment_task
from opensti.lifecycle.flow import DEFAULT_SIGNER_STEP
from opensti.lifecycle.reconcile import (
    RENEW_BEFORE_KEY,
    FlowStep,
    ReconcilePolicy,
    backoff_delay,
    entry_statuses,
    request_renewal,
)
from opensti.store import (
    CertificateState,
    DeploymentTaskKind,
    EventOutcome,
    LifecycleEvent,
    Role,
    get_entry,
    list_events,
    put_setting,
)
from tests.api.api_support import add_tokens
from tests.lifecycle.reconcile_support import World, start_world, states

pytestmark = [pytest.mark.integration, pytest.mark.db_dialect]

FULL_FLOW = [
    FlowStep.SPC_TOKEN,
    FlowStep.PREPARE,
    FlowStep.NEW_ORDER,
    FlowStep.CHALLENGE,
    FlowStep.FINALIZE,
    FlowStep.DOWNLOAD,
    FlowStep.PROFILE,
    FlowStep.VALIDATE,
    FlowStep.STORE,
    FlowStep.PUBLISH,
    FlowStep.DEPLOY,
    FlowStep.ACTIVATE,
]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_world(tmp_path) as started:
        started.add_entries("123H")
        yield started


def _deploy_to(world: World, directory: Path) -> None:
    """A directory deployment task for entry e123H."""
    with world.app.database.session() as session:
        create_deployment_task(
            session,
            world.app.box,
            "e123H",
            name="files",
            kind=DeploymentTaskKind.DIRECTORY,
            config={"path": str(directory)},
        )


def _events(world: World, name: str) -> list[LifecycleEvent]:
    with world.app.database.read_session() as session:
        entry_id = world.entry(name).id
        return list(reversed(list_events(session, entry_id, limit=1000)))


async def test_first_certificate_then_renewal_before_expiry(world: World, tmp_path: Path) -> None:
    deploy_dir = tmp_path / "deployed"
    _deploy_to(world, deploy_dir)
    reconciler = world.reconciler()

    [first] = await reconciler.pass_once()
    assert first.outcome == "activated"
    assert list(first.steps) == [step.value for step in FULL_FLOW]
    old = world.active("e123H")
    assert old is not None
    assert old.id == first.certificate_id
    assert old.x5u_url == f"{world.base_url}/sti-cr/{old.id}.pem"
    assert world.valid_published("e123H")
    assert (deploy_dir / "chain.pem").read_text() == old.chain_pem

    # Not due yet: nothing is started.
    assert await reconciler.pass_once() == []

    # Seven of ten minutes later less than a third of the life is left: renew.
    world.clock.advance(dt.timedelta(minutes=7))
    [second] = await reconciler.pass_once()
    assert second.outcome == "activated"
    new = world.active("e123H")
    assert new is not None
    assert new.id != old.id
    assert new.not_after > old.not_after
    assert states(world.certificates("e123H")) == [
        CertificateState.ACTIVE,
        CertificateState.SUPERSEDED,
    ]
    assert (deploy_dir / "chain.pem").read_text() == new.chain_pem

    # Calls signed a minute ago with the old certificate must still verify.
    assert old.x5u_url is not None
    response = world.fetch(old.x5u_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pem-certificate-chain"
    max_age = int(response.headers["cache-control"].rpartition("=")[2])
    assert 0 < max_age <= (old.not_after - world.clock()).total_seconds()
    assert world.chain_valid(response.content, "123H", world.clock())
    assert world.valid_published("e123H")

    # Once the old certificate has expired it is gone; the new one is served.
    world.clock.advance(dt.timedelta(minutes=3, seconds=30))
    world.repository.chains.reload()
    assert world.fetch(old.x5u_url).status_code in (404, 410)
    assert world.valid_published("e123H")


async def test_the_loop_says_when_it_makes_the_first_default_signer(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """One obvious start, unattended: the audit trail and the log name the entry."""
    assert not world.entry("e123H").is_default_signer
    with caplog.at_level(logging.INFO, logger="opensti.lifecycle.flow"):
        [first] = await world.reconciler().pass_once()
    assert first.outcome == "activated"
    assert world.entry("e123H").is_default_signer
    promoted = [e for e in _events(world, "e123H") if e.step == DEFAULT_SIGNER_STEP]
    assert [(e.outcome, e.certificate_id) for e in promoted] == [
        (EventOutcome.SUCCEEDED, first.certificate_id)
    ]
    said = [r for r in caplog.records if "default signer" in r.getMessage()]
    assert [(r.levelno, "e123H" in r.getMessage()) for r in said] == [(logging.INFO, True)]

    # A renewal keeps the role without saying it again.
    world.clock.advance(dt.timedelta(minutes=7))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="opensti.lifecycle.flow"):
        [second] = await world.reconciler().pass_once()
    assert second.outcome == "activated"
    assert [e.step for e in _events(world, "e123H")].count(DEFAULT_SIGNER_STEP) == 1
    assert not [r for r in caplog.records if "default signer" in r.getMessage()]


async def test_status_shows_expiry_and_next_renewal(world: World) -> None:
    policy = ReconcilePolicy()
    [before] = entry_statuses(world.app.database, policy)
    assert (before.certificate_id, before.next_renewal) == (None, None)
    await world.reconciler().pass_once()
    [after] = entry_statuses(world.app.database, policy, public_base_url=world.base_url)
    active = world.active("e123H")
    assert active is not None
    assert after.certificate_id == active.id
    assert after.not_after == active.not_after
    assert after.x5u == active.x5u_url
    # A third of the lifetime before expiry.
    lifetime = active.not_after - active.not_before
    assert after.next_renewal == active.not_after - lifetime / 3
    assert after.to_dict()["next_renewal"] == after.next_renewal.isoformat()


async def test_renewal_on_request_even_when_not_due(world: World) -> None:
    reconciler = world.reconciler()
    await reconciler.pass_once()
    first = world.active("e123H")
    assert await reconciler.pass_once() == []
    request_renewal(world.app.database, "e123H")
    [result] = await reconciler.pass_once()
    assert result.outcome == "activated"
    assert result.certificate_id != (first and first.id)
    # The request is used up.
    assert await reconciler.pass_once() == []


async def test_two_workers_on_one_store_issue_one_certificate(world: World) -> None:
    world.add_entries("456J", "789K")
    workers = [world.reconciler(holder=f"worker-{n}") for n in range(3)]
    results = await asyncio.gather(*(worker.pass_once() for worker in workers))
    outcomes = sorted(r.outcome for batch in results for r in batch)
    assert outcomes.count("activated") == 3
    assert set(outcomes) <= {"activated", "busy", "up-to-date"}
    for name in ("e123H", "e456J", "e789K"):
        assert states(world.certificates(name)) == [CertificateState.ACTIVE]
    assert sorted(world.issued_serials()) == sorted(world.stored_serials())


async def test_one_failing_entry_does_not_hold_back_the_others(world: World) -> None:
    # 999Z is not an SPC of the STI-PA account: its token requests are refused.
    world.add_entries("999Z", "456J")
    results = {r.entry: r for r in await world.reconciler().pass_once()}
    assert results["e999Z"].outcome == "failed"
    assert "999Z" in (results["e999Z"].error or "")
    assert results["e123H"].outcome == results["e456J"].outcome == "activated"
    failing = world.entry("e999Z")
    assert failing.failure_count == 1
    assert failing.last_error == results["e999Z"].error
    failed = [e for e in _events(world, "e999Z") if e.outcome.value == "failed"]
    assert [e.step for e in failed] == [FlowStep.SPC_TOKEN.value]


async def test_backoff_grows_and_a_clock_jump_back_does_not_stall(world: World) -> None:
    world.sandbox.state.faults.set("ca", "refuse")
    reconciler = world.reconciler(backoff_max=120)
    [first] = await reconciler.pass_once()
    assert first.outcome == "failed"
    entry = world.entry("e123H")
    delay = (entry.next_attempt_at - world.clock()).total_seconds()
    assert 30 * 0.75 - 1 <= delay <= 30
    assert await reconciler.pass_once() == []  # waiting

    world.clock.advance(dt.timedelta(seconds=31))
    [second] = await reconciler.pass_once()
    assert second.outcome == "failed"
    entry = world.entry("e123H")
    assert entry.failure_count == 2
    delay = (entry.next_attempt_at - world.clock()).total_seconds()
    assert 60 * 0.75 - 1 <= delay <= 60

    # The wall clock goes back four minutes: the deadline is now five minutes away,
    # beyond any backoff the policy allows (two), so the entry is tried now.
    world.sandbox.state.faults.set("ca", "ok")
    world.clock.advance(dt.timedelta(minutes=-4))
    [third] = await reconciler.pass_once()
    assert third.outcome == "activated"
    assert world.entry("e123H").failure_count == 0


def test_backoff_is_bounded_with_jitter() -> None:
    policy = ReconcilePolicy(backoff_initial=10, backoff_max=100, backoff_jitter=0.5)
    rng = random.Random(7)
    delays = [backoff_delay(n, policy, rng) for n in range(1, 40)]
    assert all(5 <= d <= 10 for d in delays[:1])
    assert all(50 <= d <= 100 for d in delays[5:])
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jittered, not a fixed value


async def test_rest_status_and_renew(world: World) -> None:
    tokens = add_tokens(world.app)
    transport = httpx.ASGITransport(app=create_api(world.app))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:

        def auth(role: Role) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[role]}"}

        status = await client.get("/api/v1/lifecycle/status", headers=auth(Role.READ_ONLY))
        assert status.status_code == 200
        assert [s["name"] for s in status.json()] == ["e123H"]
        assert status.json()[0]["certificate_id"] is None
        refused = await client.post("/api/v1/entries/e123H/renew", headers=auth(Role.READ_ONLY))
        assert refused.status_code == 403
        renewed = await client.post(
            "/api/v1/entries/e123H/renew", params={"now": "true"}, headers=auth(Role.OPERATOR)
        )
        assert renewed.status_code == 200, renewed.text
        assert renewed.json()["outcome"] == "activated"
        active = world.active("e123H")
        assert active is not None
        assert renewed.json()["certificate_id"] == active.id
        queued = await client.post("/api/v1/entries/e123H/renew", headers=auth(Role.OPERATOR))
        assert queued.json() == {"entry": "e123H", "outcome": "requested"}
        [row] = (await client.get("/api/v1/lifecycle/status", headers=auth(Role.READ_ONLY))).json()
        assert row["certificate_id"] == active.id
        assert row["next_renewal"] is not None
    # The queued request is taken by the loop at its next pass.
    [result] = await world.reconciler().pass_once()
    assert result.outcome == "activated"


async def test_failed_deployment_never_holds_back_activation_and_is_retried(
    world: World, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the task wants a directory")
    _deploy_to(world, blocker / "out")
    reconciler = world.reconciler(backoff_initial=0.01, backoff_max=0.05)
    [first] = await reconciler.pass_once()
    assert first.outcome == "activated"
    active = world.active("e123H")
    assert active is not None
    deploys = [e for e in _events(world, "e123H") if e.step == FlowStep.DEPLOY.value]
    assert [e.outcome.value for e in deploys] == ["failed"]
    assert world.entry("e123H").failing_since is None  # the certificate itself is fine

    [retry] = await reconciler.pass_once()
    assert retry.outcome == "deploy-failed"
    blocker.unlink()
    await asyncio.sleep(0.1)  # past the deployment backoff
    [retry] = await reconciler.pass_once()
    assert retry.outcome == "deployed"
    assert (blocker / "out" / "chain.pem").read_text() == active.chain_pem
    assert world.active("e123H").id == active.id  # type: ignore[union-attr]
    assert await reconciler.pass_once() == []


async def test_a_short_outage_is_absorbed_without_backoff(world: World) -> None:
    world.sandbox.state.faults.set("stipa", "refuse")
    restore = threading.Timer(0.3, world.sandbox.state.faults.set, ("stipa", "ok"))
    restore.start()
    [result] = await world.reconciler(quick_retry_delay=0.2).pass_once()
    restore.join()
    assert result.outcome == "activated"
    entry = world.entry("e123H")
    assert (entry.failure_count, entry.failing_since) == (0, None)
    retried = [e for e in _events(world, "e123H") if e.outcome.value == "failed"]
    assert retried
    assert all(e.detail == {"retry": "at once"} for e in retried)


async def test_stopping_mid_flow_leaves_a_resumable_pending_row(world: World) -> None:
    # The CA is slow: the loop is stopped while an attempt waits on it.
    world.sandbox.state.faults.set("ca", "delay", 1.0)
    reconciler = world.reconciler()
    stop = asyncio.Event()
    loop = asyncio.create_task(reconciler.run(stop))
    while not any(e.step == FlowStep.PREPARE.value for e in _events(world, "e123H")):
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(loop, 30)
    [pending] = world.certificates("e123H")
    assert pending.state is CertificateState.PENDING
    entry = world.entry("e123H")
    assert (entry.failure_count, entry.failing_since, entry.lease_holder) == (0, None, None)

    world.sandbox.state.faults.set("ca", "ok")
    [result] = await world.reconciler(holder="another").pass_once()
    assert result.outcome == "activated"
    assert result.certificate_id == pending.id


async def test_run_now_reports_progress_and_raises_the_failure(world: World) -> None:
    reconciler = world.reconciler(quick_retries=0)
    seen: list[FlowStep] = []
    certificate_id, steps = await reconciler.run_now("e123H", progress=seen.append)
    assert list(steps) == [step.value for step in FULL_FLOW]
    assert seen == FULL_FLOW
    assert world.active("e123H").id == certificate_id  # type: ignore[union-attr]

    world.sandbox.state.faults.set("ca", "refuse")
    with pytest.raises(AcmeProblem, match="serverInternal"):
        await reconciler.run_now("e123H")
    assert world.entry("e123H").failure_count == 1
    assert world.active("e123H").id == certificate_id  # type: ignore[union-attr]


async def test_renew_before_per_entry_then_global_then_a_third(world: World) -> None:
    await world.reconciler().pass_once()
    active = world.active("e123H")
    assert active is not None
    lifetime = active.not_after - active.not_before

    def next_renewal() -> dt.datetime | None:
        [status] = entry_statuses(world.app.database, ReconcilePolicy())
        return status.next_renewal

    assert next_renewal() == active.not_after - lifetime / 3
    with world.app.database.session() as session:
        put_setting(session, RENEW_BEFORE_KEY, 60)
    assert next_renewal() == active.not_after - dt.timedelta(seconds=60)
    with world.app.database.session() as session:
        get_entry(session, "e123H").renew_before = 120
    assert next_renewal() == active.not_after - dt.timedelta(seconds=120)
    # Never more than half the lifetime, or every new certificate would be due at once.
    with world.app.database.session() as session:
        get_entry(session, "e123H").renew_before = 10**6
    assert next_renewal() == active.not_after - lifetime / 2
    assert await world.reconciler().pass_once() == []
