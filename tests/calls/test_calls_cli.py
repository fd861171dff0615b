"""``opensti calls list|show`` through the installed console script, on a real store."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from opensti.calls import CallLog, keyring_certificates
from opensti.signing import SigningService
from opensti.sip import CallRecord
from tests._servers import client_env
from tests._site import SPC, Site

pytestmark = pytest.mark.integration

OPENSTI = Path(sys.executable).with_name("opensti")


def run(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    env = client_env(
        OPENSTI_DATA_DIR=str(site.data_dir),
        OPENSTI_DATABASE_URL=site.database_url,
        COLUMNS="200",
    )
    env.pop("OPENSTI_CONFIG", None)
    return subprocess.run(
        [str(OPENSTI), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture
def logged(site: Site) -> Site:
    """One call signed an hour ago and one verified two days ago."""
    keyring = site.keyring()
    signed = SigningService(keyring).sign("2025550100", "2025550199")
    now = dt.datetime.now(dt.UTC)
    calls = [
        ("signed-1@pbx", "outbound", None, signed.x5u, now - dt.timedelta(hours=1)),
        (
            "verified-1@sbc",
            "inbound",
            "TN-Validation-Passed",
            "https://x.example/c.pem",
            now - dt.timedelta(days=2),
        ),
    ]
    with CallLog(site.database, certificate_for_x5u=keyring_certificates(keyring)) as log:
        for call_id, direction, verstat, x5u, at in calls:
            log(
                CallRecord(
                    time=at.timestamp(),
                    call_id=call_id,
                    direction=direction,
                    orig="12025550100",
                    dest=("12025550199",),
                    attest="C",
                    verstat=verstat,
                    sip_code=302,
                    x5u=x5u,
                )
            )
        assert log.flush()
    return site


def test_list_as_json_with_filters(logged: Site) -> None:
    every = run(logged, "calls", "list", "--json")
    assert every.returncode == 0, every.stderr
    assert [c["call_id"] for c in json.loads(every.stdout)["calls"]] == [
        "signed-1@pbx",
        "verified-1@sbc",
    ]
    recent = json.loads(run(logged, "calls", "list", "--since", "1d", "--json").stdout)
    assert [c["call_id"] for c in recent["calls"]] == ["signed-1@pbx"]
    by_tn = json.loads(run(logged, "calls", "list", "--tn", "+12025550199", "--json").stdout)
    assert len(by_tn["calls"]) == 2
    one = json.loads(run(logged, "calls", "list", "--limit", "1", "--json").stdout)
    assert len(one["calls"]) == 1
    assert one["next_cursor"]
    none = json.loads(run(logged, "calls", "list", "--call-id", "other", "--json").stdout)
    assert none["calls"] == []


def test_list_as_a_table(logged: Site) -> None:
    proc = run(logged, "calls", "list")
    assert proc.returncode == 0, proc.stderr
    assert "signed-1@pbx" in proc.stdout
    assert "TN-Validation-Passed" in proc.stdout


def test_show_names_the_certificate_that_signed(logged: Site) -> None:
    proc = run(logged, "calls", "show", "signed-1@pbx")
    assert proc.returncode == 0, proc.stderr
    assert SPC in proc.stdout
    assert logged.certificate.fingerprint in proc.stdout  # type: ignore[operator]
    assert "CN=" in proc.stdout  # subject and issuer
    document = json.loads(run(logged, "calls", "show", "signed-1@pbx", "--json").stdout)
    cert = document["records"][0]["certificate"]
    assert cert["certificate_id"] == logged.certificate.id
    assert cert["spc"] == SPC
    assert cert["not_after"] == logged.certificate.not_after.isoformat()  # type: ignore[union-attr]


def test_show_a_verified_call_gives_its_x5u(logged: Site) -> None:
    proc = run(logged, "calls", "show", "verified-1@sbc")
    assert proc.returncode == 0, proc.stderr
    assert "https://x.example/c.pem" in proc.stdout
    assert "not ours" in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("calls", "show", "missing@x"), 3, "no call with Call-ID 'missing@x'"),
        (("calls", "list", "--since", "yesterday"), 2, "--since 'yesterday'"),
        (("calls", "list", "--limit", "0"), 2, "limit"),
    ],
)
def test_errors_are_one_line(logged: Site, args: tuple[str, ...], code: int, message: str) -> None:
    proc = run(logged, *args)
    assert proc.returncode == code
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
