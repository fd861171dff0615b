"""``opensti serve --workers N``: forked processes answer HTTP and SIP (UDP and TCP) on
the same sockets, with the same credentials, and stop with the parent."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opensti.metrics import SharedMetrics
from tests._servers import child_pids, free_port, free_udp_port
from tests.lifecycle.test_serve_doors import OPENSTI, SIGNING, _env, _run

pytestmark = pytest.mark.integration


def _stoppable_env() -> dict[str, str]:
    """These tests SIGSTOP one process and expect the other to answer. The first
    process purges the call log when it starts; stopped inside that write it could hold
    SQLite's lock and leave the other's store reads waiting out the busy timeout (the
    server survives that, see tests/store/test_watch.py, but the request in hand does
    not). Keeping every call means no purge."""
    return _env(OPENSTI_CALL_LOG_RETENTION_DAYS="0")


def _stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is stopped: the signal lands asynchronously,
    and a process still running could take a connection meant for the others."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    # The state follows the name in parentheses in /proc/<pid>/stat; T: stopped.
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.005)


def _signs_as_sbc(url: str, token: str) -> int:
    """A request on a new connection (so any worker may take it); its status."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        return http.post("/stir/v1/signing", json=SIGNING, headers=headers).status_code


def _sip_options(transport: str, port: int) -> str:
    """One OPTIONS request over UDP or TCP; the status line of the answer."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(_options_request(transport, sock))
        return sock.recv(65536).decode().split("\r\n", 1)[0]


def _options_request(transport: str, sock: socket.socket) -> bytes:
    port, local = sock.getpeername()[1], sock.getsockname()[1]
    return (
        f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{local};branch=z9hG4bK-{local}\r\n"
        f"From: <sip:test@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\n"
        f"Call-ID: ping-{local}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_auto_workers_are_one_per_core(tmp_path: Path) -> None:
    """``--workers auto``: the cores ``serve`` may run on, here limited to two (or the
    one a single-core machine has)."""
    cores = set(sorted(os.sched_getaffinity(0))[:2])
    node = _serving_with_workers(tmp_path / "data", free_port(), workers="auto", cores=cores)
    try:
        assert len(child_pids(node.pid)) == len(cores) - 1
    finally:
        node.send_signal(signal.SIGTERM)
        _, errors = node.communicate(timeout=30)
    assert node.returncode == 0, errors


def test_a_forked_worker_answers_while_the_first_process_is_stopped(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = _run(data_dir, "token", "create", "--role", "signer", "--name", "sbc")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    command = [OPENSTI, "--data-dir", str(data_dir), "serve", "--no-worker", "--insecure-http"]
    udp, tcp = free_udp_port(), free_port()
    command += ["--port", str(free_port()), "--workers", "2"]
    command += ["--sip-listen", f"udp:127.0.0.1:{udp}/sign,tcp:127.0.0.1:{tcp}/sign"]
    node = subprocess.Popen(
        command, env=_stoppable_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        match = re.search(r"serving on (\S+)", node.stdout.readline())
        assert match, node.stderr.read() if node.stderr else ""
        url = match.group(1)
        (worker,) = child_pids(node.pid)
        # No signing entry here: 404 NoSigningEntry says the token was accepted.
        assert _signs_as_sbc(url, token) == 404
        _stop(node.pid)  # only the forked worker can accept now
        try:
            assert [_signs_as_sbc(url, token) for _ in range(5)] == [404] * 5
            assert _signs_as_sbc(url, "osti_not-a-token") == 401
            # SIP too: the worker reads the shared UDP socket and accepts on the TCP one.
            assert [_sip_options("udp", udp) for _ in range(5)] == ["SIP/2.0 200 OK"] * 5
            assert _sip_options("tcp", tcp) == "SIP/2.0 200 OK"
        finally:
            os.kill(node.pid, signal.SIGCONT)
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, node.stderr.read() if node.stderr else ""
        assert not Path(f"/proc/{worker}").exists()  # stopped and reaped by the parent
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def _connections_held(pids: list[int], port: int) -> dict[int, int]:
    """How many established connections to ``port`` each process holds (Linux /proc)."""
    accepted = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                accepted.add(f"socket:[{fields[9]}]")
    return {pid: sum(1 for f in _descriptors(pid) if f in accepted) for pid in pids}


def _descriptors(pid: int) -> list[str]:
    """What each of ``pid``'s open descriptors names (one closed meanwhile is skipped)."""
    names = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            names.append(os.readlink(fd))
        except FileNotFoundError:
            continue
    return names


def _http_health(sock: socket.socket) -> tuple[bytes, bytes]:
    return b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"HTTP/1.1 200"


def _sip_ping(sock: socket.socket) -> tuple[bytes, bytes]:
    return _options_request("tcp", sock), b"SIP/2.0 200"


