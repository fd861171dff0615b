"""Which entry signs which call, from the command line to ``opensti serve``'s SIP sign
listener: the README's flow, prefixes, the default signer, edit, disable and remove,
with the console script against a real sandbox and SIPp as the SBC."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.sip.message import SIPResponse
from tests._servers import client_env, free_port, free_udp_port
from tests.cli.test_cli_certificates import (
    OPENSTI,
    _account,
    assert_refused,
    run,
    run_json,
    world,
)
from tests.lifecycle.acquire_support import World
from tests.sandbox.conftest import clock, sandbox_factory
from tests.sip.sip_support import needs_sipp, request, run_sipp, udp_client

__all__ = ["clock", "sandbox_factory", "world"]

pytestmark = pytest.mark.integration

WEST_CALLER = "12025550100"


def _readme_flow(world: World) -> dict[str, Any]:
    """The README's "From nothing to a SHAKEN certificate" commands; the entries."""
    _account(world)
    run_json(
        world,
        *("stipa", "set", "--account-id", "123H", "--user-id", "demo", "--password-stdin"),
        *("--base-url", world.sandbox.stipa_base_url),
        stdin="demo-password\n",
    )
    for name, spc in (("east", "123H"), ("west", "456J")):
        run_json(world, "cert", "add", "--name", name, "--spc", spc, "--stipa", "123H",
                 "--account", "sandbox")  # fmt: skip
    first = run(world, "cert", "request", "east")
    assert first.returncode == 0, first.stderr
    assert "entry 'east' is the default signer" in first.stdout  # one obvious start
    second = run_json(world, "cert", "request", "west")
    assert second["notes"] == []  # the default stays where it is
    return {entry["name"]: entry for entry in run_json(world, "cert", "list")}


