"""The dashboard line's at-risk decision: the loop's renewal time, the notification
policy's threshold, failures and missing certificates."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from opensti.app import App
from opensti.lifecycle.reconcile import ReconcilePolicy
from opensti.store import Certificate, CertificateEntry, CertificateState, create_entry
from opensti.web import create_web
from opensti.web._health import RiskPolicy, entry_health
from tests.store.conftest import add_account, add_ca
from tests.web.conftest import sign_in

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _cert(issued_days_ago: float, life_days: float) -> Certificate:
    not_before = NOW - issued_days_ago * DAY
    return Certificate(not_before=not_before, not_after=not_before + life_days * DAY)


def _policy(at_risk_hours: float = 24, renew_before: float | None = None) -> RiskPolicy:
    return RiskPolicy(dt.timedelta(hours=at_risk_hours), renew_before)


@pytest.mark.parametrize(
    ("cert", "policy", "problem"),
    [
        (_cert(1, 30), _policy(), None),
        # 9 days into 30: renewal is at day 20 (a third left), nothing to say.
        (_cert(9, 30), _policy(), None),
        # Day 21: past the loop's renewal time by more than one attempt: overdue.
        (_cert(21, 30), _policy(), "renewal overdue since 2026-02-28 12:00 UTC"),
        # A global margin of 2 days moves the renewal to day 28.
        (_cert(21, 30), _policy(renew_before=2 * 86400), None),
        # The notification threshold (here 10 days) is capped at a sixth of the life
        # (5 days of 30): 9 days left is fine, 4 days left is at risk.
        (_cert(21, 30), _policy(240, 2 * 86400), None),
        (_cert(26, 30), _policy(240, 2 * 86400), "certificate expires 2026-03-05 12:00 UTC"),
        # A 30-minute certificate is not "at risk" from birth under the 24 h default:
        # its threshold is 5 minutes.
        (_cert(1 / (24 * 60), 30 / (24 * 60)), _policy(), None),
        (_cert(26 / (24 * 60), 30 / (24 * 60)), _policy(), "certificate expires 2026-03-01 12:04"),
        (_cert(31, 30), _policy(), "certificate expired"),
        (None, _policy(), "no active certificate"),
    ],
)
def test_at_risk(cert: Certificate | None, policy: RiskPolicy, problem: str | None) -> None:
    entry = CertificateEntry(name="east", renew_before=None, failing_since=None)
    found = entry_health(entry, cert, NOW, policy).problem
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem)


def test_a_failing_entry_is_at_risk_whatever_its_certificate() -> None:
    entry = CertificateEntry(name="east", renew_before=None, failing_since=NOW - DAY)
    health = entry_health(entry, _cert(1, 30), NOW, _policy())
    assert health.problem == "renewal failing since 2026-02-28 12:00 UTC"


def test_the_renewal_time_is_the_loops() -> None:
    """The page's "next renewal" is the loop's own renew_at, entry margin first."""
    cert = _cert(1, 30)
    entry = CertificateEntry(name="east", renew_before=3 * 86400, failing_since=None)
    assert _policy(renew_before=86400).renew_at(entry, cert) == cert.not_after - 3 * DAY
    entry.renew_before = None
    assert _policy().renew_at(entry, cert) == cert.not_after - 10 * DAY
    assert ReconcilePolicy().renew_fraction == 1 / 3  # the third above is the loop's default


async def test_the_dashboard_uses_the_running_loops_policy(web_app: App) -> None:
    """Renewal was due 2 hours ago (day 20 of 30): overdue for the default loop (one
    tick and a 10-minute attempt of grace), not for a loop whose attempts may take 3 h."""
    now = NOW
    with web_app.database.session() as session:
        add_ca(session)
        add_account(session, web_app.box)
        entry = create_entry(session, name="east", spc="123H", acme_account="acct")
        not_before = now - 20 * DAY - dt.timedelta(hours=2)
        session.add(
            Certificate(
                entry_id=entry.id,
                state=CertificateState.ACTIVE,
                not_before=not_before,
                not_after=not_before + 30 * DAY,
                key_ciphertext=b"unused",
            )
        )

    async def dashboard(policy: ReconcilePolicy | None) -> str:
        web = create_web(web_app, clock=lambda: now, policy=policy)
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await sign_in(http, "rita")).status_code == 303
            return (await http.get("/")).text

    assert "east</a> (renewal overdue since" in await dashboard(None)
    patient = ReconcilePolicy(attempt_timeout=3 * 3600)
    assert "All 1 certificate entry is healthy." in await dashboard(patient)
    # A smaller share moves the renewal time itself past now.
    assert "All 1 certificate entry is healthy." in await dashboard(
        ReconcilePolicy(renew_fraction=0.25)
    )
