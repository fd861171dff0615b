"""CPU per SIP call of the UDP redirect server, in process, beside bare ECDSA.

Run on demand: ``.venv/bin/python bench/sip_cpu.py [--calls N] [--rounds R] [--profile]``.
See bench/README.md.

No socket and no SIPp: the INVITE and ACK datagrams of ``bench/sipp/*.xml`` (one
Call-ID, branch and tag per call) go through what a UDP worker does with a datagram it
has read (``SIPServer.datagram``, verify calls as event-loop tasks), and
``time.process_time()`` is divided by the calls. Bare ``cryptography`` ECDSA sign and
verify run in the same rounds, so the ratio holds on a busy machine.

The SIP message log is on by default, as ``opensti serve`` runs it: a ``CallLog`` on a
migrated SQLite file in a temporary directory, its writer thread running and flushed
before the clock stops. ``process_time`` counts every thread, so the writer's CPU is in
the figure; it is also printed on its own (the thread's CPU clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._site import Site, make_site

from opensti.calls import CallLog, keyring_certificates
from opensti.core.identity import parse_identity
from opensti.signing import CallSignerAdapter, SigningService
from opensti.sip import SIPServer, SIPServices, parse_listeners
from opensti.sip.message import frame_message
from opensti.verification import TrustStore, VerificationService

ORIG, DEST = "12155550121", "12155550131"
LOCAL, REMOTE = ("127.0.0.1", 40000), ("127.0.0.1", 5060)
#: Identity headers the verify calls cycle through (as bench/sip.py's -inf file).
IDENTITIES = 8
_ES256 = ec.ECDSA(hashes.SHA256())
#: The call log's writer thread (opensti.calls.CallLog), found by name for its CPU clock.
_WRITER = "opensti-call-log"
_INVITE = (
    "INVITE sip:+{dest}@{rip}:{rport};user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {lip}:{lport};branch=z9hG4bK-{n}-1-0\r\n"
    "From: <sip:+{orig}@{lip}:{lport};user=phone>;tag={n}\r\n"
    "To: <sip:+{dest}@{rip}:{rport};user=phone>\r\n"
    "Call-ID: {n}-4242@{lip}\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:sipp@{lip}:{lport}>\r\n"
    "P-Asserted-Identity: <sip:+{orig}@{lip};user=phone>\r\n"
    "{extra}"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n"
)
_ACK = (
    "ACK sip:+{dest}@{rip}:{rport};user=phone SIP/2.0\r\n"
    "{via}\r\n{from_}\r\n{to}\r\n{call_id}\r\n"
    "CSeq: 1 ACK\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n"
)


def invite(n: int, extra: str) -> bytes:
    lip, lport = LOCAL
    rip, rport = REMOTE
    text = _INVITE.format(
        n=n, orig=ORIG, dest=DEST, lip=lip, lport=lport, rip=rip, rport=rport, extra=extra
    )
    return text.encode()


def ack(response: bytes) -> bytes:
    """The scenario's ACK: Via, From, To and Call-ID of the 302 (``[last_Via:]``...)."""
    lines = response.decode().split("\r\n")
    names = ("Via:", "From:", "To:", "Call-ID:")
    via, from_, to, call_id = (next(x for x in lines if x.startswith(n)) for n in names)
    return _ACK.format(
        dest=DEST, rip=REMOTE[0], rport=REMOTE[1], via=via, from_=from_, to=to, call_id=call_id
    ).encode()


