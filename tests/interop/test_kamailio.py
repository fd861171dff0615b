"""Interop with Kamailio's secsipid module (Debian ``kamailio`` + ``kamailio-secsipid-modules``).

Kamailio signs, opensti verifies: a caller's INVITE goes to Kamailio, which adds an
Identity header with ``secsipid_add_identity`` (a DemoPKI key; the x5u is the chain on a
local HTTPS repository) and relays it to an opensti verify listener; opensti fetches the
x5u, verifies, and its 302 (verstat in P-Asserted-Identity) or reject code comes back
through Kamailio to the caller.

opensti signs, Kamailio verifies: the caller gets the Identity header from an opensti
sign listener's 302, as an SBC does from a redirect STI-AS, and sends the INVITE carrying
it to Kamailio, which checks it with ``secsipid_check_identity`` (fetching the x5u, or a
chain file) or ``secsipid_check_identity_pubkey`` and answers 200 or 438 with the
function's return code in ``X-Secsipid-Rc``.

Each test runs its own Kamailio (``tests/interop/kamailio/kamailio.cfg``, its role and
values given with ``-A`` defines) on a free port of 127.0.0.1, with its runtime dir and
pid file under the test's tmp_path, and kills it at the end. Kamailio checks
certificates only where libsecsipid is told to (``CertVerify``, see test_secsipidx.py
for the bits); those runs trust the DemoPKI root and CRL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from opensti.core.passport import b64url_decode, b64url_encode, load_private_key
from opensti.sandbox.pki import DemoPKI
from opensti.signing import CallSignerAdapter, Keyring, SigningEntry, SigningService
from opensti.sip import SIPServer, SIPServices, parse_listeners
from opensti.sip.message import SIPResponse
from opensti.sip.redirect import CallRecord
from opensti.verification import FetchPolicy, TrustStore, VerificationService, X5UFetcher
from tests._servers import LocalHTTPServer, TLSFiles, client_env, free_udp_port
from tests.sip.sip_support import request, udp_client

from .credentials import CHAIN_PATH, Credentials

KAMAILIO = Path("/usr/sbin/kamailio")
CONFIG = Path(__file__).parent / "kamailio" / "kamailio.cfg"
PACKAGES = "Debian packages kamailio and kamailio-secsipid-modules"


def _module_dir() -> Path | None:
    """Where Debian put the secsipid module (the multiarch dir differs per architecture)."""
    for found in sorted(Path("/usr/lib").glob("*/kamailio/modules/secsipid.so")):
        return found.parent
    plain = Path("/usr/lib/kamailio/modules/secsipid.so")
    return plain.parent if plain.exists() else None


MODULES = _module_dir()

pytestmark = [
    pytest.mark.integration,
    pytest.mark.interop,
    pytest.mark.skipif(not os.access(KAMAILIO, os.X_OK), reason=f"{KAMAILIO} absent ({PACKAGES})"),
    pytest.mark.skipif(MODULES is None, reason=f"Kamailio's secsipid.so absent ({PACKAGES})"),
]

ORIG = "12155550121"
DEST = "12155550131"
OTHER = "12155550199"
TIMEOUT = 10.0

# libsecsipid's return codes (secsipid/secsipid.go).
CERT_INVALID = -101
CERT_REVOKED = -112
SIGNATURE_INVALID = -251
# CertVerify bits: 1 validity window, 4 chain to CertCAFile, 16 not on CertCRLFile.
CERT_CHECKS = 21


# --- opensti's redirect server ---------------------------------------------------------


@dataclass
class OpenSTI:
    server: SIPServer
    calls: list[CallRecord]

    def listener(self, mode: str, policy: str = "continue") -> tuple[str, int]:
        for spec, address in self.server.addresses:
            if spec.mode.value == mode and (mode == "sign" or spec.failure_policy.value == policy):
                return address
        raise LookupError(mode, policy)


@pytest.fixture
async def opensti(
    pki: DemoPKI, creds: Credentials, x5u: str, tls: TLSFiles
) -> AsyncIterator[OpenSTI]:
    """Sign and verify listeners on the production services: keyring signer, and a
    verifier that fetches the x5u (private addresses allowed, the test TLS root trusted)."""
    key = load_private_key(creds.key_pem.read_bytes())
    entry = SigningEntry("interop", "1234", key=key, x5u=x5u, is_default=True, attest="A")
    signer = CallSignerAdapter(SigningService(Keyring([entry])))
    calls: list[CallRecord] = []
    listeners = parse_listeners(
        "udp:127.0.0.1:0/sign,udp:127.0.0.1:0/verify/continue,udp:127.0.0.1:0/verify/reject"
    )
    policy = FetchPolicy(allow_private=True)
    async with X5UFetcher(policy, verify=str(tls.root_pem)) as fetcher:
        verifier = VerificationService(fetcher, TrustStore([pki.root.certificate]))
        services = SIPServices(signer=signer, verifier=verifier, log=calls.append)
        async with SIPServer(listeners, services) as server:
            yield OpenSTI(server, calls)


# --- a caller ----------------------------------------------------------------------------


def _invite(target: tuple[str, int], headers: Sequence[tuple[str, str]]) -> bytes:
    """An INVITE from ORIG to DEST, digits only, as Kamailio's $fU/$tU then sign them."""
    host, port = target
    return request(
        uri=f"sip:{DEST}@{host}:{port};user=phone",
        from_=f"<sip:{ORIG}@127.0.0.1;user=phone>;tag={uuid.uuid4().hex[:8]}",
        to=f"<sip:{DEST}@{host};user=phone>",
        headers=headers,
    )


