"""REST sign and verify: opensti's STIR API beside secsipidx's HTTP server, same load.

Run on demand: ``.venv/bin/python bench/rest.py [--seconds 10] [--connections 32]``.
Everything listens on 127.0.0.1. Needs ``wrk`` and ``secsipidx`` (Debian packages) and
granian (``pip install -e '.[bench]'``; falls back to uvicorn). See bench/README.md.
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
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from opensti.sandbox.pki import DemoPKI, private_key_pem

HERE = Path(__file__).resolve().parent
ORIG, DEST = "12155550121", "12155550131"

_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "{ctype}"
wrk.body = {body}
"""


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """The x5u repository is fetched once per worker; nothing to report."""


def _serve_dir(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wrk(url: str, body: str, ctype: str, seconds: int, connections: int, work: Path) -> Run:
    script = work / "post.lua"
    script.write_text(_LUA.format(ctype=ctype, body=json.dumps(body)))
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Run(rate, p50, p99, int(errors.group(1)) if errors else 0)


def _post(url: str, body: bytes, ctype: str) -> bytes:
    response = httpx.post(url, content=body, headers={"Content-Type": ctype}, timeout=10)
    response.raise_for_status()
    return response.content


def _start_opensti(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if shutil.which("granian", path=str(Path(sys.executable).parent)) or shutil.which("granian"):
        granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or "granian"
        command = [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--workers", str(workers), "--no-ws", "--log-level", "warning"]
        command += ["_stir_app:app"]
    else:
        command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--workers", str(workers), "--log-level", "warning", "_stir_app:app"]
    return subprocess.Popen(command, cwd=HERE, env=env)


def _signing_body() -> str:
    request = {"attest": "A", "dest": {"tn": [DEST]}, "orig": {"tn": ORIG}, "origid": "bench"}
    return json.dumps({"signingRequest": request})


def _row(name: str, ours: Run, theirs: Run) -> str:
    ratio = ours.rate / theirs.rate if theirs.rate else float("nan")
    return (
        f"{name:<7} opensti {ours.rate:>9.0f}/s p50 {ours.p50_ms:6.2f} ms p99 {ours.p99_ms:6.2f} ms"
        f" err {ours.errors} | secsipidx {theirs.rate:>9.0f}/s p50 {theirs.p50_ms:6.2f} ms"
        f" p99 {theirs.p99_ms:6.2f} ms err {theirs.errors} | ratio {ratio:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    for tool in ("wrk", "secsipidx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="opensti-bench-") as tmp:
        work = Path(tmp)
        pki = DemoPKI(dt.datetime.now(dt.UTC))
        key, cert = pki.issue("1234")
        (work / "chain.pem").write_bytes(pki.chain_pem(cert))
        (work / "key.pem").write_bytes(private_key_pem(key))
        (work / "root.pem").write_bytes(pki.root.pem)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (work / "public.pem").write_bytes(public)
        repository, repo_port = _serve_dir(work)
        x5u = f"http://127.0.0.1:{repo_port}/chain.pem"
        ours_port, theirs_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "OPENSTI_BENCH_KEY": str(work / "key.pem"),
            "OPENSTI_BENCH_X5U": x5u,
            "OPENSTI_BENCH_ROOT": str(work / "root.pem"),
        }
        theirs_cmd = ["secsipidx", "-http-srv", f"127.0.0.1:{theirs_port}"]
        theirs_cmd += ["-fprvkey", str(work / "key.pem"), "-fpubkey", str(work / "public.pem")]
        theirs_cmd += ["-expire", "3600", "-timeout", "5"]
        processes = [
            _start_opensti(ours_port, args.workers, env),
            subprocess.Popen(theirs_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        try:
            _wait_port(ours_port)
            _wait_port(theirs_port)
            ours = f"http://127.0.0.1:{ours_port}"
            theirs = f"http://127.0.0.1:{theirs_port}"
            json_type, text_type = "application/json", "text/plain"
            sign = (
                _wrk(
                    f"{ours}/stir/v1/signing",
                    _signing_body(),
                    json_type,
                    args.seconds,
                    args.connections,
                    work,
                ),
                _wrk(
                    f"{theirs}/v1/sign-csv",
                    f"{ORIG},{DEST},A,bench,{x5u}",
                    text_type,
                    args.seconds,
                    args.connections,
                    work,
                ),
            )
            identity = json.loads(
                _post(f"{ours}/stir/v1/signing", _signing_body().encode(), json_type)
            )["signingResponse"]["identity"]
            check = {"from": {"tn": ORIG}, "to": {"tn": [DEST]}, "identity": identity}
            verify_body = json.dumps({"verificationRequest": check})
            answer = json.loads(
                _post(f"{ours}/stir/v1/verification", verify_body.encode(), json_type)
            )
            assert answer["verificationResponse"]["verstat"] == "TN-Validation-Passed", answer
            verify = (
                _wrk(
                    f"{ours}/stir/v1/verification",
                    verify_body,
                    json_type,
                    args.seconds,
                    args.connections,
                    work,
                ),
                _wrk(
                    f"{theirs}/v1/check", identity, text_type, args.seconds, args.connections, work
                ),
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=15)
            repository.shutdown()
        print(
            f"wrk -t2 -c{args.connections} -d{args.seconds}s, opensti workers={args.workers},"
            f" {os.cpu_count()} CPUs"
        )
        print(_row("sign", *sign))
        print(_row("verify", *verify))


if __name__ == "__main__":
    main()
