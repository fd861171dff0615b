"""REST sign and verify: ``opensti serve`` beside secsipidx's HTTP server, same load.

Run on demand: ``.venv/bin/python bench/rest.py [--seconds 10] [--connections 32]``.
Everything listens on 127.0.0.1. Needs ``wrk`` and ``secsipidx`` (Debian packages).
opensti is the installed ``opensti serve`` (see bench/_served.py: a sandbox certificate
through the CLI, a signer token on every request, keep-alive connections), not an app
made for the bench. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from _served import Served, cpu_seconds, free_port, opensti_serve, process_tree, wait_port
from cryptography.hazmat.primitives import serialization

from opensti.sandbox.pki import DemoPKI, private_key_pem

ORIG, DEST = "12155550121", "12155550131"

_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "{ctype}"
{auth}wrk.body = {body}
"""


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: The server's CPU (every process, user + system) per request, when measured: what
    #: a busy machine or a slower day moves far less than the rate.
    cpu_us: float | None = None

    def __str__(self) -> str:
        cpu = "" if self.cpu_us is None else f" cpu {self.cpu_us:4.0f} us/req"
        return (
            f"{self.rate:>8.0f}/s p50 {self.p50_ms:6.2f} ms p99 {self.p99_ms:6.2f} ms"
            f" err {self.errors}{cpu}"
        )


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """secsipidx's x5u repository; nothing to report."""


def _serve_dir(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass(frozen=True)
class Load:
    seconds: int
    connections: int
    threads: int
    work: Path


def _wrk(url: str, body: str, ctype: str, load: Load, auth: str | None = None) -> Run:
    script = load.work / "post.lua"
    header = f'wrk.headers["Authorization"] = "{auth}"\n' if auth else ""
    script.write_text(_LUA.format(ctype=ctype, auth=header, body=json.dumps(body)))
    command = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{load.seconds}s"]
    command += ["--latency", "-s", str(script)]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=load.seconds + 30
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Run(rate, p50, p99, int(errors.group(1)) if errors else 0)


def _post(url: str, body: bytes, ctype: str, auth: str | None = None) -> bytes:
    headers = {"Content-Type": ctype} | ({"Authorization": auth} if auth else {})
    response = httpx.post(url, content=body, headers=headers, timeout=10)
    response.raise_for_status()
    return response.content


def _signing_body() -> str:
    request = {"attest": "A", "dest": {"tn": [DEST]}, "orig": {"tn": ORIG}, "origid": "bench"}
    return json.dumps({"signingRequest": request})


def _verification_body(identity: str) -> str:
    check = {"from": {"tn": ORIG}, "to": {"tn": [DEST]}, "identity": identity}
    return json.dumps({"verificationRequest": check})


def _row(name: str, ours: Run, theirs: Run) -> str:
    ratio = ours.rate / theirs.rate if theirs.rate else float("nan")
    return f"{name:<10} opensti {ours} | secsipidx {theirs} | ratio {ratio:.2f}x"


def _with_cpu(pids: Sequence[int], wrk: Callable[[], Run], seconds: int) -> Run:
    """``wrk()``'s run, with the CPU ``pids`` spent per request meanwhile."""
    before = sum(cpu_seconds(pid) for pid in pids)
    run = wrk()
    spent = sum(cpu_seconds(pid) for pid in pids) - before
    run.cpu_us = spent / (run.rate * seconds) * 1e6 if run.rate else None
    return run


@dataclass
class Peer:
    process: subprocess.Popen[bytes]
    url: str
    x5u: str
    repository: http.server.ThreadingHTTPServer

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)
        self.repository.shutdown()


def _secsipidx(work: Path) -> Peer:
    """secsipidx's HTTP server with a key of its own, its chain on a local repository."""
    pki = DemoPKI(dt.datetime.now(dt.UTC))
    key, cert = pki.issue("1234")
    (work / "chain.pem").write_bytes(pki.chain_pem(cert))
    (work / "key.pem").write_bytes(private_key_pem(key))
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (work / "public.pem").write_bytes(public)
    repository, repo_port = _serve_dir(work)
    port = free_port()
    command = ["secsipidx", "-http-srv", f"127.0.0.1:{port}"]
    command += ["-fprvkey", str(work / "key.pem"), "-fpubkey", str(work / "public.pem")]
    command += ["-expire", "3600", "-timeout", "5"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    x5u = f"http://127.0.0.1:{repo_port}/chain.pem"
    return Peer(process, f"http://127.0.0.1:{port}", x5u, repository)


def _measure(served: Served, peer: Peer, load: Load) -> dict[str, tuple[Run, Run]]:
    ours, auth = served.url, served.auth_header
    theirs, x5u = peer.url, peer.x5u
    json_type, text_type = "application/json", "text/plain"
    signing = _signing_body()
    identity = json.loads(_post(f"{ours}/stir/v1/signing", signing.encode(), json_type, auth))[
        "signingResponse"
    ]["identity"]
    verification = _verification_body(identity)
    answer = json.loads(
        _post(f"{ours}/stir/v1/verification", verification.encode(), json_type, auth)
    )
    assert answer["verificationResponse"]["verstat"] == "TN-Validation-Passed", answer
    csv = f"{ORIG},{DEST},A,bench,{x5u}"
    their_identity = _post(f"{theirs}/v1/sign-csv", csv.encode(), text_type).decode().strip()
    one = Load(load.seconds, 1, 1, load.work)
    our_pids, their_pids = process_tree(served.pid), [peer.process.pid]

    def pair(path: str, body: str, their_path: str, their_body: str, at: Load) -> tuple[Run, Run]:
        def our_run() -> Run:
            return _wrk(f"{ours}{path}", body, json_type, at, auth)

        def their_run() -> Run:
            return _wrk(f"{theirs}{their_path}", their_body, text_type, at)

        seconds = at.seconds
        return _with_cpu(our_pids, our_run, seconds), _with_cpu(their_pids, their_run, seconds)

    return {
        "sign": pair("/stir/v1/signing", signing, "/v1/sign-csv", csv, load),
        "verify": pair("/stir/v1/verification", verification, "/v1/check", their_identity, load),
        "sign -c1": pair("/stir/v1/signing", signing, "/v1/sign-csv", csv, one),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `opensti serve` argument"
    )
    args = parser.parse_args()
    for tool in ("wrk", "secsipidx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="opensti-bench-") as tmp:
        work = Path(tmp)
        (work / "peer").mkdir()
        peer = _secsipidx(work / "peer")
        try:
            with opensti_serve(work / "opensti", args.serve_arg) as served:
                load = Load(args.seconds, args.connections, args.threads, work)
                rows = _measure(served, peer, load)
        finally:
            peer.stop()
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s keep-alive (sign -c1: one"
        f" connection), opensti serve {' '.join(args.serve_arg)}, {os.cpu_count()} CPUs"
    )
    for name, (ours, theirs) in rows.items():
        print(_row(name, ours, theirs))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
