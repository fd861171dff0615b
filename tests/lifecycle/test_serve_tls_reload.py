"""``opensti serve`` loads a renewed TLS certificate without a restart: new
connections get it, open ones keep theirs, and files caught half-written are refused
whole (the previous certificate stays served)."""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests._servers import TLSFiles, make_tls_files
from tests.lifecycle.test_serve_doors import OPENSTI, _env, _free_port

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
    deadline = time.monotonic() + 10
    while _served_certificate(port) != _der(files):
        assert time.monotonic() < deadline, f"{files.cert_pem.name} was not loaded"
        time.sleep(0.1)


def _install(files: TLSFiles, cert: Path, key: Path) -> None:
    """Write ``files`` over the served paths in place, certificate first."""
    shutil.copyfile(files.cert_pem, cert)
    shutil.copyfile(files.key_pem, key)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path, workers: str) -> None:
    first = make_tls_files(tmp_path / "first", label="first")
    renewed = make_tls_files(tmp_path / "renewed", label="renewed")
    cert, key = tmp_path / "live" / "fullchain.pem", tmp_path / "live" / "key.pem"
    cert.parent.mkdir()
    _install(first, cert, key)
    port = _free_port()
    command = [OPENSTI, "--data-dir", str(tmp_path / "data"), "serve", "--no-worker"]
    command += ["--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)]
    command += ["--workers", workers]
    env = _env(OPENSTI_TLS_RELOAD_SECONDS=RELOAD_SECONDS, OPENSTI_LOG_LEVEL="INFO")
    node = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        assert re.search(r"serving on https://", node.stdout.readline()), node.stderr
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
    finally:
        node.send_signal(signal.SIGTERM)
        _, errors = node.communicate(timeout=30)
    assert node.returncode == 0, errors
    assert f"TLS certificate {cert} loaded again" in errors
    assert "changed but does not load" in errors
    assert "still serving the previous one" in errors
