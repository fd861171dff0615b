"""CPU per SIP call of the UDP redirect server, in process, beside bare ECDSA.

Run on demand: ``.venv/bin/python bench/sip_cpu.py [--calls N] [--rounds R] [--profile]``.
See bench/README.md.

No socket and no SIPp: the INVITE and ACK datagrams of ``bench/sipp/*.xml`` (one
Call-ID, branch and tag per call) go through what a UDP worker does with a datagram it
has read (``frame_message`` and ``SIPServer.dispatch``, verify calls as event-loop
tasks), and ``time.process_time()`` is divided by the calls. Bare ``cryptography``
ECDSA sign and verify run in the same rounds, so the ratio holds on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.identity import parse_identity
from opensti.sandbox.pki import DemoPKI
from opensti.signing import CallSignerAdapter, Keyring, SigningEntry, SigningService
from opensti.sip import SIPServer, SIPServices, parse_listeners
from opensti.sip.message import frame_message
from opensti.verification import TrustStore, VerificationService

X5U = "https://cr.bench.example/certs/1234.pem"
ORIG, DEST = "12155550121", "12155550131"
LOCAL, REMOTE = ("127.0.0.1", 40000), ("127.0.0.1", 5060)
#: Identity headers the verify calls cycle through (as bench/sip.py's -inf file).
IDENTITIES = 8
_ES256 = ec.ECDSA(hashes.SHA256())

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
    pki: DemoPKI
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def signing(self) -> SigningService:
        entry = SigningEntry(
            name="bench", spc="1234", key=self.key, x5u=X5U, is_default=True, attest="A"
        )
        return SigningService(Keyring([entry]))

    def services(self, mode: str) -> SIPServices:
        if mode == "sign":
            return SIPServices(signer=CallSignerAdapter(self.signing()))
        trust = TrustStore([self.pki.root.certificate])
        return SIPServices(
            verifier=VerificationService(_Chain(self.pki.chain_pem(self.cert)), trust)
        )

    def identities(self) -> list[str]:
        """Identity headers signed now (their iat must be within the 60 s window)."""
        service = self.signing()
        values = []
        for _ in range(IDENTITIES):
            header = parse_identity(service.sign(ORIG, DEST, attest="A").identity)
            values.append(f"Identity: {header.token};info=<{header.info}>;alg=ES256;ppt=shaken\r\n")
        return values


class Driver:
    """One UDP listener's server, fed datagrams the way ``_UDPEndpoint`` does."""

    def __init__(self, setup: Setup, mode: str) -> None:
        self.setup = setup
        self.mode = mode
        spec = parse_listeners(f"udp:127.0.0.1:0/{mode}")
        self.server = SIPServer(spec, setup.services(mode))
        self.handler = self.server._handlers[0]
        self.responses: list[bytes] = []
        self.serial = 0
        #: CPU seconds spent building the ACKs (the client's work), left out of the figure.
        self.client_cpu = 0.0

    def _send(self, payload: bytes) -> None:
        self.responses.append(payload)

    def _received(self, data: bytes) -> None:
        # What _UDPEndpoint._received does after recvfrom.
        message = frame_message(data)
        self.server.dispatch(self.handler, message, LOCAL, self._send)

    def datagrams(self, calls: int) -> list[bytes]:
        extras = self.setup.identities() if self.mode == "verify" else ["X-Attest: A\r\n"]
        start, self.serial = self.serial, self.serial + calls
        return [invite(n, extras[n % len(extras)]) for n in range(start, start + calls)]

    async def run(self, invites: list[bytes], batch: int = 64) -> list[bytes]:
        """Every INVITE, then the ACK of its 302; read in batches as the endpoint does."""
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
        return list(self.responses)


def check(mode: str, responses: list[bytes], calls: int) -> None:
    expected = b"ppt=shaken" if mode == "sign" else b"verstat=TN-Validation-Passed"
    good = sum(1 for r in responses if r.startswith(b"SIP/2.0 302") and expected in r)
    if good != calls:
        raise SystemExit(f"{mode}: {good} of {calls} calls got the expected 302")


def cpu_per_call(driver: Driver, calls: int, profiler: cProfile.Profile | None) -> float:
    """CPU microseconds per call; INVITEs built (and signed, for verify) beforehand.

    The ACKs are built from the 302s during the timed run; that CPU is the client's and
    is subtracted.
    """
    invites = driver.datagrams(calls)
    runner = asyncio.Runner()
    with runner:
        runner.run(driver.run(invites[:64]))  # warm-up: x5u fetched and cached
        invites = invites[64:]
        if profiler is not None:
            profiler.enable()
        start = time.process_time()
        responses = runner.run(driver.run(invites))
        used = time.process_time() - start - driver.client_cpu
        if profiler is not None:
            profiler.disable()
    check(driver.mode, responses, len(invites))
    if driver.handler.transactions.info().completed:
        raise SystemExit(f"{driver.mode}: some ACKs did not end their transaction")
    return used / len(invites) * 1e6


def bare(operation: Callable[[], object], count: int) -> float:
    """CPU microseconds per call of ``operation`` alone."""
    operation()
    start = time.process_time()
    for _ in range(count):
        operation()
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="sign,verify")
    parser.add_argument("--profile", action="store_true", help="cProfile; print the top 30")
    args = parser.parse_args()
    pki = DemoPKI(now=dt.datetime.now(dt.UTC))
    key, cert = pki.issue("1234")
    setup = Setup(pki, key, cert)
    message = b"x" * 400
    signature = key.sign(message, _ES256)
    public = key.public_key()
    baseline = {
        "sign": lambda: key.sign(message, _ES256),
        "verify": lambda: public.verify(signature, message, _ES256),
    }
    modes = args.modes.split(",")
    drivers = {mode: Driver(setup, mode) for mode in modes}
    samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    print(f"{args.calls} calls per round, {args.rounds} rounds; CPU microseconds per call")
    for round_ in range(args.rounds):
        for mode in modes:
            call = cpu_per_call(drivers[mode], args.calls + 64, profiler)
            ecdsa = bare(baseline[mode], max(200, args.calls // 5))
            samples[mode].append((call, ecdsa))
            print(
                f"  round {round_ + 1} {mode:6}  call {call:7.1f} us  bare ECDSA {ecdsa:5.1f} us"
                f"  ratio {ecdsa / call:6.1%}",
                flush=True,
            )
    print()
    print("  mode | call us (best, median) | bare ECDSA us | ECDSA/call (best, median)")
    for mode in modes:
        calls = [c for c, _ in samples[mode]]
        ratios = [e / c for c, e in samples[mode]]
        ecdsa = statistics.median(e for _, e in samples[mode])
        print(
            f"{mode:>6} | {min(calls):8.1f} {statistics.median(calls):8.1f}     "
            f"| {ecdsa:13.1f} | {max(ratios):6.1%} {statistics.median(ratios):6.1%}"
        )
    if profiler is not None:
        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