class _Chain:
    """An x5u source answering from memory (the certificate is cached after one call)."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem

    async def fetch_response(self, url: str) -> httpx.Response:
        return httpx.Response(200, content=self.pem, headers={"Cache-Control": "max-age=3600"})


@dataclass
class Setup:
    """A store with one entry and its active certificate, as ``opensti serve`` loads it."""

    site: Site

    def signing(self) -> SigningService:
        return SigningService(self.site.keyring())

    def services(self, mode: str, log: CallLog | None) -> SIPServices:
        if mode == "sign":
            return SIPServices(signer=CallSignerAdapter(self.signing()), log=log)
        site = self.site
        chain = (site.certificate.chain_pem or "").encode()
        trust = TrustStore([site.pki.root.certificate])
        return SIPServices(verifier=VerificationService(_Chain(chain), trust), log=log)

    def call_log(self) -> CallLog:
        """The log ``opensti serve`` runs (default queue, batches and interval)."""
        lookup = keyring_certificates(self.site.keyring())
        return CallLog(self.site.database, certificate_for_x5u=lookup)

    def identities(self) -> list[str]:
        """Identity headers signed now (their iat must be within the 60 s window)."""
        service = self.signing()
        values = []
        for _ in range(IDENTITIES):
            header = parse_identity(service.sign(ORIG, DEST, attest="A").identity)
            values.append(f"Identity: {header.token};info=<{header.info}>;alg=ES256;ppt=shaken\r\n")
        return values


def _thread_cpu(name: str) -> Callable[[], float]:
    """CPU seconds of the running thread called ``name`` so far (0 without one)."""
    thread = next((t for t in threading.enumerate() if t.name == name), None)
    if thread is None or thread.ident is None:
        return lambda: 0.0
    clock = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime(clock)


class Driver:
    """One UDP listener's server, fed datagrams the way ``_UDPEndpoint`` does."""

    def __init__(self, setup: Setup, mode: str, log: CallLog | None) -> None:
        self.setup = setup
        self.mode = mode
        self.log = log
        spec = parse_listeners(f"udp:127.0.0.1:0/{mode}")
        self.server = SIPServer(spec, setup.services(mode, log))
        self.handler = self.server._handlers[0]
        self.responses: list[bytes] = []
        self.serial = 0
        #: CPU seconds spent building the ACKs (the client's work), left out of the figure.
        self.client_cpu = 0.0

    @property
    def label(self) -> str:
        return f"{self.mode}{'' if self.log is None else '+log'}"

    def _send(self, payload: bytes) -> None:
        self.responses.append(payload)

    def _received(self, data: bytes) -> None:
        # What _UDPEndpoint._received does after recvfrom (SIPServer.datagram; a build
        # without it frames the datagram and dispatches it).
        datagram = getattr(self.server, "datagram", None)
        if datagram is not None:
            datagram(self.handler, data, LOCAL, self._send)
        else:
            self.server.dispatch(self.handler, frame_message(data), LOCAL, self._send)

    def datagrams(self, calls: int) -> list[bytes]:
        extras = self.setup.identities() if self.mode == "verify" else ["X-Attest: A\r\n"]
        start, self.serial = self.serial, self.serial + calls
        return [invite(n, extras[n % len(extras)]) for n in range(start, start + calls)]

    async def run(self, invites: list[bytes], batch: int = 64) -> list[bytes]:
        """Every INVITE, then the ACK of its 302; read in batches as the endpoint does.
        With the call log on, it ends when the log has written every call."""
        self.responses.clear()
        self.client_cpu = 0.0
        for begin in range(0, len(invites), batch):
            chunk = invites[begin : begin + batch]
            for data in chunk:
                self._received(data)
            while self.server._tasks:
                await asyncio.sleep(0)
            clock = time.process_time()
            acks = [ack(response) for response in self.responses[-len(chunk) :]]
            self.client_cpu += time.process_time() - clock
            for data in acks:
                self._received(data)
        if self.log is not None and not self.log.flush(timeout=60.0):
            raise SystemExit(f"{self.label}: the call log did not write every call")
        return list(self.responses)


def check(mode: str, responses: list[bytes], calls: int) -> None:
    expected = b"ppt=shaken" if mode == "sign" else b"verstat=TN-Validation-Passed"
    good = sum(1 for r in responses if r.startswith(b"SIP/2.0 302") and expected in r)
    if good != calls:
        raise SystemExit(f"{mode}: {good} of {calls} calls got the expected 302")


@dataclass(frozen=True)
class Sample:
    """One round of one driver: CPU us per call (all threads), the log writer's share."""

    call: float
    writer: float
    ecdsa: float


