"""Memory: RSS of ``opensti serve`` (every process) after calls through SIP and REST.

Run on demand: ``.venv/bin/python bench/memory.py [--calls 1000000] [--rate 1500]``.
Loopback only; needs ``sipp`` and ``wrk``. See bench/README.md.

The server is what users run (bench/sip.py's ``opensti_server``: the installed
``opensti serve --workers N`` with a sandbox certificate, UDP sign and verify listeners,
the SIP message log on its SQLite database). Each chunk sends half its calls as SIPp
INVITEs to the sign listener, then runs ``POST /stir/v1/signing`` (wrk, keep-alive,
the signer token, as fast as it answers) for as long as those took; the script then
waits until the log has written every SIP call and samples the resident memory of
every process. ``--calls`` counts the SIP calls logged (the STIR API keeps no call
log, so its requests come on top). With fewer than a million the last line
extrapolates linearly from the growth after the first chunk, and says so. The target
is in MB (10^6 bytes); the figures are in MiB, the total in both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import rest as rest_bench  # bench/rest.py, next to this file
from _served import Served

import sip as sip_bench  # bench/sip.py, next to this file

TARGET_MB = 300
MILLION = 1_000_000


@dataclass
class Sample:
    calls: int
    rows: int
    #: Resident set size of each process (parent first), MiB.
    rss: list[float]
    #: Proportional set size summed over the processes (shared pages counted once), MiB.
    pss: float

    @property
    def rss_total(self) -> float:
        return sum(self.rss)


def _status_kib(pid: int, field: str, path: str = "status") -> float:
    for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _rows(database: Path) -> int:
    with sqlite3.connect(database, timeout=10) as connection:
        return int(connection.execute("SELECT count(*) FROM sip_message").fetchone()[0])


def _settled_rows(database: Path, timeout: float = 60.0) -> int:
    """The row count once the writers caught up (unchanged over a second: the log is
    written off the call path, a batch at least every 0.2 s)."""
    deadline = time.monotonic() + timeout
    rows = _rows(database)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _rows(database)
        if now == rows:
            break
        rows = now
    return rows


def _sample(pids: list[int], calls: int, rows: int) -> Sample:
    rss = [_status_kib(pid, "VmRSS") / 1024 for pid in pids]
    pss = sum(_status_kib(pid, "Pss", "smaps_rollup") for pid in pids) / 1024
    return Sample(calls, rows, rss, pss)


def _print(sample: Sample) -> None:
    each = " + ".join(f"{value:.1f}" for value in sample.rss)
    print(
        f"{sample.calls:>9,} calls  {sample.rows:>9,} rows  "
        f"RSS {sample.rss_total:6.1f} MiB ({each})  PSS {sample.pss:6.1f} MiB",
        flush=True,
    )


def _rest_calls(served: Served, count: int, rate: int, work: Path) -> int:
    """About ``count`` REST signatures at about ``rate`` per second (wrk, 4 connections);
    returns how many were answered 2xx."""
    seconds = max(1, round(count / rate))
    load = rest_bench.Load(seconds, 4, 1, work)
    run = rest_bench._wrk(
        f"{served.url}/stir/v1/signing",
        rest_bench._signing_body(),
        "application/json",
        load,
        served.auth_header,
    )
    return int(run.rate * seconds) - run.errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=1500, help="SIPp calls per second")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for tool in ("sipp", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (2 cores)", flush=True)
    samples: list[Sample] = []
    failed = rest = 0
    with tempfile.TemporaryDirectory(prefix="opensti-bench-memory-") as tmp:
        work = Path(tmp)
        with sip_bench.opensti_server(work, args.workers) as (server, served):
            database = work / "opensti" / "opensti" / "opensti.db"
            pids = server.pids()
            print(f"opensti serve pids {pids} (parent first); log {database}", flush=True)
            samples.append(_sample(pids, 0, _rows(database)))
            _print(samples[-1])
            done = _rows(database)
            while args.calls - done >= args.chunk // 10:
                count = min(args.chunk, args.calls - done)
                sip_count = count // 2
                port = server.ports["sign"]
                run = sip_bench.run_sipp("sign.xml", port, args.rate, sip_count / args.rate,
                                         work, [])  # fmt: skip
                failed += run.failed
                rest += _rest_calls(served, count - sip_count, args.rate, work)
                done = _settled_rows(database)
                samples.append(_sample(pids, done, done))
                _print(samples[-1])
    _report(samples, failed, rest)


def _report(samples: list[Sample], failed: int, rest: int) -> None:
    last = samples[-1]
    print()
    print(f"SIP calls logged: {last.calls:,} ({failed} failed); REST signatures answered:"
          f" {rest:,} (the STIR API keeps no call log)")  # fmt: skip
    megabytes = last.rss_total * 1.048576  # MiB to MB (10^6 bytes), the target's unit
    print(f"server RSS after them: {last.rss_total:.1f} MiB = {megabytes:.1f} MB (sum over "
          f"processes), PSS {last.pss:.1f} MiB; target < {TARGET_MB} MB at 1M calls")  # fmt: skip
    if last.calls >= MILLION or len(samples) < 3:
        return
    base = samples[1]
    slope = (last.rss_total - base.rss_total) / max(1, last.calls - base.calls)
    projected = last.rss_total + slope * (MILLION - last.calls)
    print(
        f"extrapolated (linear, from {base.calls:,} to {last.calls:,} calls: "
        f"{slope * 100_000:+.2f} MiB per 100k calls): {projected:.1f} MiB RSS at 1M calls "
        f"({'under' if projected * 1.048576 < TARGET_MB else 'OVER'} the target)"
    )


if __name__ == "__main__":
    main()
