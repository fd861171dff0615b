"""SIP UDP redirect: signed and verified calls per second under SIPp, against raw OpenSSL.

Run on demand: ``.venv/bin/python bench/sip.py [--step 5] [--latency 10]``.
Loopback only. Needs ``sipp`` (Debian sip-tester) and ``openssl``. See bench/README.md.

For each mode (sign, then verify) the script starts ``opensti.sip.serve`` with two
worker processes in a child process, finds the peak rate with a ladder of SIPp runs
(``-r`` raised until calls fail or the rate stops rising), then measures SIPp's
response times (INVITE -> 302) at half the peak. ``openssl speed -multi 2`` runs in
the same invocation, so the ratios compare figures taken on the same machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from opensti.core.identity import parse_identity
from opensti.sandbox.pki import DemoPKI, private_key_pem
from opensti.sandbox.tls import ensure_tls_files

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "sipp"
ORIG, DEST = "12155550121", "12155550131"
X5U_PATH = "/certs/1234.pem"
#: Identity headers cycled through by the verify scenario (signed right before each run).
IDENTITIES = 8
#: Source sockets SIPp spreads calls over, so SO_REUSEPORT can hash them to both workers.
SIPP_SOCKETS = 64
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One SIPp run at a fixed offered rate."""

    offered: int
    calls: int
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    #: Datagrams the kernel dropped on full UDP receive buffers during the run.
    drops: int = 0
    elapsed: float = 0.0
    #: CPU time (user + system, seconds) of SIPp and of the server workers.
    sipp_cpu: float = 0.0
    server_cpu: float = 0.0
    rtts_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.successful / self.elapsed if self.elapsed else 0.0

    @property
    def server_us_per_call(self) -> float:
        """Server CPU (user + system, every worker) per successful call, microseconds."""
        return self.server_cpu / self.successful * 1e6 if self.successful else float("nan")

    def share(self, cpu: float) -> float:
        """CPU seconds as a share of the machine's two cores over the run."""
        return cpu / (2 * self.elapsed) if self.elapsed else 0.0


# --- the server side (runs in a child process: python bench/sip.py --serve CONFIG) ------


def _services_factory(config: dict[str, str]) -> Callable[[], object]:
    """Build the services inside each worker, after the fork (httpx clients, keys)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from opensti.sip import SIPServices

    def sign() -> SIPServices:
        from opensti.signing import CallSignerAdapter, Keyring, SigningEntry, SigningService

        key = load_pem_private_key(Path(config["key"]).read_bytes(), None)
        entry = SigningEntry(
            name="bench", spc="1234", key=key, x5u=config["x5u"], is_default=True, attest="A"
        )  # type: ignore[arg-type]
        signer = CallSignerAdapter(SigningService(Keyring([entry])))
        return SIPServices(signer=signer, log=_call_log(config.get("database")))

    def verify() -> SIPServices:
        from opensti.verification import (
            FetchPolicy,
            TrustStore,
            VerificationService,
            X5UFetcher,
        )

        anchors = x509.load_pem_x509_certificates(Path(config["anchors"]).read_bytes())
        fetcher = X5UFetcher(FetchPolicy(allow_private=True), verify=config["tls_root"])
        return SIPServices(verifier=VerificationService(fetcher, TrustStore(anchors)))

    build = sign if config["mode"] == "sign" else verify
    if not config.get("profile"):
        return build

    def profiled() -> SIPServices:
        _profile_worker(float(config["profile"]), Path(config["profile_dir"]))
        return build()

    return profiled


def _profile_worker(seconds: float, directory: Path) -> None:
    """cProfile this worker's event loop thread on CPU time, dumped after ``seconds``."""
    import cProfile

    profiler = cProfile.Profile(time.process_time)

    def dump() -> None:
        profiler.disable()
        profiler.dump_stats(directory / f"worker-{os.getpid()}.prof")

    # The factory runs inside the worker's event loop, so the dump runs in its thread.
    asyncio.get_running_loop().call_later(seconds, dump)
    profiler.enable()


def _call_log(database_url: str | None) -> Callable[[object], None] | None:
    """The SIP message log (bench/memory.py), one writer thread per worker."""
    if not database_url:
        return None
    from opensti.calls import CallLog
    from opensti.store import open_database

    log = CallLog(open_database(database_url))
    log.start()
    return log  # type: ignore[return-value]


def _serve(config_path: str) -> None:
    from opensti.sip import parse_listeners, serve

    config = json.loads(Path(config_path).read_text())
    listeners = parse_listeners(f"udp:127.0.0.1:{config['port']}/{config['mode']}")
    serve(listeners, _services_factory(config), workers=int(config["workers"]))  # type: ignore[arg-type]


