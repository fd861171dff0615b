"""``opensti passport verify`` with real-world trust material (issue 13): trust bundles
read one anchor at a time, NULL-parameter and RSA STI-CA chains, the x5u policy from
the settings. Runs the installed console script, as a user does."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.identity import format_identity
from opensti.core.passport import ShakenClaims, sign_passport
from opensti.sandbox.pki import DemoPKI, to_pem
from tests._servers import LocalHTTPServer, Route, client_env, serve
from tests._sti_ca_chains import NullParamPKI, rsa_ca_pki

pytestmark = pytest.mark.integration

OPENSTI = Path(sys.executable).with_name("opensti")
ORIG = "12155550121"
DEST = "12155550131"
BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB!!not base64\n-----END CERTIFICATE-----\n"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OPENSTI), *args], capture_output=True, text=True, timeout=120,
        env=client_env(**env), check=False,
    )  # fmt: skip


def identity(key: ec.EllipticCurvePrivateKey, x5u: str) -> str:
    claims = ShakenClaims(
        orig=ORIG, dest=(DEST,), iat=int(time.time()), attest="A", origid=str(uuid.uuid4())
    )
    return format_identity(sign_passport(claims, key=key, x5u=x5u), x5u)


def verify(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    proc = run("passport", "verify", "--orig", ORIG, "--dest", DEST, *args, **env)
    assert proc.returncode in (0, 1), proc
    assert "Traceback" not in proc.stderr
    return proc, json.loads(proc.stdout)


@dataclass(frozen=True)
class Signer:
    key: ec.EllipticCurvePrivateKey
    chain: Path
    anchors: Path

    def verify_local(
        self, x5u: str = "https://sti-cr.example.net/1234.pem"
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
        """A call signed for ``x5u``, verified with the chain from ``--cert-file``."""
        return verify(
            "--identity", identity(self.key, x5u), "--trust-anchors", str(self.anchors),
            "--cert-file", str(self.chain),
        )  # fmt: skip


@pytest.fixture(scope="module")
def null_signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """A chain under a T-Mobile-shaped root and sub-CA, and a bundle holding that root,
    an ordinary root, a broken PEM block and a certificate that is no CA."""
    base = tmp_path_factory.mktemp("null")
    odd = NullParamPKI.create()
    key, chain = odd.issue("1234")
    ordinary = DemoPKI(dt.datetime.now(dt.UTC))
    _, not_ca = ordinary.issue("9999")
    bundle = odd.root_pem + BROKEN_PEM + ordinary.root.pem + to_pem([not_ca])
    (base / "chain.pem").write_bytes(chain)
    (base / "bundle.pem").write_bytes(bundle)
    return Signer(key, base / "chain.pem", base / "bundle.pem")


def test_null_parameter_chain_verifies_with_a_mixed_bundle(null_signer: Signer) -> None:
    proc, result = null_signer.verify_local()
    assert proc.returncode == 0, result
    assert result["verstat"] == "TN-Validation-Passed"
    anchors = result["trust_anchors"]
    assert isinstance(anchors, dict)
    assert anchors["loaded"] == 2
    reasons = [skipped["reason"] for skipped in anchors["skipped"]]
    assert len(reasons) == 2
    assert any("base64" in reason for reason in reasons)
    assert any("not a CA" in reason for reason in reasons)
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 2
    assert all(line.startswith("warning: trust anchor skipped: ") for line in warnings)
    assert any("CN=SHAKEN 9999" in line and "sha256 " in line for line in warnings)


def test_bundle_with_nothing_usable_fails_the_call_not_the_command(
    null_signer: Signer, tmp_path: Path
) -> None:
    """Not PEM at all, empty, a directory of such files: 437 and one error line."""
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    (tmp_path / "empty.pem").write_bytes(b"")
    value = identity(null_signer.key, "https://sti-cr.example.net/1234.pem")
    proc, result = verify(
        "--identity", value, "--trust-anchors", str(tmp_path),
        "--cert-file", str(null_signer.chain),
    )  # fmt: skip
    assert proc.returncode == 1
    assert result["sip_code"] == 437
    assert "no usable trust anchor" in str(result["reason"])
    report = result["trust_anchors"]
    assert isinstance(report, dict)
    assert report["loaded"] == 0
    skipped = {Path(item["source"]).name: item for item in report["skipped"]}
    assert skipped["empty.pem"]["reason"] == "no certificate"
    assert "not a PEM or DER" in skipped["notes.txt"]["reason"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "no usable trust anchor" in errors[0]


def test_rsa_ca_chain_follows_the_policy(tmp_path: Path) -> None:
    rsa_pki = rsa_ca_pki()
    key, leaf = rsa_pki.issue("1234")
    (tmp_path / "chain.pem").write_bytes(rsa_pki.chain_pem(leaf))
    (tmp_path / "root.pem").write_bytes(to_pem([rsa_pki.root]))
    value = identity(key, "https://sti-cr.example.net/1234.pem")
    args = ("--identity", value, "--trust-anchors", str(tmp_path / "root.pem"),
            "--cert-file", str(tmp_path / "chain.pem"))  # fmt: skip
    proc, result = verify(*args)
    assert proc.returncode == 0, result
    proc, result = verify(*args, "--no-rsa-ca")
    assert result["sip_code"] == 437
    assert "RSA CA policy" in str(result["reason"])
    proc, result = verify(*args, OPENSTI_VERIFY_RSA_CA="false")
    assert result["sip_code"] == 437


def test_x5u_policy_from_the_settings(null_signer: Signer) -> None:
    """http x5u and a private host come from the environment; the deny list wins."""
    with serve() as http_server:
        http_server.routes["/1234.pem"] = Route.body(null_signer.chain.read_bytes())
        _check_x5u_policy(null_signer, http_server)


def _check_x5u_policy(null_signer: Signer, http_server: LocalHTTPServer) -> None:
    url = http_server.url("/1234.pem")
    value = identity(null_signer.key, url)
    args = ("--identity", value, "--trust-anchors", str(null_signer.anchors))
    _, refused = verify(*args)
    assert refused["sip_code"] == 436
    allowed = {"OPENSTI_X5U_ALLOW_HTTP": "true", "OPENSTI_X5U_PRIVATE_HOSTS": "127.0.0.0/8"}
    proc, result = verify(*args, **allowed)
    assert proc.returncode == 0, result
    _, denied = verify(*args, **allowed, OPENSTI_X5U_DENY_HOSTS="127.0.0.*")
    assert denied["sip_code"] == 436
    assert "deny list" in str(denied["reason"])


def test_cert_file_does_not_reject_an_http_x5u_it_never_fetches(null_signer: Signer) -> None:
    proc, result = null_signer.verify_local("http://sti-cr.example.net/1234.pem")
    assert proc.returncode == 0, result