def _ack(invite: bytes, response: SIPResponse) -> bytes:
    """The ACK of a final response: a non-2xx ACK is in the INVITE's transaction (same
    branch, RFC 3261 17.1.1.3); a 2xx ACK is a new one."""
    request_line, via = invite.decode().split("\r\n")[:2]
    same_branch = response.status >= 300
    return request(
        "ACK",
        uri=request_line.split()[1],
        from_=response.single("from"),
        to=response.single("to"),
        call_id=response.single("call-id"),
        cseq="1 ACK",
        omit=("Via",) if same_branch else (),
        headers=[("Via", via.split(": ", 1)[1])] if same_branch else (),
    )


async def call(target: tuple[str, int], headers: Sequence[tuple[str, str]] = ()) -> SIPResponse:
    """Send one INVITE, wait for its final response (provisionals skipped), ACK it."""
    invite = _invite(target, headers)
    async with udp_client(target) as client:
        client.send(invite)
        async with asyncio.timeout(TIMEOUT):
            response = await client.receive()
            while response.status < 200:
                response = await client.receive()
        client.send(_ack(invite, response))
    return response


async def options(target: tuple[str, int]) -> int:
    """Status of an OPTIONS ping (how a started Kamailio is told from a starting one)."""
    async with udp_client(target) as client:
        client.send(request("OPTIONS", uri=f"sip:{target[0]}:{target[1]}"))
        return (await client.receive(timeout=0.5)).status


# --- Kamailio ----------------------------------------------------------------------------