@contextmanager
def _serving(
    world: World,
    errors: list[str] | None = None,
    *,
    port: int | None = None,
    listen: Sequence[str] = (),
) -> Iterator[tuple[str, tuple[str, int]]]:
    """``opensti serve`` with a UDP sign listener (and the ``listen`` ones); its base URL
    and SIP address (and, after it stopped, what it wrote to stderr in ``errors``)."""
    port = port or free_port()
    sip = ("127.0.0.1", free_udp_port())
    command = [
        str(OPENSTI), "serve", "--insecure-http", f"--port={port}", "--no-worker",
        "--sip-listen=" + ",".join([f"udp:{sip[0]}:{sip[1]}/sign", *listen]),
    ]  # fmt: skip
    server = subprocess.Popen(
        command, env=client_env(**world.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()
        match = re.search(r"serving on (http://\S+)", line)
        assert match, line
        yield match.group(1), sip
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
        assert server.returncode == 0, stderr.decode()
        if errors is not None:
            errors.extend(stderr.decode().splitlines())


def _invite(address: tuple[str, int], caller: str, call_id: str) -> SIPResponse:
    invite = request(
        from_=f"<sip:+{caller}@127.0.0.1;user=phone>;tag=r1",
        to="<sip:+12155550131@127.0.0.1;user=phone>",
        uri="sip:+12155550131@127.0.0.1;user=phone",
        call_id=call_id,
    )

    async def exchange() -> SIPResponse:
        async with udp_client(address) as client:
            return await client.exchange(invite)

    return asyncio.run(exchange())


def _signer(response: SIPResponse) -> tuple[str | None, str | None]:
    """The x5u and attestation of the 302's Identity, or (None, None) without one."""
    value = response.header("identity")
    if value is None:
        return None, None
    header = parse_identity(value)
    return header.info, decode_passport(header.token).payload["attest"]


def _eventually(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """The serve process reloads its entries from the store within about a second."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _calls(world: World, call_id: str) -> list[dict[str, Any]]:
    return run_json(world, "calls", "list", "--call-id", call_id)["calls"]  # type: ignore[no-any-return]


@needs_sipp
def test_the_readme_flow_ends_in_an_invite_signed_by_the_default_entry(
    world: World, tmp_path: Path
) -> None:
    entries = _readme_flow(world)
    east, west = entries["east"], entries["west"]
    assert (east["default_signer"], west["default_signer"]) == (True, False)
    with _serving(world) as (_base, sip):
        asyncio.run(run_sipp(f"{sip[0]}:{sip[1]}", "sign_default.xml", tmp_path, calls=3))
    signed = run_json(world, "calls", "list", "--tn", "12155550121")["calls"]
    assert len(signed) == 3
    assert {(c["action"], c["sip_code"], c["certificate_id"]) for c in signed} == {
        ("signed", 302, east["active"]["id"])
    }
    assert {c["x5u"] for c in signed} == {east["active"]["x5u"]}
    assert {c["attest"] for c in signed} == {"C"}  # the entry's default: C unless set


def test_two_entries_with_prefixes_sign_their_own_calls_and_edits_apply_live(
    world: World,
) -> None:
    entries = _readme_flow(world)
    east_x5u, west_x5u = entries["east"]["active"]["x5u"], entries["west"]["active"]["x5u"]
    changed = run_json(world, "cert", "set", "west", "--prefix", "1202", "--attest", "B")
    assert (changed["prefixes"], changed["attest"]) == (["1202"], "B")
    run_json(world, "cert", "set", "east", "--attest", "A")
    with _serving(world) as (base, sip):
        assert httpx.get(f"{base}/health", trust_env=False).json() == {"status": "ok"}
        assert _signer(_invite(sip, "12155550121", "east-1@t")) == (east_x5u, "A")
        assert _signer(_invite(sip, WEST_CALLER, "west-1@t")) == (west_x5u, "B")

        # Disabled, west signs nothing: its callers fall to the default signer.
        assert run_json(world, "cert", "set", "west", "--disable")["enabled"] is False
        _eventually(
            lambda: _signer(_invite(sip, WEST_CALLER, "west-2@t"))[0] == east_x5u,
            "the default signer to take west's calls",
        )
        # Removed, its chain stays published until it expires.
        removed = run_json(world, "cert", "remove", "west", "--yes")
        assert removed == {"name": "west", "still_published": 1, "revoked": []}
        chain = httpx.get(west_x5u.replace("https://sti-cr.example.net", base), trust_env=False)
        assert chain.status_code == 200

        # No default signer: the call goes on unsigned, and the log and /health say why.
        unset = run(world, "cert", "set", "east", "--no-default-signer")
        assert "no entry is, so calls that no prefix claims are not signed" in unset.stdout

        def unsigned() -> bool:
            return _signer(_invite(sip, "12155550121", "unsigned@t")) == (None, None)

        _eventually(unsigned, "calls to go on unsigned")
        health = httpx.get(f"{base}/health", trust_env=False).json()
        assert health["status"] == "degraded"
        assert "no entry is the default signer" in health["problems"][0]
    [call, *_] = _calls(world, "unsigned@t")
    assert (call["action"], call["sip_code"]) == ("not-signed", 302)
    assert "no signing entry covers calling number 12155550121" in call["reason"]


def test_routing_bad_input_is_refused_and_changes_nothing(world: World) -> None:
    _readme_flow(world)
    run_json(world, "cert", "set", "west", "--prefix", "1202")
    set_east = ("cert", "set", "east")
    assert_refused(world, 4, "prefix 1202 already belongs to entry 'west'", *set_east,
                   "--prefix", "1301", "--prefix", "1202")  # fmt: skip
    assert_refused(world, 2, "prefix '12a4' is not valid", *set_east, "--prefix", "12a4")
    assert_refused(world, 2, "attestation 'D' is not A, B or C", *set_east, "--attest", "D")
    assert_refused(world, 4, "entry 'east' is the default signer and cannot be removed",
                   "cert", "remove", "east", "--yes")  # fmt: skip
    assert_refused(world, 4, "entry 'east' is the default signer and cannot be disabled",
                   *set_east, "--disable")  # fmt: skip
    assert_refused(world, 2, "nothing to change", *set_east)
    assert_refused(world, 3, "no certificate entry", "cert", "set", "nope", "--enable")
    assert_refused(world, 4, "used by entry(ies) 'east', 'west'", "account", "remove", "sandbox")
    assert_refused(world, 4, "used by ACME account(s) 'sandbox'", "ca", "remove", "sandbox")
    # A second default signer moves the role, and says so.
    moved = run(world, "cert", "set", "west", "--default-signer")
    assert moved.returncode == 0, moved.stderr
    assert "entry 'east' is no longer the default signer" in moved.stdout
    listed = {e["name"]: e["default_signer"] for e in run_json(world, "cert", "list")}
    assert listed == {"east": False, "west": True}
    # Without --yes, removal asks first; "no" keeps the entry.
    declined = run(world, "cert", "remove", "east", stdin="n\n")
    assert declined.returncode == 130  # aborted
    assert "east" in {e["name"] for e in run_json(world, "cert", "list")}


def test_cert_add_takes_the_routing_options(world: World) -> None:
    _account(world)
    run_json(
        world,
        *("stipa", "set", "--account-id", "123H", "--user-id", "demo", "--password-stdin"),
        *("--base-url", world.sandbox.stipa_base_url),
        stdin="demo-password\n",
    )
    added = run_json(world, "cert", "add", "--name", "main", "--spc", "123H", "--stipa", "123H",
                     "--account", "sandbox", "--prefix", "+1215", "--prefix", "1301",
                     "--attest", "b", "--default-signer")  # fmt: skip
    assert (added["prefixes"], added["attest"], added["default_signer"]) == (
        ["1215", "1301"],
        "B",
        True,
    )
    assert "1215" in added["signs"]
    assert "default signer" in added["signs"]
    shown = run(world, "cert", "show", "main").stdout
    assert "calls from numbers starting 1215, 1301" in shown
    removed = run_json(world, "cert", "remove", "main", "--yes")
    assert removed["still_published"] == 0
    assert json.loads(run(world, "cert", "list", "--json").stdout) == []
    run_json(world, "account", "remove", "sandbox")
    run_json(world, "ca", "remove", "sandbox")


def test_serve_says_at_start_which_sign_listener_no_entry_can_serve(world: World) -> None:
    errors: list[str] = []
    with _serving(world, errors) as (base, sip):
        health = httpx.get(f"{base}/health", trust_env=False).json()
        response = _invite(sip, "12155550121", "no-entry@t")
    assert health == {
        "status": "degraded",
        "problems": ["no enabled signing entry: no call is signed (opensti cert add ...)"],
    }
    assert (response.status, response.header("identity")) == (302, None)
    assert f"warning: sign listener udp:{sip[0]}:{sip[1]}/sign: no enabled signing entry" in (
        "\n".join(errors)
    )
