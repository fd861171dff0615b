"""``opensti serve`` as a real subprocess, probed from outside: TLS material that does
not load and a busy port stop it with one line; the public STI-CR listener and the
internal one each answer 404 for the other's paths; the STIR API wants a credential
(a signer token, or a client certificate with mutual TLS); X-Forwarded-For from a peer
that is not a configured proxy does not change the address the sign-in limit counts."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests._servers import TLSFiles, free_port, make_client_pki, make_tls_files

pytestmark = pytest.mark.integration

OPENSTI = str(Path(sys.executable).with_name("opensti"))
SIGNING = {"signingRequest": {"orig": {"tn": "12155550121"}, "dest": {"tn": ["12155550131"]}}}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSTI_")}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    env["OPENSTI_LOG_LEVEL"] = "WARNING"
    return {**env, **extra}


def _run(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSTI, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=60,
        check=False,
    )


@contextmanager
def _serving(data_dir: Path, *args: str, lines: int = 1, **env: str) -> Iterator[list[str]]:
    """``opensti serve --no-worker ...`` until SIGTERM; the URLs it announces."""
    command = [OPENSTI, "--data-dir", str(data_dir), "serve", "--no-worker", *args]
    node = subprocess.Popen(
        command, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        urls: list[str] = []
        while len(urls) < lines:
            line = node.stdout.readline()
            assert line, node.stderr.read() if node.stderr else ""
            match = re.search(r"serving on (\S+)", line)
            if match:
                urls.append(match.group(1))
        yield urls
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def _one_line_failure(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert text in errors[0], result.stderr


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_unusable_tls_material_stops_serve_with_one_line(tls: TLSFiles, tmp_path: Path) -> None:
    other = make_tls_files(tmp_path / "other", label="other")
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    port = str(free_port())
    cases = [
        (tmp_path / "missing.pem", tls.key_pem, "no such file"),
        (tls.cert_pem, other.key_pem, "cannot load the TLS certificate"),
        (junk, tls.key_pem, "cannot load the TLS certificate"),
    ]
    for cert, key, text in cases:
        result = _run(
            tmp_path / "data",
            "serve",
            "--no-worker",
            "--port",
            port,
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        )
        _one_line_failure(result, text)


def test_a_busy_port_stops_serve_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        result = _run(tmp_path / "data", "serve", "--no-worker", "--insecure-http", "--port", port)
    _one_line_failure(result, "cannot listen on 127.0.0.1")


def test_the_public_sti_cr_and_the_internal_listener_are_apart(tmp_path: Path) -> None:
    internal, public = free_port(), free_port()
    args = ("--insecure-http", "--port", str(internal), "--sti-cr-listen", f"127.0.0.1:{public}")
    with _serving(tmp_path / "data", *args, lines=2) as (inside, outside):
        assert outside == f"http://127.0.0.1:{public}"
        with httpx.Client(trust_env=False, timeout=10) as http:
            for path in ("/health", "/metrics", "/stir/v1/signing", "/api/v1/calls", "/login"):
                response = http.get(outside + path)
                assert (response.status_code, response.text) == (404, "not found"), path
            response = http.post(outside + "/stir/v1/signing", json=SIGNING)
            assert response.status_code == 404
            assert http.get(inside + "/sti-cr/1.pem").text == "not found"
            # The STI-CR answers on its own listener (no such certificate here).
            answer = http.get(outside + "/sti-cr/1.pem")
            assert answer.status_code == 404
            assert answer.text != "not found"
            assert http.get(inside + "/health").status_code == 200


def test_serve_wants_a_signer_token_on_the_stir_api(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = _run(data_dir, "token", "create", "--role", "signer", "--name", "sbc")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    reader = _run(data_dir, "token", "create", "--role", "read-only").stdout.strip()
    port = str(free_port())
    with (
        _serving(data_dir, "--insecure-http", "--port", port) as (url,),
        httpx.Client(base_url=url, trust_env=False, timeout=10) as http,
    ):
        refused = http.post("/stir/v1/signing", json=SIGNING)
        assert refused.status_code == 401
        assert "policyException" in refused.json()["requestError"]
        wrong_role = {"Authorization": f"Bearer {reader}"}
        assert http.post("/stir/v1/signing", json=SIGNING, headers=wrong_role).status_code == 403
        assert http.get("/metrics", headers=wrong_role).status_code == 200
        assert http.get("/metrics").status_code == 401
        signer = {"Authorization": f"Bearer {token}"}
        # In: the request is now judged on its content (no signing entry here).
        let_in = http.post("/stir/v1/signing", json=SIGNING, headers=signer)
        assert let_in.status_code == 404, let_in.text
        assert let_in.json()["error"]["type"] == "NoSigningEntry"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_mutual_tls_lets_a_client_certificate_in(
    tls: TLSFiles, tmp_path: Path, workers: str
) -> None:
    """With forked workers, connections come through opensti's own accept (see
    :class:`opensti.prefork.BalancedAcceptor`): the handshake and the chain it verified
    reach the STIR API the same way."""
    client_ca, cert, key = make_client_pki(tmp_path / "sbc")
    port = str(free_port())
    args = ["--port", port, "--tls-cert", str(tls.cert_pem), "--tls-key", str(tls.key_pem)]
    args += ["--workers", workers]
    env = {"OPENSTI_STIR_CLIENT_CA_FILE": str(client_ca)}
    with _serving(tmp_path / "data", *args, **env) as (url,):
        plain = ssl.create_default_context(cafile=str(tls.root_pem))
        with httpx.Client(base_url=url, verify=plain, trust_env=False, timeout=10) as http:
            assert http.post("/stir/v1/signing", json=SIGNING).status_code == 401
            assert http.get("/health").status_code == 200  # no certificate needed here
        mutual = ssl.create_default_context(cafile=str(tls.root_pem))
        mutual.load_cert_chain(str(cert), str(key))
        with httpx.Client(base_url=url, verify=mutual, trust_env=False, timeout=10) as http:
            let_in = http.post("/stir/v1/signing", json=SIGNING)
            assert let_in.status_code == 404, let_in.text  # in; no signing entry here
        # A certificate from another CA does not get through the handshake.
        foreign = ssl.create_default_context(cafile=str(tls.root_pem))
        foreign.load_cert_chain(str(tls.cert_pem), str(tls.key_pem))
        with (
            httpx.Client(base_url=url, verify=foreign, trust_env=False, timeout=10) as http,
            pytest.raises(httpx.HTTPError),
        ):
            http.post("/stir/v1/signing", json=SIGNING)


def test_forwarded_for_is_ignored_from_a_peer_that_is_no_proxy(tmp_path: Path) -> None:
    """Five wrong sign-ins from 127.0.0.1, each claiming another address: the address
    counter still locks 127.0.0.1 (uvicorn alone would believe loopback peers)."""
    port = str(free_port())
    with (
        _serving(tmp_path / "data", "--insecure-http", "--port", port) as (url,),
        httpx.Client(base_url=url, trust_env=False, timeout=10) as http,
    ):
        page = http.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

        def guess(name: str, forwarded: str) -> int:
            data = {"username": name, "password": "wrong password", "csrf_token": token}
            headers = {"X-Forwarded-For": forwarded}
            return http.post("/login", data=data, headers=headers).status_code

        for i in range(5):
            assert guess(f"user{i}", f"198.51.100.{i}") == 400
        assert guess("someone-else", "198.51.100.99") == 429
