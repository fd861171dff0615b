"""Helpers for the SIP tests: signer/verifier built on opensti.core, request builders,
and small UDP/TCP clients."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import cast

import pytest

from opensti.core.call import CallVerification, verify_call
from opensti.core.certs import ValidatedCertificate
from opensti.core.div import DivClaims
from opensti.core.errors import BadIdentityInfo
from opensti.core.identity import format_identity, parse_identity
from opensti.core.passport import PassportSigner, ShakenClaims
from opensti.core.verify import VerificationResult, verify_identities
from opensti.sip.message import SIPRequest, SIPResponse, StreamFramer, frame_message

SCENARIOS = Path(__file__).parent / "scenarios"
#: Calls per SIPp run.
CALLS = 20
SIPP = shutil.which("sipp")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")

X5U = "https://127.0.0.1:8443/certs/1234.pem"
ORIG = "12155550121"
DEST = "12155550131"

_counter = itertools.count(1)


class DemoSigner:
    """A CallSigner on opensti.core: one key, one x5u, the clock read per call."""

    def __init__(
        self,
        signer: PassportSigner,
        default_attest: str = "A",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = signer
        self._default_attest = default_attest
        self._clock = clock

    def sign(self, orig_tn: str, dest_tns: Sequence[str], attest: str | None, call_id: str) -> str:
        claims = ShakenClaims(
            orig=orig_tn,
            dest=tuple(dest_tns),
            iat=int(self._clock()),
            attest=attest or self._default_attest,
            origid=str(uuid.uuid4()),
        )
        return format_identity(self._signer.sign(claims), self._signer.x5u)

    def sign_div(self, orig_tn: str, dest_tns: Sequence[str], div_tn: str, call_id: str) -> str:
        claims = DivClaims(orig=orig_tn, dest=tuple(dest_tns), iat=int(self._clock()), div=div_tn)
        token = self._signer.sign_as("div", claims.to_payload())
        return format_identity(token, self._signer.x5u, ppt="div")


class DemoVerifier:
    """A CallVerifier on opensti.core: a fixed repository of validated certificates."""

    def __init__(self, certificates: dict[str, ValidatedCertificate]) -> None:
        self._certificates = certificates

    def _resolve(self, url: str) -> ValidatedCertificate:
        try:
            return self._certificates[url]
        except KeyError:
            raise BadIdentityInfo(f"no certificate at {url}", value=url) from None

    async def verify(
        self, identities: Sequence[str], orig_tn: str, dest_tns: Sequence[str]
    ) -> VerificationResult:
        return verify_identities(
            identities,
            orig_tn=orig_tn,
            dest_tns=dest_tns,
            now=int(time.time()),
            resolve=self._resolve,
        )

    async def verify_call(
        self, identities: Sequence[str], orig_tn: str, dest_tns: Sequence[str]
    ) -> CallVerification:
        return verify_call(
            identities,
            orig_tn=orig_tn,
            dest_tns=dest_tns,
            now=int(time.time()),
            resolve=self._resolve,
        )


class GatedVerifier:
    """Holds every verification until the test opens the gate; counts the calls."""

    def __init__(self, inner: DemoVerifier) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.calls = 0

    async def verify(
        self, identities: Sequence[str], orig_tn: str, dest_tns: Sequence[str]
    ) -> VerificationResult:
        self.calls += 1
        await self.gate.wait()
        return await self.inner.verify(identities, orig_tn, dest_tns)


def request(
    method: str = "INVITE",
    *,
    uri: str = f"sip:+{DEST}@127.0.0.1;user=phone",
    from_: str = f"<sip:+{ORIG}@127.0.0.1;user=phone>;tag=f1",
    to: str = f"<sip:+{DEST}@127.0.0.1;user=phone>",
    call_id: str | None = None,
    cseq: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    omit: Sequence[str] = (),
    body: bytes = b"",
    branch: str | None = None,
) -> bytes:
    """A request as an SBC would send it; ``omit`` leaves standard headers out.

    ``branch`` names the transaction: a CANCEL or the ACK of a 3xx/4xx repeats the
    INVITE's; by default every request gets a branch of its own.
    """
    n = next(_counter)
    standard = [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5999;branch={branch or f'z9hG4bK-{n}'};rport"),
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id or f"call-{n}-{uuid.uuid4().hex[:8]}@test"),
        ("CSeq", cseq or f"1 {method}"),
        ("Max-Forwards", "70"),
    ]
    fields = [(k, v) for k, v in standard if k not in omit] + list(headers)
    fields.append(("Content-Length", str(len(body))))
    lines = [f"{method} {uri} SIP/2.0"] + [f"{k}: {v}" for k, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_of(data: bytes) -> SIPResponse:
    """Frame a response without validating it: a 400 echoes the bad header it answers."""
    message = frame_message(data)
    assert isinstance(message, SIPResponse), message
    return message


class UDPClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def receive(self, timeout: float = 10.0) -> SIPResponse:
        return response_of(await asyncio.wait_for(self.received.get(), timeout))

    async def exchange(self, data: bytes) -> SIPResponse:
        self.send(data)
        return await self.receive()


@asynccontextmanager
async def udp_client(address: tuple[str, int]) -> AsyncIterator[UDPClient]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(UDPClient, remote_addr=address)
    try:
        yield client
    finally:
        transport.close()


class TCPClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._framer = StreamFramer()
        self._ready: list[SIPRequest | SIPResponse] = []

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, timeout: float = 10.0) -> SIPResponse:
        while not self._ready:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._ready += self._framer.feed(chunk)
        message = self._ready.pop(0)
        assert isinstance(message, SIPResponse)
        return message

    async def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True once the server closes (anything it still sends is read and ignored)."""
        while True:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            except ConnectionResetError:
                return True
            if not chunk:
                return True


@asynccontextmanager
async def tcp_client(address: tuple[str, int]) -> AsyncIterator[TCPClient]:
    reader, writer = await asyncio.open_connection(*address)
    try:
        yield TCPClient(reader, writer)
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()


async def run_sipp(
    target: str,
    scenario: str,
    tmp_path: Path,
    *,
    transport: str = "udp",
    inf: Path | None = None,
    calls: int = CALLS,
    timeout: int = 20,
) -> None:
    """Run SIPp to completion; exit code 0 means every call went as the scenario says."""
    assert SIPP is not None
    args = [
        SIPP, target, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1",
        "-t", "u1" if transport == "udp" else "t1",
        "-m", str(calls), "-r", "50", "-timeout", f"{timeout}s", "-timeout_error",
        "-trace_err", "-error_file", str(tmp_path / "sipp-errors.log"), "-nostdin",
    ]  # fmt: skip
    if inf is not None:
        args += ["-inf", str(inf)]
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout + 40)
    errors = tmp_path / "sipp-errors.log"
    details = errors.read_text(errors="replace")[-3000:] if errors.exists() else ""
    assert process.returncode == 0, (
        f"sipp exit {process.returncode}\n{output.decode(errors='replace')[-3000:]}\n{details}"
    )


def identity_fields(tmp_path: Path, rows: Sequence[Sequence[str]]) -> Path:
    """SIPp injection file: each Identity value gives two fields, token and x5u."""
    lines = ["SEQUENTIAL"]
    for identities in rows:
        fields = []
        for value in identities:
            header = parse_identity(value)
            fields += [header.token, header.info]
        lines.append(";".join(fields) + ";")
    path = tmp_path / "identities.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
