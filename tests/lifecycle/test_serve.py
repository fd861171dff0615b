"""``opensti serve`` as a real subprocess: it gets the certificates, publishes them on
the STI-CR, signs with them through the STIR API, switches signing to a renewed
certificate without a restart, and stops cleanly on SIGTERM; plain HTTP is refused
off loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opensti.calls import list_calls
from opensti.lifecycle.reconcile import request_renewal
from opensti.sip.message import SIPResponse
from opensti.store import get_entry
from tests._servers import free_udp_port, make_tls_files
from tests.lifecycle.cluster_support import serve_node, signed_x5u
from tests.lifecycle.reconcile_support import World, start_world
from tests.sip.sip_support import request, udp_client

pytestmark = pytest.mark.integration

OPENSTI = str(Path(sys.executable).with_name("opensti"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_world(tmp_path, repository=False) as started:
        started.add_entries("123H")
        yield started


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_serve_publishes_signs_and_follows_renewals(world: World) -> None:
    # The world's public base URL names a free port (no STI-CR of its own runs there).
    port = int(world.base_url.rpartition(":")[2])
    with serve_node(world, "--tick=0.2", port=port) as base_url:
        assert base_url == world.base_url
        _wait(lambda: world.active("e123H") is not None, 30, "the first certificate")
        first = world.active("e123H")
        assert first is not None
        assert first.x5u_url == f"{world.base_url}/sti-cr/{first.id}.pem"
        _wait(lambda: world.valid_published("e123H"), 10, "the chain on the STI-CR")
        assert httpx.get(f"{world.base_url}/health", trust_env=False).status_code == 200
        _wait(lambda: signed_x5u(world.base_url) == first.x5u_url, 10, "signing with it")

        request_renewal(world.app.database, "e123H")
        _wait(lambda: world.active("e123H").id != first.id, 30, "the renewal")  # type: ignore[union-attr]
        second = world.active("e123H")
        assert second is not None
        # Signing follows without a restart; the old chain stays published.
        _wait(lambda: signed_x5u(world.base_url) == second.x5u_url, 10, "signing with the new one")
        assert first.x5u_url is not None
        assert httpx.get(first.x5u_url, trust_env=False).status_code == 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--insecure-http", "--host=0.0.0.0"], "only allowed on a loopback"),
        ([], "must be served over HTTPS"),
        (["--tls-cert=/nonexistent.pem"], "both --tls-cert and --tls-key"),
    ],
)
def test_serve_refuses_an_unsafe_front(world: World, options: list[str], message: str) -> None:
    result = subprocess.run(
        [OPENSTI, "serve", *options], env=world.env(), capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert message in result.stderr.decode()


def _cli(world: World, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSTI, *args], env=world.env(), capture_output=True, timeout=120)


def test_cert_status_and_renew_commands(world: World) -> None:
    [before] = json.loads(_cli(world, "cert", "status", "--json").stdout)
    assert (before["name"], before["certificate_id"], before["next_renewal"]) == (
        "e123H",
        None,
        None,
    )
    renewed = _cli(world, "cert", "renew", "e123H", "--now", "--json")
    assert renewed.returncode == 0, renewed.stderr.decode()
    result = json.loads(renewed.stdout)
    active = world.active("e123H")
    assert active is not None
    assert (result["outcome"], result["certificate_id"]) == ("activated", active.id)
    assert result["steps"][-1] == "activate"
    [after] = json.loads(_cli(world, "cert", "status", "--json").stdout)
    assert after["certificate_id"] == active.id
    assert after["x5u"] == active.x5u_url
    assert after["not_after"] == active.not_after.isoformat()
    table = _cli(world, "cert", "status").stdout.decode()
    assert "e123H" in table
    assert "ok" in table

    queued = _cli(world, "cert", "renew", "e123H")
    assert queued.returncode == 0
    assert "renewal requested" in queued.stdout.decode()
    once = _cli(world, "worker", "--once")
    assert once.returncode == 0, once.stderr.decode()
    assert "e123H: activated" in once.stdout.decode()
    assert world.active("e123H").id != active.id  # type: ignore[union-attr]

    missing = _cli(world, "cert", "renew", "nope", "--now")
    assert missing.returncode == 3
    assert "no certificate entry" in missing.stderr.decode()


def test_serve_over_https_publishes_the_chain(world: World, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    port = int(world.base_url.rpartition(":")[2])
    env = {**world.env(), "OPENSTI_PUBLIC_BASE_URL": f"https://127.0.0.1:{port}"}
    command = [
        OPENSTI, "serve", f"--port={port}", "--tick=0.2",
        f"--tls-cert={tls.cert_pem}", f"--tls-key={tls.key_pem}",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert f"https://127.0.0.1:{port}" in server.stdout.readline().decode()
        _wait(lambda: world.active("e123H") is not None, 30, "the first certificate")
        active = world.active("e123H")
        assert active is not None
        assert active.x5u_url == f"https://127.0.0.1:{port}/sti-cr/{active.id}.pem"
        context = ssl.create_default_context(cafile=str(tls.root_pem))
        response = httpx.get(active.x5u_url, verify=context, trust_env=False)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pem-certificate-chain"
        assert world.chain_valid(response.content, "123H", world.clock())
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


async def _invite(address: tuple[str, int], call_id: str) -> SIPResponse:
    invite = request(
        from_="<sip:+12025550100@127.0.0.1;user=phone>;tag=a1",
        to="<sip:+12025550101@127.0.0.1;user=phone>",
        uri="sip:+12025550101@127.0.0.1;user=phone",
        call_id=call_id,
    )
    async with udp_client(address) as client:
        return await client.exchange(invite)


def test_serve_logs_sip_calls_with_the_signing_certificate(world: World) -> None:
    with world.app.database.session() as session:
        get_entry(session, "e123H").is_default_signer = True  # it signs every call
    port = int(world.base_url.rpartition(":")[2])
    sip_port = free_udp_port()
    command = [
        OPENSTI, "serve", "--insecure-http", f"--port={port}", "--tick=0.2",
        f"--sip-listen=udp:127.0.0.1:{sip_port}/sign",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=world.env(), stdout=subprocess.PIPE)
    try:
        _wait(lambda: world.active("e123H") is not None, 30, "the first certificate")
        active = world.active("e123H")
        assert active is not None
        _wait(lambda: signed_x5u(world.base_url) == active.x5u_url, 10, "signing with it")
        response = asyncio.run(_invite(("127.0.0.1", sip_port), "logged-call@test"))
        assert response.status == 302
        assert response.header("Identity")
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    # The call log is flushed on shutdown: the call is there with its certificate.
    with world.app.database.read_session() as session:
        rows = list_calls(session, call_id="logged-call@test").calls
        assert [(r.from_tn, r.to_tn, r.certificate_id) for r in rows] == [
            ("12025550100", "12025550101", active.id)
        ]
