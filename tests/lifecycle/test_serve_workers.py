"""``opensti serve --http-workers N``: forked processes answer HTTP on the same socket,
with the same credentials, and stop with the parent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests._servers import child_pids
from tests.lifecycle.test_serve_doors import OPENSTI, SIGNING, _env, _free_port, _run

pytestmark = pytest.mark.integration


def _signs_as_sbc(url: str, token: str) -> int:
    """A request on a new connection (so any worker may take it); its status."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        return http.post("/stir/v1/signing", json=SIGNING, headers=headers).status_code


def test_a_forked_worker_answers_while_the_first_process_is_stopped(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = _run(data_dir, "token", "create", "--role", "signer", "--name", "sbc")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    command = [OPENSTI, "--data-dir", str(data_dir), "serve", "--no-worker", "--insecure-http"]
    command += ["--port", str(_free_port()), "--http-workers", "2"]
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
        finally:
            os.kill(node.pid, signal.SIGCONT)
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, node.stderr.read() if node.stderr else ""
        assert not Path(f"/proc/{worker}").exists()  # stopped and reaped by the parent
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
