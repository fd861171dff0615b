"""SIP UDP redirect: ``opensti serve`` against Kamailio + secsipid, same SIPp load, one run.

Run on demand: ``.venv/bin/python bench/sip.py [--step 4] [--latency 10] [--workers 2]``.
Loopback only. Needs ``sipp`` (Debian sip-tester), ``openssl``, ``kamailio`` and
``kamailio-secsipid-modules``. See bench/README.md.

opensti is what users run: the installed ``opensti serve --workers N`` with a sandbox
certificate from the README's CLI flow (bench/_served.py), sign and verify listeners on
UDP, and the call log on. The peer is Kamailio with N children as a redirect signer
(``secsipid_build_identity`` into a 302) and as a verifier (``secsipid_check_identity``
with the module's certificate cache), bench/kamailio/bench.cfg. For each mode and
server the script finds the peak with a ladder of SIPp runs (``-r`` raised until calls
fail or the rate stops rising), then measures response times (INVITE -> 302) at half
the peak. Both verify the same Identity headers, signed by opensti through its STIR API
right before each run, whose x5u is the served node's own STI-CR. ``openssl speed``
runs in the same invocation as a reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _served import Served, cpu_seconds, opensti_serve, process_tree

from opensti.core.identity import parse_identity
from opensti.sandbox.pki import DemoPKI, private_key_pem

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "sipp"
KAMAILIO_CONFIG = HERE / "kamailio" / "bench.cfg"
ORIG, DEST = "12155550121", "12155550131"
#: Identity headers cycled through by the verify scenario (signed right before each run).
IDENTITIES = 8
#: Source sockets SIPp spreads calls over, so SO_REUSEPORT can hash them to both workers.
SIPP_SOCKETS = 64


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


# --- the load side -------------------------------------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    before = [cpu_seconds(pid) for pid in server_pids]
    drops = _udp_receive_errors()
    process = subprocess.Popen(
        command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    run.sipp_cpu = usage.ru_utime + usage.ru_stime
    run.drops = _udp_receive_errors() - drops
    run.server_cpu = sum(cpu_seconds(p) - b for p, b in zip(server_pids, before, strict=True))
    _read_stats(stats, run)
    if rtt:
        run.rtts_ms = _read_rtts(work)
    return run


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
class Server:
    """A SIP server under test: its UDP port per mode and the processes that do the work."""

    name: str
    ports: dict[str, int]
    pid: int

    def pids(self) -> list[int]:
        return process_tree(self.pid)


@dataclass
class ModeResult:
    mode: str
    server: str
    ladder: list[Run]
    peak: Run
    half: Run


def _ladder_rates(start: int, factor: float, limit: int) -> Iterator[int]:
    rate = start
    while rate <= limit:
        yield rate
        rate = int(rate * factor)


def measure_mode(
    mode: str,
    server: Server,
    work: Path,
    args: argparse.Namespace,
    identities: Callable[[], Path | None],
) -> ModeResult:
    scenario = f"{mode}.xml"
    port, pids = server.ports[mode], server.pids()
    # Warm-up: every worker fetches and caches the x5u before the measured runs.
    warm = run_sipp(scenario, port, 200, 2, work, pids, inf=identities())
    if warm.failed or not warm.successful:
        errors = work / "sipp-errors.log"
        detail = errors.read_text(errors="replace")[-2000:] if errors.exists() else ""
        raise SystemExit(f"{server.name} {mode}: the warm-up calls failed\n{detail}")
    ladder: list[Run] = []
    rates = (
        [args.fixed] if args.fixed else _ladder_rates(args.start_rate, args.factor, args.max_rate)
    )
    for rate in rates:
        run = run_sipp(scenario, port, rate, args.step, work, pids, inf=identities())
        ladder.append(run)
        _print_step(server.name, mode, run)
        if run.failed or run.rate < 0.9 * rate:
            break
    peak = max(ladder, key=lambda r: r.rate if not r.failed else 0.0)
    half_rate = args.fixed or max(1, int(peak.rate / 2))
    half = run_sipp(scenario, port, half_rate, args.latency, work, pids, inf=identities(), rtt=True)
    _print_step(server.name, mode, half, "half")
    return ModeResult(mode, server.name, ladder, peak, half)


def _print_step(server: str, mode: str, run: Run, label: str = "step") -> None:
    print(
        f"  {server:8} {mode:6} {label:4} offered {run.offered:6}/s  got {run.rate:8.0f}/s  "
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


# --- the servers -----------------------------------------------------------------------


@contextmanager
def opensti_server(work: Path, workers: int) -> Iterator[tuple[Server, Served]]:
    """The installed ``opensti serve --workers N`` with a sign and a verify UDP listener."""
    sign, verify = _free_udp_port(), _free_udp_port()
    listeners = f"udp:127.0.0.1:{sign}/sign,udp:127.0.0.1:{verify}/verify"
    serve_args = ["--workers", str(workers), "--sip-listen", listeners]
    with opensti_serve(work / "opensti", serve_args) as served:
        _wait_options(sign)
        _wait_options(verify)
        deadline = time.monotonic() + 20
        while len(process_tree(served.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        yield Server("opensti", {"sign": sign, "verify": verify}, served.pid), served


def _kamailio_modules() -> Path | None:
    for found in sorted(Path("/usr/lib").glob("*/kamailio/modules/secsipid.so")):
        return found.parent
    return None


@contextmanager
def kamailio_server(work: Path, workers: int, x5u: str, ca_file: Path) -> Iterator[Server]:
    """One Kamailio per role with ``workers`` UDP children (``-n``), in one process group."""
    modules = _kamailio_modules()
    if modules is None or shutil.which("kamailio") is None:
        raise SystemExit("kamailio and kamailio-secsipid-modules are not installed")
    key = work / "kamailio-sign.key"
    pki = DemoPKI(now=dt.datetime.now(dt.UTC))
    key.write_bytes(private_key_pem(pki.issue("1234")[0]))
    roles = {
        "sign": {"ROLE_SIGN": None, "SIGN_KEY": str(key), "X5U": x5u},
        "verify": {
            "ROLE_VERIFY": None,
            "CACHE_DIR": str(work / "kamailio-cache"),
            "LIBOPT_CERT_VERIFY": "CertVerify=5",
            "LIBOPT_CA_FILE": f"CertCAFile={ca_file}",
        },
    }
    (work / "kamailio-cache").mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    leader = os.getpid()
    try:
        for mode, defines in roles.items():
            port = _free_udp_port()
            run = work / f"kamailio-{mode}"
            run.mkdir()
            command = [
                "kamailio", "-f", str(KAMAILIO_CONFIG), "-DD", "-E", "-n", str(workers),
                "-m", "64", "-M", "8", "-l", f"udp:127.0.0.1:{port}", "-L", str(modules),
                "-Y", str(run), "-P", str(run / "kamailio.pid"), "-w", str(run),
            ]  # fmt: skip
            for name, value in defines.items():
                command += ["-A", name if value is None else f'{name}="{value}"']
            log = (work / f"kamailio-{mode}.log").open("wb")
            processes.append(subprocess.Popen(command, stdout=log, stderr=log))
            ports[mode] = port
            _wait_options(port)
        # One Server whose pids are every Kamailio process (both roles: each idles while
        # the other is measured, and its idle CPU is counted against it).
        yield _KamailioServer("kamailio", ports, leader, [p.pid for p in processes])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class _KamailioServer(Server):
    roots: list[int] = field(default_factory=list)

    def pids(self) -> list[int]:
        return [pid for root in self.roots for pid in process_tree(root)]


def sign_identities(served: Served, path: Path) -> Path:
    """SIPp -inf file of Identity headers signed by ``opensti serve`` now (iat = now)."""
    body = {"signingRequest": {"orig": {"tn": ORIG}, "dest": {"tn": [DEST]}, "attest": "A",
            "iat": int(time.time()), "origid": "bench"}}  # fmt: skip
    lines = ["SEQUENTIAL"]
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10) as http:
        for _ in range(IDENTITIES):
            body["signingRequest"]["origid"] = str(uuid.uuid4())
            answer = http.post(
                "/stir/v1/signing", json=body, headers={"Authorization": served.auth_header}
            )
            answer.raise_for_status()
            header = parse_identity(answer.json()["signingResponse"]["identity"])
            lines.append(f"{header.token};{header.info};")
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the report ------------------------------------------------------------------------


def report(results: Sequence[ModeResult], raw: tuple[float, float]) -> None:
    print()
    print(f"openssl speed -multi 2 ecdsap256: {raw[0]:,.0f} sign/s, {raw[1]:,.0f} verify/s")
    print()
    columns = (
        ("mode", 6), ("server", 8), ("peak/s", 7), ("us/call", 7), ("half/s", 6),
        ("p50 ms", 6), ("p99 ms", 6), ("failed", 6), ("sipp", 5), ("server", 6),
    )  # fmt: skip
    head = " | ".join(f"{name:>{width}}" for name, width in columns)
    print(head)
    print("-" * len(head))
    for result in results:
        peak, half = result.peak, result.half
        cells = (
            result.mode, result.server, f"{peak.rate:,.0f}", f"{peak.server_us_per_call:.0f}",
            f"{half.offered:,}", f"{_percentile(half.rtts_ms, 0.50):.1f}",
            f"{_percentile(half.rtts_ms, 0.99):.1f}", f"{half.failed}",
            f"{peak.share(peak.sipp_cpu):.0%}", f"{peak.share(peak.server_cpu):.0%}",
        )  # fmt: skip
        print(" | ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, columns, strict=True)))
    print()
    by_key = {(r.mode, r.server): r for r in results}
    for mode in ("sign", "verify"):
        ours, theirs = by_key.get((mode, "opensti")), by_key.get((mode, "kamailio"))
        if ours is None or theirs is None:
            continue
        ratio = ours.peak.rate / theirs.peak.rate if theirs.peak.rate else float("nan")
        p99 = _percentile(ours.half.rtts_ms, 0.99)
        print(
            f"{mode}: opensti/kamailio peak {ratio:.2f}x (target >= 1.0x: "
            f"{'met' if ratio >= 1.0 else 'MISSED'}); CPU per call "
            f"{ours.peak.server_us_per_call:.0f} vs {theirs.peak.server_us_per_call:.0f} us; "
            f"opensti at half peak: {ours.half.failed} failed, p99 {p99:.1f} ms "
            f"({'met' if ours.half.failed == 0 and p99 < 10 else 'MISSED'})"
        )
    print(_LEGEND)
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")


_LEGEND = """
peak/s: successful calls/s at the best ladder step. us/call: CPU (user + system, every
process of the server) per call at the peak. half/s, p50/p99: SIPp response times
INVITE -> 302 at half the peak rate. failed: SIPp failed calls in that run. sipp, server:
share of the 2 cores each used during the peak step. SIPp shares the machine with the
server, so a peak near 2 cores in total is a machine limit, not the server's."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=float, default=4.0, help="seconds per ladder step")
    parser.add_argument("--latency", type=float, default=10.0, help="seconds at half peak")
    parser.add_argument("--start-rate", type=int, default=1000)
    parser.add_argument("--factor", type=float, default=1.4, help="rate increase per step")
    parser.add_argument("--max-rate", type=int, default=40000)
    parser.add_argument("--workers", type=int, default=2, help="processes of each server")
    parser.add_argument(
        "--fixed", type=int, default=0, help="no ladder: one run at this rate (to compare builds)"
    )
    parser.add_argument("--modes", default="sign,verify")
    parser.add_argument("--servers", default="opensti,kamailio")
    args = parser.parse_args()
    for tool in ("sipp", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (2 cores)", flush=True)
    raw = openssl_speed()
    results: list[ModeResult] = []
    servers = args.servers.split(",")
    with tempfile.TemporaryDirectory(prefix="opensti-bench-sip-") as tmp:
        work = Path(tmp)
        with opensti_server(work, args.workers) as (ours, served):
            x5u = parse_identity(served_identity(served)).info
            ca_file = work / "opensti" / "sandbox" / "trust-anchors.pem"
            with kamailio_server(work, args.workers, x5u, ca_file) as theirs:
                chosen = [s for s in (ours, theirs) if s.name in servers]
                for mode in args.modes.split(","):
                    make_inf: Callable[[], Path | None] = (
                        (lambda: sign_identities(served, work / "identities.csv"))
                        if mode == "verify"
                        else (lambda: None)
                    )
                    for server in chosen:
                        results.append(measure_mode(mode, server, work, args, make_inf))
    report(results, raw)


def served_identity(served: Served) -> str:
    """One Identity header signed by ``opensti serve`` (for its x5u)."""
    lines = sign_identities(served, Path(tempfile.mkstemp(suffix=".csv")[1])).read_text()
    token, info, _ = lines.splitlines()[1].split(";")
    return f"{token};info=<{info}>;alg=ES256;ppt=shaken"


if __name__ == "__main__":
    main()
