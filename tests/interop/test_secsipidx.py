"""Interop with secsipidx (asipto, Go; the Debian package), both ways.

secsipidx is run with explicit flags because its defaults hide failures: ``-expire``
defaults to 0 (a token is fresh only in the second it was signed) and ``-cert-verify``
to 0 (no certificate checks at all). Where it checks certificates here it runs with
``-cert-verify 21`` = 1 (validity window) + 4 (chain to the roots in ``-ca-file``) +
16 (serial not on the ``-crl-file`` CRL), or 13 with 8 (intermediates from
``-ca-inter``) when it is given the leaf alone. With verification on, ``-fpubkey`` must
be the certificate chain: a bare public key is rejected as a malformed certificate.

secsipidx exits with its int return code modulo 256; :func:`secsipidx_code` turns the
exit status back into the negative codes of ``secsipid/secsipid.go`` so the tests can
tell *why* it refused.

``-sign-full`` stamps the current time and ignores ``-iat``; ``-sign`` honours
``-iat`` but prints only the JWS, so the tests that need a known iat build the header
parameters (``;info=<x5u>;alg=ES256;ppt=shaken``) around it.

The compact form (RFC 8225 section 7, ``..signature``) is not supported by secsipidx:
it cannot produce one, and given opensti's compact output it fails with -231 "empty
payload" before looking at the signature, with or without certificate checks.
:func:`test_secsipidx_rejects_compact_form` pins that behaviour. opensti itself answers
a SHAKEN compact header with 438, as attest and origid cannot be rebuilt from SIP.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opensti.core.identity import format_identity
from opensti.core.passport import ShakenClaims, b64url_decode, b64url_encode, sign_passport
from opensti.sandbox.pki import DemoPKI
from tests._servers import LocalHTTPServer, TLSFiles, client_env, free_port
from tests._sti_ca_chains import NullParamPKI

from .credentials import CHAIN_PATH, Credentials, make_credentials, write_file

SECSIPIDX = "/usr/bin/secsipidx"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not os.access(SECSIPIDX, os.X_OK),
        reason="secsipidx is not installed (Debian package secsipidx; scripts/test.sh installs it)",
    ),
]

ORIG = "12025550100"
DEST = "12025550101"

# Return codes from secsipid/secsipid.go.
CERT_INVALID = -101
CERT_EXPIRED = -103
CERT_REVOKED = -112
HEADER_X5U_MISMATCH = -205
PAYLOAD_EMPTY = -231
IAT_EXPIRED = -232
SIGNATURE_INVALID = -251


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False, env=env or client_env()
    )


def secsipidx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([SECSIPIDX, *args], env)


def secsipidx_code(result: subprocess.CompletedProcess[str]) -> int:
    """The library's negative return code from the process exit status."""
    return result.returncode - 256 if result.returncode else 0


def opensti_cli() -> str:
    beside = Path(sys.executable).with_name("opensti")
    found = str(beside) if beside.exists() else shutil.which("opensti")
    assert found, "the opensti console script is not installed"
    return found