def cpu_per_call(
    driver: Driver, calls: int, profiler: cProfile.Profile | None
) -> tuple[float, float]:
    """CPU microseconds per call, and of them the call log writer's; INVITEs built (and
    signed, for verify) beforehand.

    The ACKs are built from the 302s during the timed run; that CPU is the client's and
    is subtracted.
    """
    invites = driver.datagrams(calls)
    runner = asyncio.Runner()
    with runner:
        runner.run(driver.run(invites[:64]))  # warm-up: x5u fetched and cached
        invites = invites[64:]
        writer = _thread_cpu(_WRITER) if driver.log is not None else lambda: 0.0
        if profiler is not None:
            profiler.enable()
        start, written = time.process_time(), writer()
        responses = runner.run(driver.run(invites))
        used = time.process_time() - start - driver.client_cpu
        written = writer() - written
        if profiler is not None:
            profiler.disable()
    check(driver.mode, responses, len(invites))
    if driver.handler.transactions.info().completed:
        raise SystemExit(f"{driver.mode}: some ACKs did not end their transaction")
    if driver.log is not None and driver.log.stats().dropped:
        raise SystemExit(f"{driver.label}: the call log dropped calls")
    return used / len(invites) * 1e6, written / len(invites) * 1e6


def bare(operation: Callable[[], object], count: int) -> float:
    """CPU microseconds per call of ``operation`` alone."""
    operation()
    start = time.process_time()
    for _ in range(count):
        operation()
    return (time.process_time() - start) / count * 1e6


@contextlib.contextmanager
def drivers(setup: Setup, modes: list[str], logs: list[bool]) -> Iterator[list[Driver]]:
    """A driver per mode and log setting; one call log (writer thread running) for all."""
    with setup.call_log() as log:
        yield [Driver(setup, mode, log if on else None) for mode in modes for on in logs]


def report(samples: dict[str, list[Sample]]) -> None:
    print()
    print("       mode | call us (best, median) | log writer us | bare ECDSA us | ECDSA/call")
    for label, rounds in samples.items():
        calls = [s.call for s in rounds]
        ratios = [s.ecdsa / s.call for s in rounds]
        writer = statistics.median(s.writer for s in rounds)
        ecdsa = statistics.median(s.ecdsa for s in rounds)
        print(
            f"{label:>11} | {min(calls):8.1f} {statistics.median(calls):8.1f}      "
            f"| {writer:13.1f} | {ecdsa:13.1f} | {statistics.median(ratios):6.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="sign,verify")
    parser.add_argument(
        "--call-log",
        choices=("on", "off", "both"),
        default="on",
        help="the SIP message log as opensti serve runs it (default), none, or each mode both ways",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile; print the top 30")
    args = parser.parse_args()
    logs = {"on": [True], "off": [False], "both": [False, True]}[args.call_log]
    modes = args.modes.split(",")
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    with (
        tempfile.TemporaryDirectory(prefix="opensti-sip-cpu-") as directory,
        make_site(Path(directory)) as site,
    ):
        setup = Setup(site)
        # As opensti serve's workers (opensti.prefork): what exists before the fork is
        # frozen, so a collection does not walk every imported module's objects.
        gc.freeze()
        message = b"x" * 400
        signature = site.key.sign(message, _ES256)
        public = site.key.public_key()
        baseline = {
            "sign": lambda: site.key.sign(message, _ES256),
            "verify": lambda: public.verify(signature, message, _ES256),
        }
        print(f"{args.calls} calls per round, {args.rounds} rounds; CPU microseconds per call")
        print(f"load average before the run: {os.getloadavg()[0]:.2f}", flush=True)
        samples: dict[str, list[Sample]] = {}
        with drivers(setup, modes, logs) as runs:
            for round_ in range(args.rounds):
                for driver in runs:
                    call, writer = cpu_per_call(driver, args.calls + 64, profiler)
                    ecdsa = bare(baseline[driver.mode], max(200, args.calls // 5))
                    samples.setdefault(driver.label, []).append(Sample(call, writer, ecdsa))
                    print(
                        f"  round {round_ + 1} {driver.label:11}  call {call:7.1f} us"
                        f"  (log writer {writer:5.1f})  bare ECDSA {ecdsa:5.1f} us"
                        f"  ratio {ecdsa / call:6.1%}",
                        flush=True,
                    )
    report(samples)
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    if profiler is not None:
        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