def _quoted(value: str) -> str:
    """A Kamailio string define: its lexer turns \\n back into a newline."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@contextlib.asynccontextmanager
async def kamailio(
    tmp_path: Path,
    defines: dict[str, str | None],
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """Run Kamailio with this role; yield its address once it answers OPTIONS."""
    assert MODULES is not None
    run = tmp_path / "kamailio-run"
    run.mkdir()
    port = free_udp_port()
    args = [
        str(KAMAILIO), "-f", str(CONFIG), "-DD", "-E", "-n", "1", "-m", "32", "-M", "8",
        "-l", f"udp:127.0.0.1:{port}", "-L", str(MODULES), "-Y", str(run),
        "-P", str(run / "kamailio.pid"), "-w", str(run),
    ]  # fmt: skip
    for name, value in defines.items():
        args += ["-A", name if value is None else f"{name}={_quoted(value)}"]
    log_path = tmp_path / "kamailio.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env or client_env(),
            start_new_session=True,
        )  # fmt: skip
    try:
        await _wait_ready(process, ("127.0.0.1", port), log_path)
        yield "127.0.0.1", port
    finally:
        _stop(process)


async def _wait_ready(
    process: subprocess.Popen[bytes], address: tuple[str, int], log: Path
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while loop.time() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(TimeoutError):
            if await options(address) == 200:
                return
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"Kamailio did not start (exit {process.poll()}):\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group Kamailio leads (its children), SIGKILL if it lingers."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


# --- helpers on headers ------------------------------------------------------------------


def _passport(identity: str) -> dict[str, object]:
    payload = identity.split(";", 1)[0].split(".")[1]
    return cast(dict[str, object], json.loads(b64url_decode(payload)))


def forged(identity: str, **claims: object) -> str:
    """The same header with payload claims rewritten and the signature kept."""
    token, params = identity.split(";", 1)
    header, payload, signature = token.split(".")
    decoded = json.loads(b64url_decode(payload)) | claims
    rewritten = b64url_encode(json.dumps(decoded, separators=(",", ":")).encode())
    return f"{header}.{rewritten}.{signature};{params}"


def _pai(number: str) -> tuple[str, str]:
    return "P-Asserted-Identity", f"<sip:{number}@127.0.0.1;user=phone>"


# --- Kamailio signs, opensti verifies ----------------------------------------------------


def _kamailio_signer(
    tmp_path: Path, opensti: OpenSTI, creds: Credentials, x5u: str, policy: str
) -> contextlib.AbstractAsyncContextManager[tuple[str, int]]:
    """Kamailio as STI-AS in front of the opensti verify listener with ``policy``."""
    host, port = opensti.listener("verify", policy)
    return kamailio(
        tmp_path,
        {
            "ROLE_SIGN": None,
            "SIGN_KEY": str(creds.key_pem),
            "X5U": x5u,
            "OPENSTI": f"sip:{host}:{port}",
        },
    )


async def test_kamailio_signs_opensti_verifies(
    tmp_path: Path, opensti: OpenSTI, creds: Credentials, x5u: str, x5u_server: LocalHTTPServer
) -> None:
    before = len(x5u_server.requests)
    async with _kamailio_signer(tmp_path, opensti, creds, x5u, "continue") as address:
        response = await call(address, [_pai(ORIG)])
    assert response.status == 302, response
    assert response.single("p-asserted-identity") == (
        f"<sip:{ORIG};verstat=TN-Validation-Passed@127.0.0.1;user=phone>"
    )
    assert response.single("contact").startswith(f"<sip:{DEST}@127.0.0.1:")
    # opensti fetched Kamailio's x5u over HTTPS and logged what Kamailio signed.
    assert x5u_server.requests[before:] == [CHAIN_PATH]
    [record] = opensti.calls
    assert (record.direction, record.orig, record.dest) == ("inbound", ORIG, (DEST,))
    assert (record.attest, record.x5u, record.verstat) == ("A", x5u, "TN-Validation-Passed")


@pytest.mark.parametrize(
    ("policy", "status", "verstat"),
    [("continue", 302, "TN-Validation-Failed"), ("reject", 438, None)],
)
async def test_kamailio_signed_another_number(
    tmp_path: Path,
    opensti: OpenSTI,
    creds: Credentials,
    x5u: str,
    policy: str,
    status: int,
    verstat: str | None,
) -> None:
    """Kamailio signs the From; the PAI asserts another number, which opensti checks."""
    async with _kamailio_signer(tmp_path, opensti, creds, x5u, policy) as address:
        response = await call(address, [_pai(OTHER)])
    assert response.status == status, response
    if verstat is not None:
        assert response.single("p-asserted-identity") == (
            f"<sip:{OTHER};verstat={verstat}@127.0.0.1;user=phone>"
        )
    [record] = opensti.calls
    assert (record.orig, record.verstat, record.sip_code) == (
        OTHER,
        "TN-Validation-Failed",
        status,
    )


# --- opensti signs, Kamailio verifies ----------------------------------------------------


async def _signed_by_opensti(opensti: OpenSTI) -> str:
    """The Identity header of an opensti sign listener's 302 for ORIG -> DEST."""
    response = await call(opensti.listener("sign"), [("X-Attest", "B")])
    assert response.status == 302, response
    identity = response.single("identity")
    claims = _passport(identity)
    assert (claims["orig"], claims["dest"], claims["attest"]) == (
        {"tn": ORIG},
        {"tn": [DEST]},
        "B",
    )
    return identity