def opensti(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([opensti_cli(), *args], env)


def check_with_public_key(identity: str, creds: Credentials) -> subprocess.CompletedProcess[str]:
    return secsipidx(
        "-check", "-identity", identity, "-fpubkey", str(creds.public_key_pem), "-expire", "60"
    )


def check_with_chain(
    identity: str, creds: Credentials, *, crl: Path | None = None, root: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """secsipidx with certificate checks on: validity, chain to root, CRL."""
    return secsipidx(
        "-check",
        "-identity",
        identity,
        "-fpubkey",
        str(creds.chain_pem),
        "-expire",
        "60",
        "-cert-verify",
        "21",
        "-ca-file",
        str(root or creds.root_pem),
        "-crl-file",
        str(crl or creds.crl_pem),
    )


def assert_secsipidx_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


def opensti_sign(creds: Credentials, x5u: str, attest: str, *extra: str) -> str:
    result = opensti(
        "passport", "sign", "--key", str(creds.key_pem), "--x5u", x5u,
        "--orig", ORIG, "--dest", DEST, "--attest", attest, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    return lines[0]


def api_sign(creds: Credentials, x5u: str, attest: str, *, iat: int | None = None) -> str:
    claims = ShakenClaims(
        orig=ORIG,
        dest=(DEST,),
        iat=int(time.time()) if iat is None else iat,
        attest=attest,
        origid=str(uuid.uuid4()),
    )
    return format_identity(sign_passport(claims, key=creds.key, x5u=x5u), x5u)


def opensti_verify(
    identity: str, creds: Credentials, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    """``opensti passport verify``: exit code and the JSON it printed.

    The call's TNs default to the signed ones; ``extra`` may name others.
    """
    tns = [] if "--orig" in extra else ["--orig", ORIG]
    tns += [] if "--dest" in extra else ["--dest", DEST]
    result = opensti(
        "passport", "verify", "--identity", identity, "--trust-anchors", str(creds.root_pem),
        *tns, *extra, env=env,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def secsipidx_sign(creds: Credentials, x5u: str, attest: str, iat: int, origid: str) -> str:
    """A full Identity header around secsipidx's JWS (``-sign`` is the mode that keeps iat)."""
    result = secsipidx(
        "-sign", "-k", str(creds.key_pem), "-x5u", x5u, "-orig-tn", ORIG, "-dest-tn", DEST,
        "-attest", attest, "-orig-id", origid, "-iat", str(iat),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2
    return format_identity(token, x5u)


def replace_claim(identity: str, **claims: object) -> str:
    """Rewrite payload claims and keep the original signature (a forgery)."""
    token, params = identity.split(";", 1)
    header, payload, signature = token.split(".")
    decoded = json.loads(b64url_decode(payload))
    decoded.update(claims)
    forged = b64url_encode(json.dumps(decoded, separators=(",", ":")).encode())
    return f"{header}.{forged}.{signature};{params}"


# --- opensti signs, secsipidx verifies -------------------------------------------------


@pytest.mark.parametrize("attest", ["A", "B", "C"])
@pytest.mark.parametrize("signer", ["cli", "api"])
def test_secsipidx_verifies_opensti(creds: Credentials, x5u: str, attest: str, signer: str) -> None:
    identity = opensti_sign(creds, x5u, attest) if signer == "cli" else api_sign(creds, x5u, attest)
    assert_secsipidx_ok(check_with_public_key(identity, creds))
    assert_secsipidx_ok(check_with_chain(identity, creds))


def test_secsipidx_verifies_opensti_with_leaf_and_intermediate_file(
    creds: Credentials, x5u: str
) -> None:
    identity = opensti_sign(creds, x5u, "A")
    result = secsipidx(
        "-check", "-identity", identity, "-fpubkey", str(creds.leaf_pem), "-expire", "60",
        "-cert-verify", "13", "-ca-file", str(creds.root_pem),
        "-ca-inter", str(creds.intermediate_pem),
    )  # fmt: skip
    assert_secsipidx_ok(result)


def test_secsipidx_fetches_opensti_x5u_over_https(
    creds: Credentials, x5u_server: LocalHTTPServer, x5u: str, tls: TLSFiles
) -> None:
    identity = opensti_sign(creds, x5u, "B")
    before = len(x5u_server.requests)
    result = secsipidx(
        "-check", "-identity", identity, "-fpubkey", x5u, "-expire", "60", "-timeout", "5",
        "-cert-verify", "21", "-ca-file", str(creds.root_pem), "-crl-file", str(creds.crl_pem),
        env=client_env(SSL_CERT_FILE=str(tls.root_pem)),
    )  # fmt: skip
    assert_secsipidx_ok(result)
    assert x5u_server.requests[before:] == [CHAIN_PATH]


def test_secsipidx_cert_checks_are_really_on(
    creds: Credentials, x5u: str, workdir: Path, pki: DemoPKI
) -> None:
    """The controls for the test above: the same header fails when the PKI is wrong."""
    identity = opensti_sign(creds, x5u, "A")
    revoked = check_with_chain(identity, creds, crl=creds.revoked_crl_pem)
    assert secsipidx_code(revoked) == CERT_REVOKED
    stranger = DemoPKI(pki.now)
    other_root = write_file(workdir, "other-root.pem", stranger.root.pem)
    assert secsipidx_code(check_with_chain(identity, creds, root=other_root)) == CERT_INVALID
    expired = make_credentials(workdir / "expired", pki, days=-0.001)
    old = api_sign(expired, x5u, "A")
    assert_secsipidx_ok(check_with_public_key(old, expired))
    assert secsipidx_code(check_with_chain(old, expired)) == CERT_EXPIRED


# --- secsipidx signs, opensti verifies -------------------------------------------------


@pytest.mark.parametrize("attest", ["A", "B", "C"])
def test_opensti_verifies_secsipidx(creds: Credentials, x5u: str, attest: str) -> None:
    iat = int(time.time()) - 10
    origid = str(uuid.uuid4())
    identity = secsipidx_sign(creds, x5u, attest, iat, origid)
    code, result = opensti_verify(
        identity, creds, "--cert-file", str(creds.chain_pem), "--now", str(iat + 5)
    )
    assert code == 0, result
    assert result == {
        "verstat": "TN-Validation-Passed",
        "sip_code": None,
        "reason": "verified",
        "attest": attest,
        "orig": ORIG,
        "dest": [DEST],
        "origid": origid,
        "iat": iat,
        "x5u": x5u,
        "trust_anchors": {"loaded": 1, "skipped": []},
    }


def test_opensti_verifies_secsipidx_sign_full(creds: Credentials, x5u: str) -> None:
    origid = str(uuid.uuid4())
    result = secsipidx(
        "-sign-full", "-k", str(creds.key_pem), "-x5u", x5u, "-orig-tn", ORIG,
        "-dest-tn", DEST, "-attest", "A", "-orig-id", origid,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    identity = result.stdout.strip()
    assert identity.endswith(f";info=<{x5u}>;alg=ES256;ppt=shaken")
    code, verdict = opensti_verify(identity, creds, "--cert-file", str(creds.chain_pem))
    assert code == 0, verdict
    assert (verdict["attest"], verdict["origid"]) == ("A", origid)


@pytest.mark.parametrize(
    ("flags", "outcome", "fetched"),
    [
        (("--allow-private-x5u",), (0, "TN-Validation-Passed", None), [CHAIN_PATH]),
        ((), (1, "TN-Validation-Failed", 436), []),
    ],
    ids=["allowed", "loopback-refused-by-default"],
)
def test_opensti_fetches_secsipidx_x5u_over_https(
    creds: Credentials,
    x5u_server: LocalHTTPServer,
    x5u: str,
    tls: TLSFiles,
    flags: tuple[str, ...],
    outcome: tuple[int, str, int | None],
    fetched: list[str],
) -> None:
    iat = int(time.time())
    identity = secsipidx_sign(creds, x5u, "C", iat, str(uuid.uuid4()))
    before = len(x5u_server.requests)
    code, verdict = opensti_verify(
        identity, creds, "--now", str(iat), *flags,
        env=client_env(SSL_CERT_FILE=str(tls.root_pem)),
    )  # fmt: skip
    assert (code, verdict["verstat"], verdict["sip_code"]) == outcome, verdict
    assert x5u_server.requests[before:] == fetched


# --- tampering: each side refuses what was changed after the other signed --------------


@pytest.fixture
def signed_by_secsipidx(creds: Credentials, x5u: str) -> tuple[str, int]:
    iat = int(time.time()) - 5
    return secsipidx_sign(creds, x5u, "A", iat, str(uuid.uuid4())), iat


def verify_at(identity: str, creds: Credentials, now: int, *extra: str) -> dict[str, object]:
    """Verify a header that must fail; return opensti's verdict."""
    code, verdict = opensti_verify(
        identity, creds, "--cert-file", str(creds.chain_pem), "--now", str(now), *extra
    )
    assert code == 1
    assert verdict["verstat"] == "TN-Validation-Failed"
    return verdict


@pytest.mark.parametrize(
    ("forgery", "signalling"),
    [
        ({"orig": {"tn": "12025550199"}}, ("--orig", "12025550199")),
        ({"dest": {"tn": ["12025550199"]}}, ("--dest", "12025550199")),
        ({"attest": "C"}, ()),
    ],
)
def test_opensti_rejects_forged_secsipidx_claims(
    creds: Credentials,
    signed_by_secsipidx: tuple[str, int],
    forgery: dict[str, object],
    signalling: tuple[str, ...],
) -> None:
    """The call matches the forged claims, so only the signature can catch the change."""
    identity, iat = signed_by_secsipidx
    verdict = verify_at(replace_claim(identity, **forgery), creds, iat, *signalling)
    assert verdict["sip_code"] == 438
    assert "signature does not verify" in str(verdict["reason"])


def test_opensti_rejects_stale_secsipidx_header(
    creds: Credentials, signed_by_secsipidx: tuple[str, int]
) -> None:
    identity, iat = signed_by_secsipidx
    assert opensti_verify(identity, creds, "--cert-file", str(creds.chain_pem),
                          "--now", str(iat + 60))[0] == 0  # fmt: skip
    verdict = verify_at(identity, creds, iat + 61, "--max-age", "60")
    assert verdict["sip_code"] == 403
    assert verdict["iat"] == iat


def test_opensti_rejects_secsipidx_header_for_another_caller(
    creds: Credentials, signed_by_secsipidx: tuple[str, int]
) -> None:
    identity, iat = signed_by_secsipidx
    verdict = verify_at(identity, creds, iat, "--orig", "12025550177")
    assert verdict["sip_code"] == 438
    assert verdict["orig"] == ORIG


@pytest.mark.parametrize("attest", ["A", "C"])
def test_secsipidx_rejects_tampered_opensti_header(
    creds: Credentials, x5u: str, attest: str
) -> None:
    identity = opensti_sign(creds, x5u, attest)
    forged = replace_claim(identity, orig={"tn": "12025550199"})
    assert secsipidx_code(check_with_public_key(forged, creds)) == SIGNATURE_INVALID
    assert secsipidx_code(check_with_chain(forged, creds)) == SIGNATURE_INVALID
    token, params = identity.split(";", 1)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert secsipidx_code(check_with_chain(f"{flipped};{params}", creds)) == SIGNATURE_INVALID


def test_secsipidx_rejects_stale_opensti_header(creds: Credentials, x5u: str) -> None:
    identity = opensti_sign(creds, x5u, "A", "--iat", str(int(time.time()) - 120))
    assert secsipidx_code(check_with_chain(identity, creds)) == IAT_EXPIRED


def test_secsipidx_rejects_info_that_differs_from_x5u(creds: Credentials, x5u: str) -> None:
    token = opensti_sign(creds, x5u, "A").split(";", 1)[0]
    moved = format_identity(token, x5u + "?other")
    assert secsipidx_code(check_with_public_key(moved, creds)) == HEADER_X5U_MISMATCH
    verdict = verify_at(moved, creds, int(time.time()))
    assert verdict["sip_code"] == 438


# --- the compact form ------------------------------------------------------------------


def test_secsipidx_rejects_compact_form(creds: Credentials, x5u: str) -> None:
    compact = opensti_sign(creds, x5u, "A", "--compact")
    assert compact.startswith("..")
    for result in (check_with_public_key(compact, creds), check_with_chain(compact, creds)):
        assert secsipidx_code(result) == PAYLOAD_EMPTY
        assert "empty payload" in result.stdout + result.stderr
    verdict = verify_at(compact, creds, int(time.time()))
    assert verdict["sip_code"] == 438
    assert "compact" in str(verdict["reason"])


# --- secsipidx as an HTTP verification service -----------------------------------------


@pytest.fixture(scope="module")
def secsipidx_http(creds: Credentials) -> Iterator[str]:
    """``secsipidx -http-srv`` with certificate checks on; yields its /v1/check URL."""
    port = free_port()
    process = subprocess.Popen(
        [SECSIPIDX, "-http-srv", f"127.0.0.1:{port}", "-fpubkey", str(creds.chain_pem),
         "-expire", "60", "-cert-verify", "21", "-ca-file", str(creds.root_pem),
         "-crl-file", str(creds.crl_pem)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"secsipidx -http-srv did not start (exit {process.poll()})")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1/check"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_secsipidx_http_service_verifies_opensti(
    creds: Credentials, x5u: str, secsipidx_http: str
) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        for attest in ("A", "B", "C"):
            good = client.post(secsipidx_http, content=api_sign(creds, x5u, attest))
            assert (good.status_code, good.text.strip()) == (200, "OK")
        forged = replace_claim(api_sign(creds, x5u, "A"), attest="B")
        bad = client.post(secsipidx_http, content=forged)
        assert (bad.status_code, bad.text.strip()) == (500, "FAILED")


# --- a chain encoded as T-Mobile's: the explicit NULL in ecdsa-with-SHA256 ---------------


def test_both_accept_a_null_parameter_chain(workdir: Path) -> None:
    """Root, sub-CA and leaf carry the NULL parameter cryptography >= 45 refuses to parse;
    secsipidx (Go) checks the chain with -cert-verify 13, opensti through its lenient
    reader, and both accept the call."""
    odd = NullParamPKI.create(root=True, intermediate=True, leaf=True)
    key, chain = odd.issue("1234")
    leaf = chain[: chain.index(b"-----END CERTIFICATE-----") + 26]
    files = workdir / "null-param"
    files.mkdir()
    root = write_file(files, "root.pem", odd.root_pem)
    inter = write_file(files, "intermediate.pem", odd.intermediate_pem)
    leaf_pem = write_file(files, "leaf.pem", leaf)
    chain_pem = write_file(files, "chain.pem", chain)
    x5u = "https://sti-cr.example.net/null-param.pem"
    claims = ShakenClaims(
        orig=ORIG, dest=(DEST,), iat=int(time.time()), attest="A", origid=str(uuid.uuid4())
    )
    identity = format_identity(sign_passport(claims, key=key, x5u=x5u), x5u)
    assert_secsipidx_ok(secsipidx(
        "-check", "-identity", identity, "-fpubkey", str(leaf_pem), "-expire", "60",
        "-cert-verify", "13", "-ca-file", str(root), "-ca-inter", str(inter),
    ))  # fmt: skip
    result = opensti(
        "passport", "verify", "--identity", identity, "--trust-anchors", str(root),
        "--orig", ORIG, "--dest", DEST, "--cert-file", str(chain_pem),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["verstat"] == "TN-Validation-Passed"
    # The control: secsipidx really checks the chain (another root is refused).
    stranger = write_file(files, "stranger.pem", DemoPKI(odd.pki.now).root.pem)
    refused = secsipidx(
        "-check", "-identity", identity, "-fpubkey", str(leaf_pem), "-expire", "60",
        "-cert-verify", "13", "-ca-file", str(stranger), "-ca-inter", str(inter),
    )  # fmt: skip
    assert secsipidx_code(refused) == CERT_INVALID