# --- the load side -------------------------------------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _wait_options(port: int, timeout: float = 20.0) -> None:
    """Wait until the server answers OPTIONS with 200 (a worker is up)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.bind(("127.0.0.1", 0))
        n = 0
        while time.monotonic() < deadline:
            n += 1
            local = sock.getsockname()[1]
            request = (
                f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-ping{n}\r\n"
                f"From: <sip:bench@127.0.0.1>;tag={n}\r\nTo: <sip:ping@127.0.0.1>\r\n"
                f"Call-ID: ping-{n}@bench\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), ("127.0.0.1", port))
            try:
                if sock.recv(65536).startswith(b"SIP/2.0 200"):
                    return
            except TimeoutError:
                continue
    raise SystemExit(f"the SIP server on udp:127.0.0.1:{port} does not answer")


@contextmanager
def sip_server(
    mode: str, work: Path, config: dict[str, str], workers: int
) -> Iterator[tuple[int, list[int]]]:
    """Run ``serve(workers=N)`` in a child; yield its UDP port and worker pids once up."""
    port = _free_udp_port()
    path = work / f"server-{mode}.json"
    path.write_text(json.dumps({**config, "mode": mode, "port": port, "workers": workers}))
    log = (work / f"server-{mode}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(path)], stdout=log, stderr=log
    )
    try:
        _wait_options(port)
        deadline = time.monotonic() + 10
        while len(_children(process.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # every worker binds its socket
        yield port, _children(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _stat_value(header: list[str], row: list[str], name: str) -> str:
    return row[header.index(name)]


def _epoch(text: str) -> float:
    """A SIPp time column: ``date<TAB>time<TAB>epoch``; ElapsedTime has only seconds."""
    return float(text.split("\t")[-1])


def _udp_receive_errors() -> int:
    """The kernel's UDP RcvbufErrors: datagrams dropped because a socket buffer was full."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [line for line in lines if line[0] == "Udp:"][:2]
    return int(values[names.index("RcvbufErrors")])


def _read_stats(path: Path, run: Run) -> None:
    lines = [line.split(";") for line in path.read_text().splitlines() if line.strip()]
    header, last = lines[0], lines[-1]
    run.successful = int(_stat_value(header, last, "SuccessfulCall(C)"))
    run.failed = int(_stat_value(header, last, "FailedCall(C)"))
    run.retransmissions = int(_stat_value(header, last, "Retransmissions(C)"))
    run.elapsed = _epoch(_stat_value(header, last, "CurrentTime")) - _epoch(
        _stat_value(header, last, "StartTime")
    )


def _read_rtts(work: Path) -> list[float]:
    values: list[float] = []
    for path in work.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2 and parts[1].strip():
                values.append(float(parts[1]))
        path.unlink()
    return values


def run_sipp(
    scenario: str,
    port: int,
    rate: int,
    seconds: float,
    work: Path,
    server_pids: Sequence[int],
    *,
    inf: Path | None = None,
    rtt: bool = False,
) -> Run:
    """One SIPp UAC run over UDP at ``rate`` calls/s for about ``seconds``."""
    calls = max(1, int(rate * seconds))
    run = Run(offered=rate, calls=calls)
    stats = work / "stats.csv"
    stats.unlink(missing_ok=True)
    command = [
        "sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1",
        "-t", "un", "-max_socket", str(SIPP_SOCKETS), "-r", str(rate), "-m", str(calls),
        "-l", str(max(1000, 2 * rate)), "-nostdin", "-timeout", f"{int(seconds * 3 + 20)}s",
        "-trace_stat", "-stf", str(stats), "-fd", "1",
        "-trace_err", "-error_file", str(work / "sipp-errors.log"),
    ]  # fmt: skip
    if inf is not None:
        command += ["-inf", str(inf)]
    if rtt:
        command += ["-trace_rtt", "-rtt_freq", "1000"]
    before = [_cpu_seconds(pid) for pid in server_pids]
    drops = _udp_receive_errors()
    process = subprocess.Popen(
        command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    run.sipp_cpu = usage.ru_utime + usage.ru_stime
    run.drops = _udp_receive_errors() - drops
    run.server_cpu = sum(_cpu_seconds(p) - b for p, b in zip(server_pids, before, strict=True))
    _read_stats(stats, run)
    if rtt:
        run.rtts_ms = _read_rtts(work)
    return run


# --- fixtures: PKI, x5u repository, Identity headers -----------------------------------


class _X5UHandler(http.server.BaseHTTPRequestHandler):
    body = b""
    fetches = 0

    def do_GET(self) -> None:
        if self.path != X5U_PATH:
            self.send_error(404)
            return
        type(self).fetches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/pem-certificate-chain")
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        """Fetched once per worker; the count is printed instead."""


@contextmanager
def x5u_repository(chain_pem: bytes, work: Path) -> Iterator[tuple[str, str]]:
    """Serve the chain over HTTPS on 127.0.0.1; yield (x5u URL, TLS root path)."""
    tls = ensure_tls_files(work, dt.datetime.now(dt.UTC))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    _X5UHandler.body = chain_pem
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _X5UHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}{X5U_PATH}", str(tls.root)
    finally:
        server.shutdown()
        server.server_close()