Exchange = Callable[[socket.socket], tuple[bytes, bytes]]


def _burst(
    port: int, count: int, pids: list[int], exchange: Exchange = _http_health
) -> list[socket.socket]:
    """``count`` connections opened at once and accepted, then one request on each
    (``exchange``: what to send, and how the answer starts), each answered."""
    held_before = sum(_connections_held(pids, port).values())
    burst = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    deadline = time.monotonic() + 10
    while sum(_connections_held(pids, port).values()) < held_before + count:
        assert time.monotonic() < deadline, "the burst was not accepted"
        time.sleep(0.01)
    answers = []
    for sock in burst:
        request, answer = exchange(sock)
        sock.sendall(request)
        answers.append(answer)
    for sock, answer in zip(burst, answers, strict=True):
        assert sock.recv(4096).startswith(answer), "a connection was not answered"
    return burst


def _burst_goes_to(
    worker: int,
    first: int,
    port: int,
    opened: list[socket.socket],
    exchange: Exchange = _http_health,
) -> None:
    """``first`` takes 16 connections while ``worker`` is stopped; a burst of 16 more
    must then go mostly (at least 12) to ``worker``. Every connection lands in
    ``opened``, for the caller to close."""
    pids = [first, worker]
    _stop(worker)
    try:
        opened += _burst(port, 16, [first], exchange)
    finally:
        os.kill(worker, signal.SIGCONT)
    assert _connections_held(pids, port) == {first: 16, worker: 0}
    time.sleep(0.5)  # the worker's heartbeat is fresh again
    opened += _burst(port, 16, pids, exchange)
    held = _connections_held(pids, port)
    assert held[worker] >= 12, held


def _serving_with_workers(
    data_dir: Path, port: int, *args: str, workers: str = "2", cores: set[int] | None = None
) -> subprocess.Popen[str]:
    """``cores``: the CPUs the server may run on (None: this process's)."""
    command = [OPENSTI, "--data-dir", str(data_dir), "serve", "--no-worker"]
    command += ["--insecure-http", "--port", str(port), "--workers", workers, *args]
    node = subprocess.Popen(
        command,
        env=_stoppable_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if cores is None else lambda: os.sched_setaffinity(0, cores),
    )
    assert node.stdout is not None
    assert "serving on" in node.stdout.readline(), node.stderr.read() if node.stderr else ""
    return node


@pytest.mark.parametrize("door", ["http", "sip-tcp"])
def test_a_burst_of_connections_is_shared_between_the_workers(tmp_path: Path, door: str) -> None:
    """The first process holds 16 kept-alive connections (taken while the worker was
    stopped); a burst of 16 more then goes to the worker, not half to each: an SBC
    reopening its pool gets every core. uvloop alone gave a burst to whichever woke."""
    http, sip = free_port(), free_port()
    port, exchange = (http, _http_health) if door == "http" else (sip, _sip_ping)
    node = _serving_with_workers(
        tmp_path / "data", http, "--sip-listen", f"tcp:127.0.0.1:{sip}/sign"
    )
    opened: list[socket.socket] = []
    try:
        (worker,) = child_pids(node.pid)
        _burst_goes_to(worker, node.pid, port, opened, exchange)
    finally:
        for sock in opened:
            sock.close()
        node.terminate()
        node.wait(timeout=30)


def test_serving_is_announced_once_every_worker_serves(tmp_path: Path) -> None:
    """A client that connects as soon as ``serve`` says it serves finds both processes
    accepting: said earlier, a worker still starting got none of a pool's connections."""
    port = free_port()
    node = _serving_with_workers(tmp_path / "data", port)
    opened: list[socket.socket] = []
    try:
        pids = [node.pid, *child_pids(node.pid)]
        opened += _burst(port, 16, pids)
        held = _connections_held(pids, port)
        assert min(held.values()) >= 6, held
    finally:
        for sock in opened:
            sock.close()
        node.terminate()
        node.wait(timeout=30)


