"""Interop: SIPp (Debian sip-tester) drives the redirect server; secsipidx signs and
verifies the Identity headers on the other side."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sip_support import (
    CALLS,
    DEST,
    ORIG,
    X5U,
    DemoSigner,
    DemoVerifier,
    needs_sipp,
    request,
    run_sipp,
    udp_client,
)

from opensti.core.identity import parse_identity
from opensti.sandbox.pki import private_key_pem
from opensti.sip import CallRecord, SIPServer, SIPServices, parse_listeners

pytestmark = [pytest.mark.integration, pytest.mark.interop]

LISTENERS = (
    "udp:127.0.0.1:0/sign,tcp:127.0.0.1:0/sign,"
    "udp:127.0.0.1:0/verify,tcp:127.0.0.1:0/verify,udp:127.0.0.1:0/verify/reject"
)

SECSIPIDX = shutil.which("secsipidx")
needs_secsipidx = pytest.mark.skipif(SECSIPIDX is None, reason="secsipidx not installed")


@pytest.fixture
async def server(call_signer: DemoSigner, call_verifier: DemoVerifier) -> AsyncIterator[SIPServer]:
    services = SIPServices(signer=call_signer, verifier=call_verifier)
    async with SIPServer(parse_listeners(LISTENERS), services) as running:
        yield running


def _listener(server: SIPServer, transport: str, mode: str, policy: str = "continue") -> str:
    for spec, (host, port) in server.addresses:
        if (spec.transport, spec.mode.value, spec.failure_policy.value) == (
            transport,
            mode,
            policy if mode == "verify" else spec.failure_policy.value,
        ):
            return f"{host}:{port}"
    raise LookupError(transport, mode, policy)


def _identity_file(tmp_path: Path, identities: list[str]) -> Path:
    """SIPp injection file: field0 = the PASSporT, field1 = its x5u (';' separates fields)."""
    lines = ["SEQUENTIAL"]
    for value in identities:
        header = parse_identity(value)
        lines.append(f"{header.token};{header.info};")
    path = tmp_path / "identities.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _tampered(identity: str) -> str:
    token, rest = identity.split(";", 1)
    head, payload, signature = token.split(".")
    flipped = ("B" if signature[0] != "B" else "C") + signature[1:]
    return f"{head}.{payload}.{flipped};{rest}"


@needs_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_sign(server: SIPServer, tmp_path: Path, transport: str) -> None:
    await run_sipp(_listener(server, transport, "sign"), "sign.xml", tmp_path, transport=transport)


@needs_sipp
async def test_sipp_retransmissions_get_the_first_answer(
    call_signer: DemoSigner, tmp_path: Path
) -> None:
    records: list[CallRecord] = []
    services = SIPServices(signer=call_signer, log=records.append)
    async with SIPServer(parse_listeners("udp:127.0.0.1:0/sign"), services) as server:
        # Room for Timer B: a call whose 302 is lost six times in a row (0.3**6, about
        # 1.5% of runs of 20 calls) is answered 31.5 s after its INVITE.
        await run_sipp(_listener(server, "udp", "sign"), "retransmit.xml", tmp_path, timeout=45)
        ((_, stats),) = server.transaction_stats()
    assert stats.retransmissions > 0  # some 30% of the calls retransmitted their INVITE
    assert stats.acked == CALLS
    assert len({record.call_id for record in records}) == len(records) == CALLS


@needs_sipp
async def test_sipp_options(server: SIPServer, tmp_path: Path) -> None:
    await run_sipp(_listener(server, "udp", "sign"), "options.xml", tmp_path)


@needs_sipp
async def test_sipp_malformed_gets_400(server: SIPServer, tmp_path: Path) -> None:
    await run_sipp(_listener(server, "udp", "sign"), "malformed.xml", tmp_path)
    await run_sipp(_listener(server, "udp", "sign"), "options.xml", tmp_path, calls=1)


@needs_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_verify_opensti_signed(
    server: SIPServer, call_signer: DemoSigner, tmp_path: Path, transport: str
) -> None:
    identities = [call_signer.sign(ORIG, [DEST], "A", str(n)) for n in range(CALLS)]
    await run_sipp(
        _listener(server, transport, "verify"),
        "verify.xml",
        tmp_path,
        transport=transport,
        inf=_identity_file(tmp_path, identities),
    )


@needs_sipp
async def test_sipp_verify_reject_tampered(
    server: SIPServer, call_signer: DemoSigner, tmp_path: Path
) -> None:
    identities = [_tampered(call_signer.sign(ORIG, [DEST], "A", str(n))) for n in range(CALLS)]
    await run_sipp(
        _listener(server, "udp", "verify", "reject"),
        "verify_reject.xml",
        tmp_path,
        inf=_identity_file(tmp_path, identities),
    )


@pytest.fixture
def key_files(
    tmp_path: Path, credential: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> tuple[Path, Path]:
    key, _ = credential
    private, public = tmp_path / "key.pem", tmp_path / "pub.pem"
    private.write_bytes(private_key_pem(key))
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


async def _secsipidx(*args: str) -> tuple[int, str]:
    assert SECSIPIDX is not None
    process = await asyncio.create_subprocess_exec(
        SECSIPIDX, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace").strip()


@needs_secsipidx
async def test_secsipidx_verifies_the_identity_of_a_302(
    server: SIPServer, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    address = server.address("udp")
    async with udp_client(address) as client:
        response = await client.exchange(request(headers=[("X-Attest", "B")]))
    assert response.status == 302
    identity = response.header("identity")
    assert identity is not None
    good, bad = tmp_path / "identity.txt", tmp_path / "tampered.txt"
    good.write_text(identity)
    bad.write_text(_tampered(identity))
    _, public = key_files
    status, output = await _secsipidx(
        "-check", "-fidentity", str(good), "-fpubkey", str(public), "-expire", "60"
    )
    assert status == 0, output
    status, output = await _secsipidx(
        "-check", "-fidentity", str(bad), "-fpubkey", str(public), "-expire", "60"
    )
    assert status != 0, output


@needs_sipp
@needs_secsipidx
async def test_sipp_verify_secsipidx_signed(
    server: SIPServer, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    private, _ = key_files
    identities = []
    for _ in range(CALLS):
        status, identity = await _secsipidx(
            "-sign-full", "-k", str(private), "-x5u", X5U, "-o", ORIG, "-d", DEST, "-a", "A"
        )
        assert status == 0, identity
        identities.append(identity)
    await run_sipp(
        _listener(server, "udp", "verify"),
        "verify.xml",
        tmp_path,
        inf=_identity_file(tmp_path, identities),
    )