def write_identities(path: Path, key_pem: bytes, x5u: str) -> Path:
    """SIPp -inf file of freshly signed Identity headers (iat = now)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from opensti.signing import Keyring, SigningEntry, SigningService

    key = load_pem_private_key(key_pem, None)
    entry = SigningEntry(name="bench", spc="1234", key=key, x5u=x5u, is_default=True)  # type: ignore[arg-type]
    service = SigningService(Keyring([entry]))
    lines = ["SEQUENTIAL"]
    for _ in range(IDENTITIES):
        header = parse_identity(service.sign(ORIG, DEST, attest="A").identity)
        lines.append(f"{header.token};{header.info};")
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the measurements ------------------------------------------------------------------


def openssl_speed(seconds: int = 3, *, multi: bool = True) -> tuple[float, float]:
    """``openssl speed [-multi 2] ecdsap256``: (sign/s, verify/s).

    With ``-multi 2`` (the target's baseline) the rates follow wall-clock time on both
    cores; without it one process reports per second of its own CPU time, which the
    neighbours' load hardly moves (doubled here, for two cores).
    """
    command = ["openssl", "speed", "-seconds", str(seconds), "ecdsap256"]
    if multi:
        command[2:2] = ["-multi", "2"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out)
    if match is None:
        raise SystemExit(f"cannot read openssl speed output:\n{out}")
    scale = 1.0 if multi else 2.0
    return float(match.group(1)) * scale, float(match.group(2)) * scale


@dataclass
class ModeResult:
    mode: str
    ladder: list[Run]
    peak: Run
    half: Run
    fetches: int


def _ladder_rates(start: int, factor: float, limit: int) -> Iterator[int]:
    rate = start
    while rate <= limit:
        yield rate
        rate = int(rate * factor)


def measure_mode(
    mode: str,
    work: Path,
    config: dict[str, str],
    args: argparse.Namespace,
    identities: Callable[[], Path | None],
) -> ModeResult:
    scenario = f"{mode}.xml"
    fetches_before = _X5UHandler.fetches
    with sip_server(mode, work, config, args.workers) as (port, server):
        # Warm-up: each worker fetches and caches the x5u before the measured runs.
        run_sipp(scenario, port, 200, 2, work, server, inf=identities())
        ladder: list[Run] = []
        rates = (
            [args.fixed]
            if args.fixed
            else _ladder_rates(args.start_rate, args.factor, args.max_rate)
        )
        for rate in rates:
            run = run_sipp(scenario, port, rate, args.step, work, server, inf=identities())
            ladder.append(run)
            _print_step(mode, run)
            if run.failed or run.rate < 0.9 * rate:
                break
        peak = max(ladder, key=lambda r: r.rate if not r.failed else 0.0)
        half_rate = args.fixed or max(1, int(peak.rate / 2))
        half = run_sipp(
            scenario, port, half_rate, args.latency, work, server, inf=identities(), rtt=True
        )
        _print_step(mode, half, "half")
    return ModeResult(mode, ladder, peak, half, _X5UHandler.fetches - fetches_before)


def _print_step(mode: str, run: Run, label: str = "step") -> None:
    print(
        f"  {mode:6} {label:4} offered {run.offered:6}/s  got {run.rate:8.0f}/s  "
        f"ok {run.successful:7}  failed {run.failed:4}  retrans {run.retransmissions:5}  "
        f"udp drops {run.drops:5}  "
        f"cpu sipp {run.share(run.sipp_cpu):4.0%} server {run.share(run.server_cpu):4.0%} "
        f"({run.server_us_per_call:.0f} us/call)",
        flush=True,
    )


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _ceiling(run: Run) -> float:
    """Calls/s if the server had both cores to itself: 2 CPU-seconds / CPU per call."""
    return 2e6 / run.server_us_per_call if run.successful else float("nan")


def report(
    results: Sequence[ModeResult], raw: tuple[float, float], raw_cpu: tuple[float, float]
) -> None:
    targets = {"sign": (raw[0], 0.20), "verify": (raw[1], 0.40)}
    per_cpu = {"sign": raw_cpu[0], "verify": raw_cpu[1]}
    print()
    print(f"openssl speed -multi 2 ecdsap256: {raw[0]:,.0f} sign/s, {raw[1]:,.0f} verify/s")
    print(
        f"openssl speed ecdsap256 (1 process, CPU time) x 2 cores: {raw_cpu[0]:,.0f} sign/s, "
        f"{raw_cpu[1]:,.0f} verify/s"
    )
    print()
    columns = (
        ("mode", 6), ("peak/s", 7), ("raw/s", 7), ("ratio", 6), ("target", 6),
        ("us/call", 7), ("ceiling", 7), ("ratio", 6), ("half/s", 6), ("p50 ms", 6),
        ("p99 ms", 6), ("failed", 6), ("sipp", 5), ("server", 6),
    )  # fmt: skip
    head = " | ".join(f"{name:>{width}}" for name, width in columns)
    print(head)
    print("-" * len(head))
    for result in results:
        raw, target = targets[result.mode]
        peak, half = result.peak, result.half
        cells = (
            result.mode, f"{peak.rate:,.0f}", f"{raw:,.0f}", f"{peak.rate / raw:.1%}",
            f">={target:.0%}", f"{peak.server_us_per_call:.0f}", f"{_ceiling(peak):,.0f}",
            f"{_ceiling(peak) / per_cpu[result.mode]:.1%}", f"{half.offered:,}",
            f"{_percentile(half.rtts_ms, 0.50):.0f}", f"{_percentile(half.rtts_ms, 0.99):.0f}",
            f"{half.failed}", f"{peak.share(peak.sipp_cpu):.0%}",
            f"{peak.share(peak.server_cpu):.0%}",
        )  # fmt: skip
        print(" | ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, columns, strict=True)))
    print()
    for result in results:
        raw, target = targets[result.mode]
        half = result.half
        p99 = _percentile(half.rtts_ms, 0.99)
        mean = statistics.fmean(half.rtts_ms) if half.rtts_ms else float("nan")
        verdict = (
            f"{result.mode}: ratio {'met' if result.peak.rate / raw >= target else 'MISSED'}, "
            f"p99 {'met' if p99 < 10 else 'MISSED'}, "
            f"failed calls at half peak {half.failed} "
            f"({len(half.rtts_ms)} response times, mean {mean:.2f} ms"
        )
        if result.mode == "verify":
            verdict += f", x5u fetched {result.fetches} times"
        print(verdict + ")")
    print(_LEGEND)
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")


_LEGEND = """
peak/s: successful calls/s at the best ladder step; ratio: peak/s over raw/s (the target).
us/call: CPU (user + system, both workers) the server spent per call at the peak.
ceiling: 2 cores / us/call, the rate if the server had both cores to itself (no SIPp,
no neighbours), and its ratio to OpenSSL's CPU-time rate on 2 cores (both per
CPU-second, so the neighbours' load affects them alike). p50/p99: SIPp response times
INVITE -> 302 at half the peak rate, whole milliseconds. failed: SIPp failed calls in
that run. sipp, server: share of the 2 cores each used during the peak step."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--step", type=float, default=4.0, help="seconds per ladder step")
    parser.add_argument("--latency", type=float, default=10.0, help="seconds at half peak")
    parser.add_argument("--start-rate", type=int, default=1000)
    parser.add_argument("--factor", type=float, default=1.4, help="rate increase per step")
    parser.add_argument("--max-rate", type=int, default=40000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--fixed", type=int, default=0, help="no ladder: one run at this rate (to compare builds)"
    )
    parser.add_argument("--modes", default="sign,verify")
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        help="cProfile each worker (CPU time) for this many seconds; writes worker-PID.prof",
    )
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    for tool in ("sipp", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (2 cores)", flush=True)
    raw, raw_cpu = openssl_speed(), openssl_speed(multi=False)
    pki = DemoPKI(now=dt.datetime.now(dt.UTC))
    key, cert = pki.issue("1234")
    results: list[ModeResult] = []
    with tempfile.TemporaryDirectory(prefix="opensti-bench-sip-") as tmp:
        work = Path(tmp)
        key_path, anchors = work / "sign.key", work / "sti-root.pem"
        key_path.write_bytes(private_key_pem(key))
        anchors.write_bytes(pki.root.pem)
        with x5u_repository(pki.chain_pem(cert), work) as (x5u, tls_root):
            config = {"key": str(key_path), "x5u": x5u, "anchors": str(anchors)}
            config["tls_root"] = tls_root
            if args.profile:
                config |= {"profile": str(args.profile), "profile_dir": os.getcwd()}
            for mode in args.modes.split(","):
                make_inf: Callable[[], Path | None] = (
                    (lambda: write_identities(work / "identities.csv", key_path.read_bytes(), x5u))
                    if mode == "verify"
                    else (lambda: None)
                )
                results.append(measure_mode(mode, work, config, args, make_inf))
    report(results, raw, raw_cpu)


if __name__ == "__main__":
    main()