def _gone(pid: int, timeout: float = 15) -> bool:
    """Wait until ``pid`` has ended (gone, or a zombie nobody reaped yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def _replaced(parent: int, worker: int, port: int) -> int:
    """Kill ``worker`` outright; the pid of the process that replaces it, once it
    answers HTTP on ``port``."""
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while not (children := [pid for pid in child_pids(parent) if pid != worker]):
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.05)
    (replacement,) = children
    _stop(parent)
    try:  # the connection waits in the backlog until the replacement has started
        with httpx.Client(trust_env=False, timeout=15) as http:
            assert http.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        os.kill(parent, signal.SIGCONT)
    return replacement


def test_a_worker_that_is_killed_is_replaced_and_serves(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = _run(data_dir, "token", "create", "--role", "signer", "--name", "sbc")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    port, udp, tcp = free_port(), free_udp_port(), free_port()
    sip = f"udp:127.0.0.1:{udp}/sign,tcp:127.0.0.1:{tcp}/sign"
    node = _serving_with_workers(data_dir, port, "--sip-listen", sip)
    try:
        (worker,) = child_pids(node.pid)
        replacement = _replaced(node.pid, worker, port)
        url = f"http://127.0.0.1:{port}"
        _stop(node.pid)  # only the replacement can answer now
        try:
            # It inherited the listeners and has the store: the token is known, a
            # wrong one is not.
            assert [_signs_as_sbc(url, token) for _ in range(3)] == [404] * 3
            assert _signs_as_sbc(url, "osti_not-a-token") == 401
            assert _sip_options("udp", udp) == "SIP/2.0 200 OK"
            assert _sip_options("tcp", tcp) == "SIP/2.0 200 OK"
        finally:
            os.kill(node.pid, signal.SIGCONT)
        # /metrics counts the restart (the first process's series, whoever answers).
        deadline = time.monotonic() + 10
        while _restarts(url, token) != {"1": 1.0}:
            assert time.monotonic() < deadline, _restarts(url, token)
            time.sleep(0.2)
        node.send_signal(signal.SIGTERM)
        _, errors = node.communicate(timeout=30)
        assert node.returncode == 0, errors
        assert f"worker 1 (pid {worker}) killed by SIGKILL; a new one starts in 1 s" in errors
        assert f"worker 1 started again (pid {replacement})" in errors
        assert _gone(replacement)  # stopped with the server
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def test_a_replacement_worker_shares_a_burst_through_the_inherited_board(
    tmp_path: Path,
) -> None:
    """The replacement writes its slot of the same load board: with the first process
    holding 16 connections, a burst goes to the replacement."""
    port = free_port()
    node = _serving_with_workers(tmp_path / "data", port)
    opened: list[socket.socket] = []
    try:
        (worker,) = child_pids(node.pid)
        replacement = _replaced(node.pid, worker, port)
        _burst_goes_to(replacement, node.pid, port, opened)
    finally:
        for sock in opened:
            sock.close()
        node.terminate()
        node.wait(timeout=30)


def test_workers_end_with_a_parent_killed_outright(tmp_path: Path) -> None:
    """SIGKILL leaves the parent no time to stop its workers; the kernel ends them, so
    none serves on without renewals, holding the port a restarted server needs."""
    port = free_port()
    node = _serving_with_workers(tmp_path / "data", port)
    (worker,) = child_pids(node.pid)
    node.kill()
    node.wait(timeout=10)
    assert _gone(worker), "the worker outlived its parent"
    with socket.create_server(("127.0.0.1", port)):
        pass  # the port is free again


def _scraped(url: str, token: str, name: str, label: str) -> dict[str, float]:
    """One scrape of /metrics (on a new connection: any process may answer), read by
    Prometheus's parser: the samples of ``name``, by the value of ``label``."""
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        response = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name
    }


def _signed_by_worker(url: str, token: str) -> dict[str, float]:
    """The refused signatures counted, by worker."""
    return _scraped(url, token, "opensti_calls_signed_total", "worker")


def _restarts(url: str, token: str) -> dict[str, float]:
    """The workers started again, by slot."""
    return _scraped(url, token, "opensti_worker_restarts_total", "slot")


def test_a_scrape_counts_every_worker(tmp_path: Path) -> None:
    """Whichever process answers /metrics, it gives each one's counters under its
    ``worker`` label: a scrape that saw only its own would jump between them."""
    data_dir = tmp_path / "data"
    made = _run(data_dir, "token", "create", "--role", "signer", "--name", "sbc")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = _serving_with_workers(data_dir, port)
    try:
        (worker,) = child_pids(node.pid)
        for pid, count in ((worker, 3), (node.pid, 2)):
            _stop(pid)  # the other process answers these
            try:
                assert [_signs_as_sbc(url, token) for _ in range(count)] == [404] * count
            finally:
                os.kill(pid, signal.SIGCONT)
        expected = {"0": 3.0, "1": 2.0}
        deadline = time.monotonic() + 10
        while (counts := _signed_by_worker(url, token)) != expected:
            assert time.monotonic() < deadline, counts  # published once a second
            time.sleep(0.2)
        # That scrape may have been the worker's own, with its counts live; the first
        # process sees them once the worker has published again (within a second).
        time.sleep(2 * SharedMetrics.PUBLISH_SECONDS)
        assert [_signed_by_worker(url, token) for _ in range(6)] == [expected] * 6
    finally:
        node.terminate()
        node.wait(timeout=30)
