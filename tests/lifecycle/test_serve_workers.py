"""``opensti serve --workers N``: forked processes answer HTTP and SIP (UDP and TCP) on
the same sockets, with the same credentials, and stop with the parent."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests._servers import child_pids, free_udp_port
from tests.lifecycle.test_serve_doors import OPENSTI, SIGNING, _env, _free_port, _run

pytestmark = pytest.mark.integration


def _signs_as_sbc(url: str, token: str) -> int:
    """A request on a new connection (so any worker may take it); its status."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        return http.post("/stir/v1/signing", json=SIGNING, headers=headers).status_code


def _sip_options(transport: str, port: int) -> str:
    """One OPTIONS request over UDP or TCP; the status line of the answer."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{local};branch=z9hG4bK-{local}\r\n"
            f"From: <sip:test@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\n"
            f"Call-ID: ping-{local}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendall(request.encode())
        return sock.recv(65536).decode().split("\r\n", 1)[0]


def test_a_forked_worker_answers_while_the_first_process_is_stopped(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = _run(data_dir, "token", "create", "--role", "signer", "--name", "sbc")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    command = [OPENSTI, "--data-dir", str(data_dir), "serve", "--no-worker", "--insecure-http"]
    udp, tcp = free_udp_port(), _free_port()
    command += ["--port", str(_free_port()), "--workers", "2"]
    command += ["--sip-listen", f"udp:127.0.0.1:{udp}/sign,tcp:127.0.0.1:{tcp}/sign"]
    node = subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        match = re.search(r"serving on (\S+)", node.stdout.readline())
        assert match, node.stderr.read() if node.stderr else ""
        url = match.group(1)
        (worker,) = child_pids(node.pid)
        # No signing entry here: 404 NoSigningEntry says the token was accepted.
        assert _signs_as_sbc(url, token) == 404
        os.kill(node.pid, signal.SIGSTOP)  # only the forked worker can accept now
        try:
            assert [_signs_as_sbc(url, token) for _ in range(5)] == [404] * 5
            assert _signs_as_sbc(url, "osti_not-a-token") == 401
            # SIP too: the worker reads the shared UDP socket and accepts on the TCP one.
            assert [_sip_options("udp", udp) for _ in range(5)] == ["SIP/2.0 200 OK"] * 5
            assert _sip_options("tcp", tcp) == "SIP/2.0 200 OK"
        finally:
            os.kill(node.pid, signal.SIGCONT)
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, node.stderr.read() if node.stderr else ""
        assert not Path(f"/proc/{worker}").exists()  # stopped and reaped by the parent
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
