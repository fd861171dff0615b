"""CPU per REST request of ``opensti serve``: one worker pinned to one core, wrk on another.

Run on demand: ``.venv/bin/python bench/rest_cpu.py [--seconds 10] [--connections 1,16]``.
See bench/README.md.

Throughput on a shared machine says how busy the neighbours were; the CPU the server
spent per request hardly does. The served node is bench/_served.py's (the installed
``opensti serve --workers 1``, a signer token on every request), pinned to the last
core, and wrk to the first. For each operation and connection count it prints wrk's
rate and latency, the user + system CPU of the serve process over the run, and the
requests per CPU-second it comes to.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _served import cpu_seconds, opensti_serve
from rest import Load, Run, _post, _signing_body, _verification_body, _wrk


def _pin(pid: int, core: int) -> None:
    """Every thread of ``pid`` on ``core``; threads it starts later inherit it."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {core})


@dataclass
class Measured:
    run: Run
    cpu: float
    requests: float

    def row(self, name: str) -> str:
        per_cpu = self.requests / self.cpu if self.cpu else float("nan")
        return (
            f"{name:<14} {self.run} | serve CPU {self.cpu:6.2f} s | {per_cpu:>7.0f} req/CPU-s"
            f" {1e6 / per_cpu if self.cpu else 0:6.0f} us/req"
        )


def _measured(pid: int, url: str, body: str, auth: str, load: Load) -> Measured:
    before = cpu_seconds(pid)
    run = _wrk(url, body, "application/json", load, auth)
    return Measured(run, cpu_seconds(pid) - before, run.rate * load.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="1,16", help="comma-separated wrk -c values")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `opensti serve` argument"
    )
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with (
        tempfile.TemporaryDirectory(prefix="opensti-bench-") as tmp,
        opensti_serve(Path(tmp) / "opensti", ["--workers=1", *args.serve_arg]) as served,
    ):
        _pin(served.pid, cores[-1])
        os.sched_setaffinity(0, {cores[0]})  # wrk, started from here, inherits it
        auth, json_type = served.auth_header, "application/json"
        signing = _signing_body()
        signed = json.loads(
            _post(f"{served.url}/stir/v1/signing", signing.encode(), json_type, auth)
        )
        verification = _verification_body(signed["signingResponse"]["identity"])
        answer = json.loads(
            _post(f"{served.url}/stir/v1/verification", verification.encode(), json_type, auth)
        )
        assert answer["verificationResponse"]["verstat"] == "TN-Validation-Passed", answer
        rows = []
        for connections in (int(c) for c in args.connections.split(",")):
            load = Load(args.seconds, connections, 1, Path(tmp))
            for name, path, body in (
                ("sign", "signing", signing),
                ("verify", "verification", verification),
            ):
                url = f"{served.url}/stir/v1/{path}"
                rows.append(
                    (f"{name} -c{connections}", _measured(served.pid, url, body, auth, load))
                )
    serve = " ".join(["opensti serve --workers 1", *args.serve_arg])
    print(f"wrk -t1 -d{args.seconds}s keep-alive on core {cores[0]}, {serve} on core {cores[-1]}")
    for name, measured in rows:
        print(measured.row(name))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
