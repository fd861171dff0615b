"""``opensti serve`` as users run it, for the benchmarks: the installed console script,
a certificate from ``opensti sandbox`` through the README's CLI flow, and a signer token.

Everything listens on 127.0.0.1. The STI-CR is the served node's own (plain HTTP on
loopback, so the verifier is told to fetch ``http`` x5u from 127.0.0.1): the first
verification fetches the chain, every later one finds it cached.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OPENSTI",
    "Served",
    "cpu_seconds",
    "free_port",
    "opensti_serve",
    "process_tree",
    "wait_port",
]

OPENSTI = shutil.which("opensti", path=str(Path(sys.executable).parent)) or "opensti"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it (a server's forked workers)."""
    found = [pid]
    for child in _children(pid):
        found += process_tree(child)
    return found


@dataclass(frozen=True)
class Served:
    url: str
    token: str
    pid: int

    @property
    def auth_header(self) -> str:
        return f"Bearer {self.token}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> dict[str, object]:
    done = subprocess.run(
        [OPENSTI, *args, "--json"], env=env, input=stdin, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"opensti {' '.join(args)} failed: {done.stderr.strip()}")
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def opensti_serve(work: Path, serve_args: Sequence[str] = ()) -> Iterator[Served]:
    """A sandbox STI-PA/STI-CA, one entry with a certificate (the default signer), a
    signer token, and ``opensti serve --insecure-http`` on loopback with ``serve_args``."""
    sandbox_port, port = free_port(), free_port()
    sandbox_dir = work / "sandbox"
    sandbox = subprocess.Popen(
        [OPENSTI, "sandbox", "--data-dir", str(sandbox_dir), "--port", str(sandbox_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    processes = [sandbox]
    try:
        wait_port(sandbox_port)
        sandbox_url = f"https://127.0.0.1:{sandbox_port}"
        env = {
            **os.environ,
            "OPENSTI_DATA_DIR": str(work / "opensti"),
            "OPENSTI_TLS_CA_FILE": str(sandbox_dir / "tls" / "root.pem"),
            "OPENSTI_STIPA_TRUST_ANCHORS": str(sandbox_dir / "sti-pa.pem"),
            "OPENSTI_CA_TRUST_ANCHORS": str(sandbox_dir / "trust-anchors.pem"),
            "OPENSTI_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "OPENSTI_X5U_ALLOW_HTTP": "true",
            "OPENSTI_X5U_PRIVATE_HOSTS": "127.0.0.1",
            "OPENSTI_LOG_LEVEL": "WARNING",
        }
        eab = _cli(env, "sandbox", "add-eab", "--data-dir", str(sandbox_dir))
        _cli(env, "ca", "add", "bench", "--directory-url", f"{sandbox_url}/acme/directory")
        _cli(env, "account", "add", "--ca", "bench", "--email", "noc@example.net", "--agree-tos",
             "--eab-kid", str(eab["kid"]), "--eab-hmac-key", str(eab["hmac_key"]))  # fmt: skip
        _cli(env, "stipa", "set", "--account-id", "123H", "--user-id", "demo",
             "--password-stdin", "--base-url", sandbox_url, stdin="demo-password\n")  # fmt: skip
        _cli(env, "cert", "add", "--name", "bench", "--spc", "123H", "--stipa", "123H",
             "--account", "bench", "--default-signer", "--attest", "A")  # fmt: skip
        _cli(env, "cert", "request", "bench")
        token = str(_cli(env, "token", "create", "--role", "signer", "--name", "sbc")["token"])
        command = [OPENSTI, "serve", "--insecure-http", "--port", str(port), "--no-worker"]
        serve = subprocess.Popen(
            [*command, *serve_args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        processes.append(serve)
        assert serve.stdout is not None
        line = serve.stdout.readline().decode()
        if not re.search(r"serving on http://", line):
            raise SystemExit(f"opensti serve did not start: {line!r}")
        yield Served(f"http://127.0.0.1:{port}", token, serve.pid)
    finally:
        for process in reversed(processes):
            _stop(process)