def _verifier_setup(
    source: str,
    creds: Credentials,
    tls: TLSFiles,
    *,
    root: Path | None = None,
    crl: Path | None = None,
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Kamailio's defines and environment for one key source.

    With a bare public key there is no certificate to check; the other sources run
    with libsecsipid's certificate checks on, against the DemoPKI root and CRL.
    """
    if source == "pubkey":
        return {
            "ROLE_VERIFY": None,
            "VERIFY_PUBKEY": creds.public_key_pem.read_text(),
        }, client_env()
    defines: dict[str, str | None] = {
        "ROLE_VERIFY": None,
        "LIBOPT_CERT_VERIFY": f"CertVerify={CERT_CHECKS}",
        "LIBOPT_CA_FILE": f"CertCAFile={root or creds.root_pem}",
        "LIBOPT_CRL_FILE": f"CertCRLFile={crl or creds.crl_pem}",
    }
    if source == "chain-file":
        return defines | {"VERIFY_KEY": str(creds.chain_pem)}, client_env()
    # Go's HTTP client takes its roots from SSL_CERT_FILE.
    return defines, client_env(SSL_CERT_FILE=str(tls.root_pem))


@pytest.mark.parametrize("source", ["x5u", "chain-file", "pubkey"])
async def test_opensti_signs_kamailio_verifies(
    tmp_path: Path,
    opensti: OpenSTI,
    creds: Credentials,
    tls: TLSFiles,
    x5u_server: LocalHTTPServer,
    source: str,
) -> None:
    identity = await _signed_by_opensti(opensti)
    defines, env = _verifier_setup(source, creds, tls)
    before = len(x5u_server.requests)
    async with kamailio(tmp_path, defines, env) as address:
        good = await call(address, [("Identity", identity)])
        bad = await call(address, [("Identity", forged(identity, orig={"tn": OTHER}))])
    assert (good.status, good.single("x-secsipid-rc")) == (200, "1"), good
    assert (bad.status, bad.single("x-secsipid-rc")) == (438, str(SIGNATURE_INVALID)), bad
    # Only the x5u source fetches, and then the chain opensti's header names.
    assert set(x5u_server.requests[before:]) == ({CHAIN_PATH} if source == "x5u" else set())


@pytest.mark.parametrize(
    ("trust", "code"), [("stranger-root", CERT_INVALID), ("revoked", CERT_REVOKED)]
)
async def test_kamailio_refuses_the_x5u_chain(
    tmp_path: Path, opensti: OpenSTI, creds: Credentials, tls: TLSFiles, trust: str, code: int
) -> None:
    """The control for the x5u case above: the same good header fails when the PKI does."""
    identity = await _signed_by_opensti(opensti)
    if trust == "revoked":
        defines, env = _verifier_setup("x5u", creds, tls, crl=creds.revoked_crl_pem)
    else:
        defines, env = _verifier_setup("x5u", creds, tls, root=creds.stranger_root_pem)
    async with kamailio(tmp_path, defines, env) as address:
        response = await call(address, [("Identity", identity)])
    assert (response.status, response.single("x-secsipid-rc")) == (438, str(code)), response
