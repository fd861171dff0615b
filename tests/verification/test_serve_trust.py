"""``opensti serve`` with a real-world STI-CA trust list (issue 13): one unusable anchor
is skipped and counted, a NULL-parameter chain verifies over REST and SIP, the x5u
policy comes from the settings, and a trust list with nothing usable does not stop
the service. A real subprocess, real sockets, a real HTTPS x5u repository."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from opensti.core.identity import format_identity
from opensti.core.passport import ShakenClaims, sign_passport
from opensti.sandbox.pki import DemoPKI
from tests._servers import Route, TLSFiles, client_env, free_udp_port, make_tls_files, serve
from tests._sti_ca_chains import NullParamPKI
from tests.sip.sip_support import DEST, ORIG, request, udp_client

pytestmark = pytest.mark.integration

OPENSTI = str(Path(sys.executable).with_name("opensti"))
BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB!!not base64\n-----END CERTIFICATE-----\n"
_SERVING = re.compile(r"opensti serving on (http://\S+)")


@dataclass
class Served:
    url: str
    sip: tuple[str, int]
    process: subprocess.Popen[str]
    env: dict[str, str]
    errors: list[str] = field(default_factory=list)
    signer: str | None = None

    def api_token(self, role: str = "operator") -> str:
        """A token for ``/api/v1`` (or, of the signer role, for the STIR API and
        ``/metrics``), made by the CLI on the same store."""
        made = subprocess.run(
            [OPENSTI, "token", "create", "--role", role, "--json"],
            env=self.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        token: str = json.loads(made.stdout)["token"]
        return token

    def sbc_headers(self) -> dict[str, str]:
        """The SBC's credential on the STIR API: a signer token, made once."""
        if self.signer is None:
            self.signer = self.api_token("signer")
        return {"Authorization": f"Bearer {self.signer}"}


@dataclass
class Site:
    tls: TLSFiles
    bundle: Path
    identity: str


def _start(tmp_path: Path, anchors: Path, tls: TLSFiles, **env: str) -> Served:
    data = tmp_path / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    sip_port = free_udp_port()
    environment = client_env(
        OPENSTI_DATA_DIR=str(data),
        OPENSTI_CA_TRUST_ANCHORS=str(anchors),
        OPENSTI_LOG_LEVEL="WARNING",
        SSL_CERT_FILE=str(tls.root_pem),
        **env,
    )
    process = subprocess.Popen(
        [OPENSTI, "serve", "--insecure-http", "--host=127.0.0.1", "--port=0", "--no-worker",
         f"--sip-listen=udp:127.0.0.1:{sip_port}/verify"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    timer = threading.Timer(90, process.kill)
    timer.start()
    assert process.stdout is not None
    match = None
    try:
        while match is None:
            line = process.stdout.readline()
            if not line:
                pytest.fail(
                    f"opensti serve did not start: {process.stderr and process.stderr.read()}"
                )
            match = _SERVING.search(line)
    finally:
        timer.cancel()
    served = Served(match.group(1), ("127.0.0.1", sip_port), process, environment)
    assert process.stderr is not None
    threading.Thread(target=lambda: served.errors.extend(process.stderr), daemon=True).start()  # type: ignore[arg-type]
    threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    return served


def _stop(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    try:
        assert served.process.wait(timeout=30) == 0, "".join(served.errors)
    except subprocess.TimeoutExpired:
        served.process.kill()
        pytest.fail("opensti serve did not stop on SIGTERM")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A NULL-parameter chain on an HTTPS repository on 127.0.0.1, and a call under it."""
    base = tmp_path_factory.mktemp("site")
    tls = make_tls_files(base / "tls")
    odd = NullParamPKI.create(root=True, intermediate=True, leaf=True)
    key, chain = odd.issue("1234")
    (base / "bundle.pem").write_bytes(
        odd.root_pem + BROKEN_PEM + DemoPKI(dt.datetime.now(dt.UTC)).root.pem
    )
    with serve(tls) as repository:
        repository.routes["/sti-cr/1234.pem"] = Route.body(chain)
        x5u = repository.url("/sti-cr/1234.pem")
        claims = ShakenClaims(
            orig=ORIG, dest=(DEST,), iat=int(time.time()), attest="A", origid=str(uuid.uuid4())
        )
        identity = format_identity(sign_passport(claims, key=key, x5u=x5u), x5u)
        yield Site(tls, base / "bundle.pem", identity)


def _rest_verstat(served: Served, identity: str) -> dict[str, object]:
    body = {
        "verificationRequest": {
            "from": {"tn": ORIG},
            "to": {"tn": [DEST]},
            "identity": identity,
        }
    }
    answer = httpx.post(
        f"{served.url}/stir/v1/verification", json=body, headers=served.sbc_headers(), timeout=30
    )
    assert answer.status_code == 200, answer.text
    response: dict[str, object] = answer.json()["verificationResponse"]
    return response


def _anchor_counts(served: Served) -> tuple[int, int]:
    """Trust anchors loaded and skipped, from /metrics."""
    metrics = httpx.get(f"{served.url}/metrics", headers=served.sbc_headers(), timeout=30).text
    found = dict(re.findall(r'^opensti_trust_anchors\{state="(\w+)"\} (\d+)$', metrics, re.M))
    return int(found["loaded"]), int(found["skipped"])


async def test_null_parameter_chain_verifies_over_rest_and_sip(site: Site, tmp_path: Path) -> None:
    served = _start(tmp_path, site.bundle, site.tls, OPENSTI_X5U_PRIVATE_HOSTS="127.0.0.1")
    try:
        response = _rest_verstat(served, site.identity)
        assert response["verstat"] == "TN-Validation-Passed", response
        assert _anchor_counts(served) == (2, 1)
        verified = httpx.post(
            f"{served.url}/api/v1/verify",
            json={"identity": site.identity, "from": ORIG, "to": DEST},
            headers={"Authorization": f"Bearer {served.api_token()}"},
            timeout=30,
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["verstat"] == "TN-Validation-Passed"
        invite = request(headers=[("Identity", site.identity)])
        async with udp_client(served.sip) as client:
            answer = await client.exchange(invite)
        assert answer.status == 302, answer
        assert "verstat=TN-Validation-Passed" in str(answer.header("from"))
    finally:
        _stop(served)
    warnings = [line for line in served.errors if "trust anchor skipped" in line]
    assert len(warnings) == 1, served.errors
    assert "base64" in warnings[0]


async def test_nothing_usable_does_not_stop_the_service(site: Site, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"this is not a certificate bundle\n")
    served = _start(tmp_path, junk, site.tls, OPENSTI_X5U_PRIVATE_HOSTS="127.0.0.1")
    try:
        response = _rest_verstat(served, site.identity)
        assert response["verstat"] == "TN-Validation-Failed", response
        assert _anchor_counts(served) == (0, 1)
    finally:
        _stop(served)
    assert any("no usable trust anchor" in line for line in served.errors), served.errors
