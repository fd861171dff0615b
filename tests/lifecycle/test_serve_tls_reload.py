"""``opensti serve`` loads a renewed TLS certificate without a restart: new
connections get it, open ones keep theirs, and files caught half-written are refused
whole (the previous certificate stays served); an idle TLS client does not hold a stop."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from opensti.cli._listeners import CertificateReloader, TLSMaterial
from tests._servers import TLSFiles, free_port, make_client_pki, make_tls_files
from tests.lifecycle.test_serve_doors import OPENSTI, SIGNING, _env

pytestmark = pytest.mark.integration

#: How often the server under test looks at its TLS files (the default is 30 s).
RELOAD_SECONDS = "0.2"


def _served_certificate(port: int) -> bytes:
    """The DER certificate a new connection gets (any process may take it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def _der(files: TLSFiles) -> bytes:
    return ssl.PEM_cert_to_DER_cert(files.cert_pem.read_text())


def _wait_served(port: int, files: TLSFiles) -> None:
    """Until eight new connections in a row get ``files``: each process looks at the
    files on a timer of its own, so one may load them a moment after the other."""
    deadline = time.monotonic() + 10
    while {_served_certificate(port) for _ in range(8)} != {_der(files)}:
        assert time.monotonic() < deadline, f"{files.cert_pem.name} was not loaded"
        time.sleep(0.1)


def _install(files: TLSFiles, cert: Path, key: Path) -> None:
    """Write ``files`` over the served paths in place, certificate first."""
    shutil.copyfile(files.cert_pem, cert)
    shutil.copyfile(files.key_pem, key)


@dataclass
class _Node:
    """A TLS ``opensti serve`` that looks at its files every RELOAD_SECONDS."""

    port: int
    #: Its log (stderr), once it has stopped.
    log: str = ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextlib.contextmanager
def _reloading(tmp_path: Path, cert: Path, key: Path, workers: str, **env: str) -> Iterator[_Node]:
    node = _Node(free_port())
    command = [OPENSTI, "--data-dir", str(tmp_path / "data"), "serve", "--no-worker"]
    command += ["--port", str(node.port), "--tls-cert", str(cert), "--tls-key", str(key)]
    command += ["--workers", workers]
    env = _env(OPENSTI_TLS_RELOAD_SECONDS=RELOAD_SECONDS, OPENSTI_LOG_LEVEL="INFO", **env)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert re.search(r"serving on https://", process.stdout.readline()), process.stderr
        yield node
    finally:
        process.send_signal(signal.SIGTERM)
        _, node.log = process.communicate(timeout=30)
    assert process.returncode == 0, node.log


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path, workers: str) -> None:
    first = make_tls_files(tmp_path / "first", label="first")
    renewed = make_tls_files(tmp_path / "renewed", label="renewed")
    cert, key = tmp_path / "live" / "fullchain.pem", tmp_path / "live" / "key.pem"
    cert.parent.mkdir()
    _install(first, cert, key)
    with _reloading(tmp_path, cert, key, workers) as node:
        port = node.port
        assert _served_certificate(port) == _der(first)
        # A kept-alive connection that trusts only the first certificate's root.
        trusting_first = ssl.create_default_context(cafile=str(first.root_pem))
        kept = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=trusting_first)
        kept.request("GET", "/health")
        assert kept.getresponse().read()

        _install(renewed, cert, key)
        _wait_served(port, renewed)
        # Every process loaded it; the connection made before goes on.
        assert {_served_certificate(port) for _ in range(8)} == {_der(renewed)}
        kept.request("GET", "/health")
        assert kept.getresponse().status == 200

        # The next renewal caught half-written: its certificate, the old key. Refused
        # whole; loaded once the key follows.
        third = make_tls_files(tmp_path / "third", label="third")
        shutil.copyfile(third.cert_pem, cert)
        time.sleep(10 * float(RELOAD_SECONDS))
        assert {_served_certificate(port) for _ in range(8)} == {_der(renewed)}
        shutil.copyfile(third.key_pem, key)
        _wait_served(port, third)
        kept.close()
    assert f"TLS certificate {cert} loaded again" in node.log
    assert "changed but do not load" in node.log
    assert "still serving the previous ones" in node.log


def test_a_certificate_near_its_end_is_a_health_problem(tmp_path: Path) -> None:
    """The test certificate is valid for a day: inside the 14-day warning, then past
    its end; a renewal loaded clears the warning."""
    files = make_tls_files(tmp_path / "tls", label="short")
    reloader = CertificateReloader(TLSMaterial(files.cert_pem, files.key_pem))
    assert reloader.not_after is not None
    now = reloader.not_after - dt.timedelta(days=1)
    (problem,) = reloader.problems(now)
    assert problem == (
        f"the TLS certificate {files.cert_pem} expires in 1.0 days: renew it "
        "(it is loaded without a restart)"
    )
    (problem,) = reloader.problems(reloader.not_after + dt.timedelta(seconds=1))
    assert "expired at" in problem
    assert reloader.problems(reloader.not_after - CertificateReloader.EXPIRY_WARNING) == []
    # A renewal with a later end is what the warning is measured on, once loaded.
    later = make_tls_files(tmp_path / "later", label="later")
    shutil.copyfile(later.cert_pem, files.cert_pem)
    shutil.copyfile(later.key_pem, files.key_pem)
    os.utime(files.cert_pem, ns=(0, time.time_ns() + 10**9))  # a new mtime, surely
    assert reloader.check()
    assert (
        reloader.not_after
        == x509.load_pem_x509_certificate(later.cert_pem.read_bytes()).not_valid_after_utc
    )


