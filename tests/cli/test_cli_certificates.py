"""``opensti ca|account|stipa|cert|token`` and ``opensti demo`` through the installed
console script, against a real sandbox on 127.0.0.1, the store in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opensti.core.certs import TrustContext, load_certificate_chain, validate_shaken_certificate
from opensti.store import Secret, authenticate_api_token
from tests._servers import client_env
from tests.lifecycle.acquire_support import World, make_world, snapshot
from tests.sandbox.conftest import SandboxFactory, clock, sandbox_factory

__all__ = ["clock", "sandbox_factory"]

pytestmark = pytest.mark.integration

OPENSTI = Path(sys.executable).with_name("opensti")


def run(world: World, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OPENSTI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        env=client_env(**world.env),
        check=False,
    )


def run_json(world: World, *args: str, stdin: str | None = None) -> Any:
    proc = run(world, *args, "--json", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_refused(world: World, code: int, message: str, *args: str, stdin: str = "") -> None:
    """Exit ``code``, one ``error:`` line naming the problem, and an unchanged store."""
    before = snapshot(world.app.database)
    proc = run(world, *args, stdin=stdin)
    assert proc.returncode == code, proc
    assert proc.stderr.startswith("error: "), proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(world.app.database) == before


@pytest.fixture
def world(sandbox_factory: SandboxFactory, tmp_path: Path) -> Iterator[World]:
    made = make_world(sandbox_factory(), tmp_path)
    yield made
    made.app.close()


def _account(world: World) -> dict[str, Any]:
    url = world.sandbox.ca_directory_url
    run_json(world, "ca", "add", "sandbox", "--directory-url", url, "--honours-validity")
    kid, key = world.sandbox.state.add_eab()
    return run_json(
        world,
        *("account", "add", "--ca", "sandbox", "--email", "ops@example.net", "--agree-tos"),
        *("--eab-kid", kid, "--eab-hmac-key", key),
    )


def test_the_issue_flow_from_the_command_line(world: World) -> None:
    added = _account(world)
    shown = run_json(world, "account", "show", "sandbox")
    assert shown["thumbprint"] == added["thumbprint"]
    assert shown["fingerprint"].startswith("SHA256 ")
    assert shown["account_url"].startswith(world.sandbox.base_url)
    stipa = run_json(
        world,
        *("stipa", "set", "--account-id", "123H", "--user-id", "demo", "--password-stdin"),
        *("--base-url", world.sandbox.stipa_base_url),
        stdin="demo-password\n",
    )
    assert stipa["user_id"] == "demo"
    assert "OK: logged in" in run(world, "stipa", "test").stdout
    chains = {}
    for spc in ("123H", "456J"):
        run_json(
            world,
            "cert",
            "add",
            "--name",
            spc,
            "--spc",
            spc,
            "--account",
            "sandbox",
            "--stipa",
            "123H",
        )
        proc = run(world, "cert", "request", spc, "--json")
        assert proc.returncode == 0, proc.stderr
        assert "tkauth-01 answered with the SPC token" in proc.stderr
        chains[spc] = json.loads(proc.stdout)["certificate"]
    listed = {entry["spc"]: entry["active"] for entry in run_json(world, "cert", "list")}
    assert listed == chains
    out = world.data_dir / "export"
    files = run_json(world, "cert", "export", "456J", "--out", str(out))["files"]
    chain = load_certificate_chain(Path(files[0]).read_bytes())
    trust = TrustContext(anchors=world.sandbox.trust_anchors)
    assert validate_shaken_certificate(chain, trust, chain.leaf.not_valid_before_utc).spc == "456J"


def test_copy_without_a_clipboard_is_not_an_error(world: World) -> None:
    _account(world)
    proc = subprocess.run(
        [str(OPENSTI), "account", "show", "sandbox", "--copy"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**client_env(**world.env), "PATH": str(OPENSTI.parent)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no clipboard tool is available" in proc.stderr


def test_token_create_prints_the_token_once(world: World) -> None:
    created = run_json(world, "token", "create", "--role", "operator", "--name", "ci")
    assert created["role"] == "operator"
    with world.app.database.read_session() as session:
        token = Secret.from_text(created["token"])
        row = authenticate_api_token(session, token, now=dt.datetime.now(dt.UTC))
    assert row is not None
    assert row.name == "ci"
    assert_refused(
        world,
        2,
        "role 'root' is not one of admin, operator, read-only",
        "token",
        "create",
        "--role",
        "root",
    )


def test_bad_input_on_the_command_line(world: World, tmp_path: Path) -> None:
    _account(world)
    base = ("stipa", "set", "--account-id", "123H", "--user-id")
    assert_refused(world, 2, "at most 255", *base, "u" * 256, "--password-stdin", stdin="pw")
    assert_refused(world, 2, "at most 189", *base, "demo", "--password-stdin", stdin="p" * 190)
    assert_refused(
        world,
        2,
        "EAB HMAC key is not base64url",
        *("account", "add", "--ca", "sandbox", "--email", "a@example.net", "--agree-tos"),
        *("--eab-kid", "k", "--eab-hmac-key", "a+b/c"),
    )
    assert_refused(
        world,
        3,
        "unknown CA 'nosuch'",
        "account",
        "add",
        "--ca",
        "nosuch",
        "--email",
        "a@example.net",
        "--agree-tos",
    )
    assert_refused(
        world,
        5,
        "CA refused: urn:ietf:params:acme:error:",
        *("account", "add", "--ca", "sandbox", "--email", "a@example.net", "--agree-tos"),
        *("--eab-kid", "kid-unknown", "--eab-hmac-key", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"),
    )
    token = tmp_path / "token.json"
    token.write_text("not a token")
    entry = ("cert", "add", "--name", "x", "--account", "sandbox")
    assert_refused(
        world, 2, "SPC 'ABCDE' is not valid", *entry, "--spc", "ABCDE", "--stipa", "123H"
    )
    assert_refused(
        world,
        2,
        "neither the STI-PA's JSON answer nor a JWT",
        *entry,
        "--spc",
        "123H",
        "--token-file",
        str(token),
    )
    run(
        world,
        *base,
        "demo",
        "--password-stdin",
        "--base-url",
        world.sandbox.stipa_base_url,
        stdin="wrong",
    )
    assert_refused(world, 5, "STI-PA refused the login of user 'demo': HTTP 401", "stipa", "test")


@pytest.mark.slow
def test_demo_runs_offline_and_exits_zero(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(OPENSTI), "demo", "--data-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("TN-Validation-Passed") == 2
    assert "JWK thumbprint:" in proc.stdout
    assert "/sti-cr/1.pem" in proc.stdout
    assert (tmp_path / "demo" / "files" / "demo-123H-chain.pem").exists()


@pytest.mark.slow
def test_demo_shows_renewals_with_short_lived_certificates(tmp_path: Path) -> None:
    # 90-second certificates issued 30 s back-dated are renewed with 30 s left, about
    # 30 s after they are issued.
    proc = subprocess.run(
        [str(OPENSTI), "demo", "--data-dir", str(tmp_path / "demo"), "--watch-renewals", "50"],
        capture_output=True,
        text=True,
        timeout=240,
        env=client_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    renewed = re.findall(r"renewed (demo-\w+): certificate #(\d+)", proc.stdout)
    assert {name for name, _ in renewed} == {"demo-123H", "demo-456J"}, proc.stdout
    # New certificates, not the two the demo started with.
    assert all(int(number) > 2 for _, number in renewed)


def _entry(world: World, spc: str) -> None:
    _account(world)
    run_json(
        world,
        *("stipa", "set", "--account-id", "123H", "--user-id", "demo", "--password-stdin"),
        *("--base-url", world.sandbox.stipa_base_url),
        stdin="demo-password\n",
    )
    run_json(
        world,
        *("cert", "add", "--name", spc, "--spc", spc, "--account", "sandbox"),
        *("--stipa", "123H"),
    )


def test_a_failed_request_prints_its_steps_in_order_and_the_failure_once(world: World) -> None:
    _entry(world, "123H")
    world.sandbox.state.faults.no_tnauthlist = True
    proc = run(world, "cert", "request", "123H")
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    marks = [line[0] for line in lines if line[:1] in "✓✗"]
    assert marks == ["✓"] * (len(marks) - 1) + ["✗"], proc.stderr
    [failed] = [line for line in lines if line.startswith("✗")]
    assert "TNAuthList" in failed, failed
    assert "trust list" not in failed, failed
    errors = [line for line in lines if "no TNAuthList" in line]
    assert len(errors) == 1, proc.stderr

    # Fixed at the CA; without a public base URL the summary says what that means.
    world.sandbox.state.faults.no_tnauthlist = False
    del world.env["OPENSTI_PUBLIC_BASE_URL"]
    proc = run(world, "cert", "request", "123H")
    assert proc.returncode == 0, proc.stderr
    assert "x5u: none: no public base URL is set (OPENSTI_PUBLIC_BASE_URL)" in proc.stdout
    assert "cannot be verified there" in proc.stdout


def test_ca_list_shows_the_tkauth_field_and_fingerprint_method(world: World) -> None:
    url = world.sandbox.ca_directory_url
    run_json(world, "ca", "add", "sandbox", "--directory-url", url, "--tkauth-field", "tkauth")
    [listed] = [ca for ca in run_json(world, "ca", "list") if ca["name"] == "sandbox"]
    assert listed["tkauth_field"] == "tkauth"
    assert listed["fingerprint_algorithm"] == "jwk_thumbprint"
    world.env["COLUMNS"] = "200"  # one line per CA
    table = run(world, "ca", "list").stdout
    assert "tkauth field" in table
    assert "fingerprint" in table
    [row] = [line for line in table.splitlines() if "sandbox" in line]
    assert "tkauth" in row
    assert "jwk_thumbprint" in row
