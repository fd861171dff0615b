"""Memory: RSS of the signing SIP redirect server while it logs every call to SQLite.

Run on demand: ``.venv/bin/python bench/memory.py [--calls 200000] [--rate 1500]``.
Loopback only; needs ``sipp``. See bench/README.md.

The server is bench/sip.py's sign mode (``serve(workers=2)``) with the SIP message log
(:class:`opensti.calls.CallLog`, one writer thread per worker) on a fresh SQLite
database. SIPp drives ``--calls`` calls in chunks; after each chunk the script waits
until the log has written every call, then samples the resident memory of the parent
and each worker. With fewer than a million calls the last line extrapolates linearly
from the growth after the first chunk, and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sip as sip_bench  # bench/sip.py, next to this file
from opensti.sandbox.pki import DemoPKI, private_key_pem
from opensti.store import upgrade

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


def _wait_logged(database: Path, expected: int, timeout: float = 60.0) -> int:
    """Wait until the writer threads caught up; the log is off the call path."""
    deadline = time.monotonic() + timeout
    rows = _rows(database)
    while rows < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = _rows(database)
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


def _opensti_serve_exists() -> bool:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "opensti"), "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=1500, help="SIPp calls per second")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed")
    if _opensti_serve_exists():
        print("note: `opensti serve` exists; this script measures opensti.sip.serve directly")
    pki = DemoPKI(now=dt.datetime.now(dt.UTC))
    key, _ = pki.issue("1234")
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="opensti-bench-memory-") as tmp:
        work = Path(tmp)
        database = work / "calls.db"
        upgrade(f"sqlite:///{database}")
        (work / "sign.key").write_bytes(private_key_pem(key))
        config = {
            "key": str(work / "sign.key"),
            "x5u": "https://sti-cr.example.net/1234.pem",
            "database": f"sqlite:///{database}",
        }
        with sip_bench.sip_server("sign", work, config, args.workers) as (port, workers):
            pids = [_parent(workers[0]), *workers]
            print(f"server pids {pids} (parent first); SQLite at {database.name}", flush=True)
            samples.append(_sample(pids, 0, _rows(database)))
            _print(samples[-1])
            done = failed = 0
            while done < args.calls:
                count = min(args.chunk, args.calls - done)
                run = sip_bench.run_sipp("sign.xml", port, args.rate, count / args.rate, work, [])
                done += run.successful
                failed += run.failed
                rows = _wait_logged(database, done)
                samples.append(_sample(pids, done, rows))
                _print(samples[-1])
    _report(samples, failed)


def _report(samples: list[Sample], failed: int) -> None:
    last = samples[-1]
    print()
    print(f"calls driven: {last.calls:,} ({failed} failed), rows logged: {last.rows:,}")
    print(f"server RSS after them: {last.rss_total:.1f} MiB (sum over processes), "
          f"PSS {last.pss:.1f} MiB; target < {TARGET_MB} MB at 1M calls")  # fmt: skip
    if last.calls >= MILLION or len(samples) < 3:
        return
    base = samples[1]
    slope = (last.rss_total - base.rss_total) / max(1, last.calls - base.calls)
    projected = last.rss_total + slope * (MILLION - last.calls)
    print(
        f"extrapolated (linear, from {base.calls:,} to {last.calls:,} calls: "
        f"{slope * 100_000:+.2f} MiB per 100k calls): {projected:.1f} MiB RSS at 1M calls "
        f"({'under' if projected < TARGET_MB else 'OVER'} the target)"
    )


if __name__ == "__main__":
    main()