def test_health_reports_the_certificate_near_its_end(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls", label="short")
    port = free_port()
    command = [OPENSTI, "--data-dir", str(tmp_path / "data"), "serve", "--no-worker"]
    command += ["--port", str(port), "--tls-cert", str(files.cert_pem)]
    command += ["--tls-key", str(files.key_pem)]
    node = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert node.stdout is not None
        assert "serving on https://" in node.stdout.readline()
        trusting = ssl.create_default_context(cafile=str(files.root_pem))
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=trusting)
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()  # an idle TLS client holds the stop for its close_notify
        assert response.status == 200  # degraded, still serving
        assert body["status"] == "degraded"
        assert any(f"TLS certificate {files.cert_pem} expires in" in p for p in body["problems"])
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_idle_tls_client_does_not_hold_the_stop(tmp_path: Path, workers: str) -> None:
    """A kept-alive client that reads nothing never answers the server's close_notify;
    asyncio waits 30 s for it by default, and the stop waited with it."""
    files = make_tls_files(tmp_path / "tls")
    port = free_port()
    command = [OPENSTI, "--data-dir", str(tmp_path / "data"), "serve", "--no-worker"]
    command += ["--port", str(port), "--tls-cert", str(files.cert_pem)]
    command += ["--tls-key", str(files.key_pem), "--workers", workers]
    node = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, text=True)
    idle: list[http.client.HTTPSConnection] = []
    try:
        assert node.stdout is not None
        assert "serving on https://" in node.stdout.readline()
        trusting = ssl.create_default_context(cafile=str(files.root_pem))
        for _ in range(4):  # some on each process
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=trusting)
            connection.request("GET", "/health")
            assert connection.getresponse().read()
            idle.append(connection)
        stopping = time.monotonic()
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0
        assert time.monotonic() - stopping < 20  # asyncio alone waits 30 s per client
    finally:
        for connection in idle:
            connection.close()
        if node.poll() is None:
            node.kill()
            node.wait()


def _let_in(url: str, root: Path, client: tuple[Path, Path]) -> bool:
    """Whether a new connection with this client certificate gets to the STIR API
    (404: no signing entry here) or is refused in the TLS handshake."""
    context = ssl.create_default_context(cafile=str(root))
    context.load_cert_chain(*client)
    try:
        with httpx.Client(base_url=url, verify=context, trust_env=False, timeout=10) as http:
            status = http.post("/stir/v1/signing", json=SIGNING).status_code
    except httpx.HTTPError:
        return False
    assert status == 404, status
    return True


def _wait_let_in(url: str, root: Path, client: tuple[Path, Path], expected: bool) -> None:
    """Until eight new connections in a row are let in (or refused): each process looks
    at the files on a timer of its own."""
    deadline = time.monotonic() + 10
    while {_let_in(url, root, client) for _ in range(8)} != {expected}:
        assert time.monotonic() < deadline, f"{client[0].name} still {not expected}"
        time.sleep(0.1)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_changed_client_ca_file_is_loaded_without_a_restart(tmp_path: Path, workers: str) -> None:
    """An SBC with certificates from a new CA gets in, one whose CA left the file is
    refused (a CA cannot be taken out of a live context), and a file caught
    half-written is refused whole."""
    server = make_tls_files(tmp_path / "server", label="server")
    old_ca, *old_sbc = make_client_pki(tmp_path / "old")
    new_ca, *new_sbc = make_client_pki(tmp_path / "new")
    old, new = (old_sbc[0], old_sbc[1]), (new_sbc[0], new_sbc[1])
    client_ca = tmp_path / "clients.pem"
    shutil.copyfile(old_ca, client_ca)
    ca_env = {"OPENSTI_STIR_CLIENT_CA_FILE": str(client_ca)}
    with _reloading(tmp_path, server.cert_pem, server.key_pem, workers, **ca_env) as node:
        url = node.url
        assert _let_in(url, server.root_pem, old)
        assert not _let_in(url, server.root_pem, new)

        client_ca.write_bytes(new_ca.read_bytes())
        _wait_let_in(url, server.root_pem, new, True)
        assert {_let_in(url, server.root_pem, old) for _ in range(8)} == {False}

        client_ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nhalf")
        time.sleep(10 * float(RELOAD_SECONDS))
        assert {_let_in(url, server.root_pem, new) for _ in range(8)} == {True}
        # The served certificate is the same throughout.
        assert _served_certificate(node.port) == _der(server)
    assert f"client CA file {client_ca} loaded again" in node.log
    assert "changed but do not load" in node.log
