"""The ``opensti passport sign|verify|decode`` contract (issue 3, section 3), end to end.

Every test runs the installed ``opensti`` console script as a subprocess, the way a
user or a script does; x5u fetching goes to a real HTTPS server on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opensti.core.identity import parse_identity
from opensti.core.passport import b64url_decode, decode_passport
from opensti.sandbox.pki import DemoPKI, issue_crl, private_key_pem, to_pem
from tests._servers import LocalHTTPServer, Route, TLSFiles, client_env, make_tls_files, serve

pytestmark = pytest.mark.integration

OPENSTI = Path(sys.executable).with_name("opensti")
ORIG = "12155550121"
DEST = "12155550131"
X5U = "https://sti-cr.example.net/1234.pem"
RESULT_KEYS = {
    "verstat", "sip_code", "reason", "attest", "orig", "dest", "origid", "iat", "x5u",
    "trust_anchors",
}  # fmt: skip


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OPENSTI), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=client_env(**env),
        check=False,
    )


def assert_usage_error(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 2, nothing on stdout, one line on stderr, no traceback."""
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@dataclass(frozen=True)
class Files:
    pki: DemoPKI
    key: Path
    chain: Path
    anchors: Path
    stipa: Path
    crl_empty: Path
    crl_revoked: Path
    crl_by_root: Path
    rsa_key: Path
    tls: TLSFiles

    @property
    def iat(self) -> str:
        """The instant the PKI was made, as ``--iat``/``--now`` (certs are valid then)."""
        return str(int(self.pki.now.timestamp()))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """A sandbox PKI valid now (``sign`` stamps the real time) written to files."""
    base = tmp_path_factory.mktemp("pki")
    pki = DemoPKI(now=dt.datetime.now(dt.UTC))
    key, cert = pki.issue("1234")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = {
        "key": private_key_pem(key),
        "chain": pki.chain_pem(cert),
        "anchors": to_pem([pki.root.certificate]),
        "stipa": pki.stipa.pem,
        "crl_empty": pki.crl().public_bytes(serialization.Encoding.PEM),
        "crl_revoked": pki.crl([cert.serial_number]).public_bytes(serialization.Encoding.PEM),
        "crl_by_root": issue_crl(
            pki.root, revoked=[(cert.serial_number, pki.now)], now=pki.now
        ).public_bytes(serialization.Encoding.DER),
        "rsa_key": rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    for name, data in paths.items():
        (base / f"{name}.pem").write_bytes(data)
    return Files(
        pki=pki,
        tls=make_tls_files(base / "tls"),
        **{name: base / f"{name}.pem" for name in paths},  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def identity(files: Files) -> str:
    """One full-form header signed at ``files.iat``, for tests that only need a valid one."""
    return sign(files, "--iat", files.iat, "--origid", "abc")


def sign(files: Files, *extra: str, x5u: str = X5U) -> str:
    proc = run(
        "passport", "sign", "--key", str(files.key), "--x5u", x5u,
        "--orig", ORIG, "--dest", DEST, "--attest", "A", *extra,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n")
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    return lines[0]


def verify(files: Files, identity: str, *extra: str, **env: str) -> tuple[int, dict[str, object]]:
    """Run verify (at ``files.iat`` unless ``--now`` is given); return exit code and JSON."""
    now = () if "--now" in extra else ("--now", files.iat)
    proc = run(
        "passport", "verify", "--identity", identity, "--trust-anchors", str(files.anchors),
        *now, *extra, **env,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    assert set(result) == RESULT_KEYS
    return proc.returncode, result


# sign


def test_sign_prints_the_identity_value_with_defaults(files: Files) -> None:
    before = int(time.time())
    value = sign(files)
    after = int(time.time())
    assert not value.lower().startswith("identity")
    header = parse_identity(value)
    assert (header.info, header.alg, header.ppt) == (X5U, "ES256", "shaken")
    assert value.endswith(f";info=<{X5U}>;alg=ES256;ppt=shaken")
    passport = decode_passport(header.token)
    assert passport.header == {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
    payload = passport.payload
    assert payload["orig"] == {"tn": ORIG}
    assert payload["dest"] == {"tn": [DEST]}
    assert payload["attest"] == "A"
    assert uuid.UUID(payload["origid"]).version == 4
    assert before <= payload["iat"] <= after
    assert len(passport.signature) == 64


def test_sign_defaults_differ_per_call(files: Files) -> None:
    first = decode_passport(parse_identity(sign(files)).token).payload["origid"]
    second = decode_passport(parse_identity(sign(files)).token).payload["origid"]
    assert first != second


def test_sign_with_explicit_claims_and_canonicalization(files: Files) -> None:
    proc = run(
        "passport", "sign", "--key", str(files.key), "--x5u", X5U,
        "--orig", "tel:+1-215-555-0121", "--dest", "sip:+12155550131@example.com;user=phone",
        "--dest", "(215) 555-0199", "--attest", "C",
        "--origid", "de305d54-75b4-431b-adb2-eb6b9e546014", "--iat", files.iat,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = decode_passport(parse_identity(proc.stdout.strip()).token).payload
    assert payload == {
        "attest": "C",
        "dest": {"tn": [DEST, "12155550199"]},
        "iat": int(files.iat),
        "orig": {"tn": ORIG},
        "origid": "de305d54-75b4-431b-adb2-eb6b9e546014",
    }


def test_sign_compact(files: Files) -> None:
    value = sign(files, "--compact")
    header = parse_identity(value)
    assert header.is_compact
    assert len(b64url_decode(header.signature_segment)) == 64
    assert header.info == X5U


# verify with a local chain file


def test_verify_passes_with_cert_file(files: Files, identity: str) -> None:
    now = str(int(files.iat) + 30)
    code, result = verify(
        files, identity, "--orig", ORIG, "--dest", DEST, "--cert-file", str(files.chain),
        "--now", now,
    )  # fmt: skip
    assert code == 0
    assert result == {
        "verstat": "TN-Validation-Passed",
        "sip_code": None,
        "reason": "verified",
        "attest": "A",
        "orig": ORIG,
        "dest": [DEST],
        "origid": "abc",
        "iat": int(files.iat),
        "x5u": X5U,
        "trust_anchors": {"loaded": 1, "skipped": []},
    }


def test_verify_accepts_uncanonical_signalling_numbers(files: Files, identity: str) -> None:
    code, result = verify(
        files, identity, "--orig", "+1 (215) 555-0121", "--dest", "tel:+12155550131",
        "--cert-file", str(files.chain),
    )  # fmt: skip
    assert code == 0, result


def test_verify_stale_and_max_age(files: Files, identity: str) -> None:
    iat = int(files.iat)
    args = ("--cert-file", str(files.chain), "--now", str(iat + 61))
    code, result = verify(files, identity, *args)
    assert code == 1
    assert (result["verstat"], result["sip_code"]) == ("TN-Validation-Failed", 403)
    assert str(result["reason"]).startswith("Stale Date")
    assert result["iat"] == iat  # the claims are still reported
    code, result = verify(files, identity, *args, "--max-age", "120")
    assert code == 0, result


def test_verify_number_mismatch(files: Files, identity: str) -> None:
    code, result = verify(files, identity, "--orig", "12155550999", "--cert-file", str(files.chain))
    assert code == 1
    assert result["sip_code"] == 438
    assert str(result["reason"]).startswith("Invalid Identity Header")


def test_verify_revoked_by_crl(files: Files, identity: str) -> None:
    value = identity
    base = ("--cert-file", str(files.chain))
    code, result = verify(files, value, *base, "--crl", str(files.crl_empty),
                          "--crl-signer", str(files.stipa))  # fmt: skip
    assert code == 0, result
    code, result = verify(files, value, *base, "--crl", str(files.crl_revoked),
                          "--crl-signer", str(files.stipa))  # fmt: skip
    assert code == 1
    assert result["sip_code"] == 437
    assert "revoked" in str(result["reason"])


def test_verify_crl_signed_by_an_anchor_needs_no_signer(files: Files, identity: str) -> None:
    code, result = verify(
        files, identity, "--cert-file", str(files.chain), "--crl", str(files.crl_by_root)
    )
    assert code == 1
    assert "revoked" in str(result["reason"])


def test_verify_refuses_a_crl_it_cannot_check(files: Files, identity: str) -> None:
    code, result = verify(
        files, identity, "--cert-file", str(files.chain), "--crl", str(files.crl_empty)
    )
    assert code == 1
    assert result["sip_code"] == 437
    assert "CRL" in str(result["reason"])


def test_verify_untrusted_chain(files: Files, identity: str, tmp_path: Path) -> None:
    other = tmp_path / "other-root.pem"
    other.write_bytes(to_pem([DemoPKI(now=files.pki.now).root.certificate]))
    proc = run(
        "passport", "verify", "--identity", identity, "--trust-anchors", str(other),
        "--cert-file", str(files.chain), "--now", files.iat,
    )  # fmt: skip
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["sip_code"] == 437


def test_verify_trust_anchor_directory(files: Files, identity: str, tmp_path: Path) -> None:
    # Every file of the directory is read; the right root is one of several.
    (tmp_path / "a-other.pem").write_bytes(to_pem([DemoPKI(now=files.pki.now).root.certificate]))
    (tmp_path / "b-ours.pem").write_bytes(files.anchors.read_bytes())
    proc = run(
        "passport", "verify", "--identity", identity, "--trust-anchors", str(tmp_path),
        "--cert-file", str(files.chain), "--now", files.iat,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout


# verify fetching x5u from a real HTTPS server on 127.0.0.1


@pytest.fixture(scope="module")
def https_server(files: Files) -> Iterator[LocalHTTPServer]:
    with serve(files.tls) as server:
        server.routes["/1234.pem"] = Route.body(files.chain.read_bytes())
        yield server


@pytest.fixture(scope="module")
def http_server(files: Files) -> Iterator[LocalHTTPServer]:
    with serve() as server:
        server.routes["/1234.pem"] = Route.body(files.chain.read_bytes())
        yield server


def test_verify_fetches_x5u_over_https(files: Files, https_server: LocalHTTPServer) -> None:
    url = https_server.url("/1234.pem")
    code, result = verify(
        files,
        sign(files, "--iat", files.iat, x5u=url),
        "--allow-private-x5u",
        SSL_CERT_FILE=str(files.tls.root_pem),
    )
    assert code == 0, result
    assert result["x5u"] == url
    assert "/1234.pem" in https_server.requests


def test_verify_refuses_loopback_x5u_by_default(
    files: Files, https_server: LocalHTTPServer
) -> None:
    before = len(https_server.requests)
    value = sign(files, "--iat", files.iat, x5u=https_server.url("/1234.pem"))
    code, result = verify(files, value, SSL_CERT_FILE=str(files.tls.root_pem))
    assert code == 1
    assert result["sip_code"] == 436
    assert len(https_server.requests) == before  # refused before connecting


def test_verify_x5u_missing_on_the_server(files: Files, https_server: LocalHTTPServer) -> None:
    value = sign(files, "--iat", files.iat, x5u=https_server.url("/gone.pem"))
    code, result = verify(
        files, value, "--allow-private-x5u", SSL_CERT_FILE=str(files.tls.root_pem)
    )
    assert code == 1
    assert result["sip_code"] == 436
    assert "404" in str(result["reason"])


def test_verify_x5u_tls_not_trusted(files: Files, https_server: LocalHTTPServer) -> None:
    other_tls = make_tls_files(files.anchors.parent / "other-tls", label="other")
    value = sign(files, "--iat", files.iat, x5u=https_server.url("/1234.pem"))
    code, result = verify(
        files, value, "--allow-private-x5u", SSL_CERT_FILE=str(other_tls.root_pem)
    )
    assert code == 1
    assert result["sip_code"] == 436


def test_verify_http_x5u_needs_the_flag(files: Files, http_server: LocalHTTPServer) -> None:
    value = sign(files, "--iat", files.iat, "--allow-http-x5u", x5u=http_server.url("/1234.pem"))
    code, result = verify(files, value, "--allow-private-x5u")
    assert code == 1
    assert result["sip_code"] == 436
    code, result = verify(files, value, "--allow-private-x5u", "--allow-http-x5u")
    assert code == 0, result


# decode


def test_decode_prints_header_and_payload(files: Files) -> None:
    value = sign(files, "--iat", files.iat, "--origid", "abc")
    for argument in (value, f"Identity: {value}", parse_identity(value).token):
        proc = run("passport", "decode", argument)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1
        output = json.loads(lines[0])
        assert output["header"] == {
            "alg": "ES256",
            "ppt": "shaken",
            "typ": "passport",
            "x5u": X5U,
        }
        assert output["payload"]["iat"] == int(files.iat)
        assert output["payload"]["origid"] == "abc"


def test_decode_does_not_verify(files: Files) -> None:
    # A stale PASSporT with a signature nobody can check still decodes.
    stale = str(int(files.iat) - 600)
    value = sign(files, "--iat", stale)
    header, payload, _ = parse_identity(value).token.split(".")
    proc = run("passport", "decode", f"{header}.{payload}.AAAA")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["payload"]["iat"] == int(stale)


# Bad input: one line on stderr, exit 2, never a traceback.


def test_sign_missing_key_file(files: Files, tmp_path: Path) -> None:
    assert_usage_error(run(
        "passport", "sign", "--key", str(tmp_path / "nope.pem"), "--x5u", X5U,
        "--orig", ORIG, "--dest", DEST, "--attest", "A",
    ))  # fmt: skip


@pytest.mark.parametrize("key_name", ["rsa_key", "chain"], ids=["rsa", "not-a-key"])
def test_sign_key_that_is_not_p256(files: Files, key_name: str) -> None:
    proc = run(
        "passport", "sign", "--key", str(getattr(files, key_name)), "--x5u", X5U,
        "--orig", ORIG, "--dest", DEST, "--attest", "A",
    )  # fmt: skip
    assert_usage_error(proc)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--orig", "1-800-FLOWERS"), ("--dest", "215555O121"), ("--attest", "D")],
)
def test_sign_bad_values(files: Files, option: str, value: str) -> None:
    args = {"--orig": ORIG, "--dest": DEST, "--attest": "A", option: value}
    flat = [item for pair in args.items() for item in pair]
    assert_usage_error(run("passport", "sign", "--key", str(files.key), "--x5u", X5U, *flat))


@pytest.mark.parametrize(
    "args",
    [("--orig", ORIG), ("--orig", ORIG, "--dest", DEST, "--attest", "A", "--iat", "soon")],
    ids=["missing-option", "iat-not-a-number"],
)
def test_sign_option_syntax_errors(files: Files, args: tuple[str, ...]) -> None:
    # What the option parser refuses gets its usage hint, then one error line; exit 2.
    proc = run("passport", "sign", "--key", str(files.key), "--x5u", X5U, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.parametrize(
    "value",
    ["garbage", "a.b.c", f"a.b.c;info={X5U}", ""],
    ids=["garbage", "no-info", "info-without-brackets", "empty"],
)
def test_verify_malformed_header(files: Files, value: str) -> None:
    assert_usage_error(run(
        "passport", "verify", "--identity", value, "--trust-anchors", str(files.anchors),
    ))  # fmt: skip


def test_verify_orig_with_letters(files: Files, identity: str) -> None:
    assert_usage_error(run(
        "passport", "verify", "--identity", identity, "--trust-anchors", str(files.anchors),
        "--orig", "CALLME", "--cert-file", str(files.chain),
    ))  # fmt: skip


@pytest.mark.parametrize("option", ["--trust-anchors", "--cert-file", "--crl"])
def test_verify_missing_files(files: Files, identity: str, tmp_path: Path, option: str) -> None:
    args = {"--trust-anchors": str(files.anchors), "--cert-file": str(files.chain)}
    args[option] = str(tmp_path / "missing.pem")
    flat = [item for pair in args.items() for item in pair]
    assert_usage_error(run("passport", "verify", "--identity", identity, *flat))


def test_verify_trust_anchors_not_certificates(files: Files, identity: str) -> None:
    """Trust-bundle content is never a usage error: the call fails, with one error line."""
    proc = run(
        "passport", "verify", "--identity", identity, "--trust-anchors", str(files.key),
        "--now", files.iat,
    )  # fmt: skip
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["sip_code"] == 437
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize("header", ["garbage", "a.b.c;info=<https://x.example/>", "..AAAA"])
def test_decode_malformed(header: str) -> None:
    assert_usage_error(run("passport", "decode", header))
