"""The soak: ``opensti serve`` keeps short-lived certificates renewed under random CA and
STI-PA faults while a probe checks, every second, that each entry's current x5u serves
a chain that is valid right now.

Shared by the test (under a minute) and ``bench/soak.py`` (ten minutes). Every interval
(outage gaps and lengths, retry backoff) scales with the certificates' life, so the short
run meets the same faults, in proportion, as the long one. The figure
that matters is ``seconds without a valid published cert``: a second counts when, for
any entry, the x5u of its active certificate (what the STI-AS signs with) cannot be
fetched from the STI-CR or its chain does not validate against the STI-PA trust list
at that moment.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from opensti.store import CertificateState, EventOutcome, LifecycleEvent
from tests.lifecycle.reconcile_support import SPCS, World, start_world

__all__ = ["ENTRIES", "SoakReport", "run_soak"]

OPENSTI = str(Path(sys.executable).with_name("opensti"))
ENTRIES = tuple(f"e{spc}" for spc in SPCS)
#: The certificate life (s) the fault timings below are written for.
REFERENCE_VALIDITY = 120.0


@dataclass
class SoakReport:
    duration: float
    cert_validity: float
    fail_rate: float
    probes: int = 0
    bad_seconds: int = 0
    bad_by_entry: Counter[str] = field(default_factory=Counter)
    renewals: int = 0
    failed_steps: int = 0
    outages: list[tuple[str, float, float]] = field(default_factory=list)
    #: (second of the soak, entry, what was wrong), the first ones only.
    incidents: list[tuple[int, str, str]] = field(default_factory=list)
    server_exit: int | None = None

    def lines(self) -> list[str]:
        roles = Counter(role for role, _, _ in self.outages)
        return [
            f"soak: {len(ENTRIES)} entries, {self.cert_validity:.0f} s certificates, "
            f"{self.duration:.0f} s, random failure share {self.fail_rate:.0%}, "
            f"outages: {dict(roles)} ({sum(d for _, _, d in self.outages):.0f} s in all)",
            f"probe rounds: {self.probes}",
            f"renewals (activations after the first certificates): {self.renewals}",
            f"failed steps (retried at once or after a backoff): {self.failed_steps}",
            f"seconds without a valid published cert: {self.bad_seconds}"
            + (f" {dict(self.bad_by_entry)}" if self.bad_by_entry else ""),
            f"opensti serve exit status: {self.server_exit}",
            *(f"  at {t} s, {name}: {why}" for t, name, why in self.incidents[:20]),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "probes": self.probes,
            "bad_seconds": self.bad_seconds,
            "renewals": self.renewals,
            "failed_steps": self.failed_steps,
            "outages": len(self.outages),
        }


class _Faults(threading.Thread):
    """Random outages of the CA or the STI-PA (503 on every request) for a few seconds."""

    def __init__(self, world: World, rng: random.Random, report: SoakReport, scale: float) -> None:
        super().__init__(daemon=True, name="soak-faults")
        self.world = world
        self.rng = rng
        self.report = report
        self.scale = scale
        self.stop = threading.Event()

    def run(self) -> None:
        faults = self.world.sandbox.state.faults
        while not self.stop.wait(self.rng.uniform(20, 50) * self.scale):
            role = self.rng.choice(("ca", "stipa"))
            length = self.rng.uniform(3, 15) * self.scale
            faults.set(role, "refuse")  # type: ignore[arg-type]
            self.report.outages.append((role, time.monotonic(), length))
            self.stop.wait(length)
            faults.set(role, "ok")  # type: ignore[arg-type]


def _probe_round(world: World, report: SoakReport) -> None:
    now = dt.datetime.now(dt.UTC)
    problems = {name: _problem(world, name, now) for name in ENTRIES}
    bad = {name: why for name, why in problems.items() if why is not None}
    if bad:
        report.bad_seconds += 1
        report.bad_by_entry.update(bad.keys())  # one bad second per entry named
        if len(report.incidents) < 100:
            report.incidents.extend((report.probes, name, why) for name, why in bad.items())
    report.probes += 1


def _problem(world: World, name: str, now: dt.datetime) -> str | None:
    """What keeps the entry's current x5u from verifying now, or None."""
    active = world.active(name)
    if active is None or active.x5u_url is None:
        return "no active certificate"
    try:
        response = world.fetch(active.x5u_url)
    except httpx.HTTPError as exc:
        return f"STI-CR unreachable: {exc!r}"
    if response.status_code != 200:
        return f"STI-CR answered {response.status_code} for #{active.id}"
    if not world.chain_valid(response.content, world.entry(name).spc, now):
        return f"#{active.id} does not validate (not after {active.not_after})"
    return None


def _count(world: World, *conditions: Any) -> int:
    with world.app.database.read_session() as session:
        return int(
            session.scalar(select(func.count()).select_from(LifecycleEvent).where(*conditions)) or 0
        )


def _wait_first_certificates(world: World, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(world.active(name) for name in ENTRIES):
        if time.monotonic() > deadline:
            raise AssertionError("the first certificates did not arrive")
        time.sleep(0.2)


def run_soak(
    tmp_path: Path,
    duration: float,
    *,
    cert_validity: float = REFERENCE_VALIDITY,
    fail_rate: float = 0.05,
    seed: int = 1,
    log: Any = print,
) -> SoakReport:
    """Run the soak for ``duration`` seconds after the first certificates are active."""
    rng = random.Random(seed)
    report = SoakReport(duration, cert_validity, fail_rate)
    scale = cert_validity / REFERENCE_VALIDITY
    with start_world(
        tmp_path, cert_validity=dt.timedelta(seconds=cert_validity), repository=False
    ) as world:
        world.add_entries(*SPCS)
        port = world.base_url.rpartition(":")[2]
        command = [
            OPENSTI, "serve", "--insecure-http", f"--port={port}", "--tick=0.5",
            f"--backoff-initial={scale:g}", f"--backoff-max={8 * scale:g}", "--lease-ttl=60",
        ]  # fmt: skip
        stderr = (tmp_path / "serve.log").open("wb")
        server = subprocess.Popen(
            command, env=world.env(), stdout=subprocess.DEVNULL, stderr=stderr
        )
        faults = _Faults(world, rng, report, scale)
        try:
            _wait_first_certificates(world, 60)
            first_activations = _count(world, LifecycleEvent.step == "activate")
            world.sandbox.state.faults.fail_rate = fail_rate
            faults.start()
            start = time.monotonic()
            next_round = start
            while time.monotonic() - start < duration:
                _probe_round(world, report)
                next_round += 1.0
                time.sleep(max(0.0, next_round - time.monotonic()))
                if report.probes % 60 == 0:
                    log(f"  {report.probes} s: {report.bad_seconds} bad seconds so far")
            report.renewals = _count(world, LifecycleEvent.step == "activate") - first_activations
            report.failed_steps = _count(world, LifecycleEvent.outcome == EventOutcome.FAILED)
        finally:
            faults.stop.set()
            faults.join(timeout=20)
            server.send_signal(signal.SIGTERM)
            try:
                report.server_exit = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                report.server_exit = server.wait()
            stderr.close()
        for name in ENTRIES:
            active = [c for c in world.certificates(name) if c.state is CertificateState.ACTIVE]
            assert len(active) == 1, (name, len(active))
    return report
