"""INVITE server transactions over real UDP sockets: retransmissions get the same bytes,
the ACK ends a transaction, the table is bounded, and slow verifications send 100 Trying."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sip_support import (
    ORIG,
    DemoSigner,
    DemoVerifier,
    GatedVerifier,
    request,
    response_of,
    tcp_client,
    udp_client,
)
from tests._servers import LocalHTTPServer, Route, TLSFiles, make_tls_files, serve

from opensti.core.identity import format_identity
from opensti.core.passport import PassportSigner, ShakenClaims
from opensti.sandbox.pki import DemoPKI
from opensti.sip import (
    CallRecord,
    RedirectPolicy,
    SIPRequest,
    SIPServer,
    SIPServices,
    parse_listeners,
)
from opensti.sip.message import frame_message
from opensti.sip.transaction import transaction_key
from opensti.verification import FetchPolicy, TrustStore, VerificationService, X5UFetcher

pytestmark = pytest.mark.integration

PAI = ("P-Asserted-Identity", f"<sip:+{ORIG}@127.0.0.1;user=phone>")


class Raw:
    """A UDP client that keeps the exact bytes of every datagram it gets."""

    def __init__(self, client: object) -> None:
        self.client = client

    async def exchange(self, data: bytes) -> bytes:
        self.client.send(data)  # type: ignore[attr-defined]
        return await self.receive()

    async def receive(self, timeout: float = 10.0) -> bytes:
        queue: asyncio.Queue[bytes] = self.client.received  # type: ignore[attr-defined]
        return await asyncio.wait_for(queue.get(), timeout)

    async def nothing_more(self) -> bool:
        """True when nothing arrives before an OPTIONS sent now is answered."""
        self.client.send(request("OPTIONS"))  # type: ignore[attr-defined]
        return response_of(await self.receive()).cseq == (1, "OPTIONS")


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@contextlib.asynccontextmanager
async def running(
    listener: str, services: SIPServices, **policy: object
) -> AsyncIterator[tuple[SIPServer, Raw]]:
    services = SIPServices(
        signer=services.signer,
        verifier=services.verifier,
        log=services.log,
        policy=RedirectPolicy(**policy),  # type: ignore[arg-type]
    )
    async with (
        SIPServer(parse_listeners(listener), services) as server,
        udp_client(server.address("udp")) as client,
    ):
        yield server, Raw(client)


def _identity(data: bytes) -> str | None:
    return response_of(data).header("identity")


async def test_a_retransmitted_invite_gets_the_same_bytes_and_one_signature(
    call_signer: DemoSigner, records: list[CallRecord]
) -> None:
    services = SIPServices(signer=call_signer, log=records.append)
    async with running("udp:127.0.0.1:0/sign", services) as (server, raw):
        invite = request(call_id="again@t", branch="z9hG4bK-again")
        first = await raw.exchange(invite)
        assert response_of(first).status == 302
        for _ in range(3):  # Timer A doubles; each copy gets the same answer
            assert await raw.exchange(invite) == first
        # Same Call-ID and CSeq but another branch: a new transaction, a new signature.
        other = await raw.exchange(request(call_id="again@t", branch="z9hG4bK-other"))
        assert response_of(other).status == 302
        assert _identity(other) != _identity(first)
        ((_, stats),) = server.transaction_stats()
    assert [r.call_id for r in records] == ["again@t", "again@t"]
    assert (stats.completed, stats.retransmissions) == (2, 3)


async def test_a_retransmission_of_a_verified_call_is_not_verified_again(
    call_signer: DemoSigner, call_verifier: DemoVerifier, records: list[CallRecord]
) -> None:
    identity = call_signer.sign(ORIG, ["12155550131"], "A", "v@t")
    verifier = GatedVerifier(call_verifier)
    verifier.gate.set()
    services = SIPServices(verifier=verifier, log=records.append)
    async with running("udp:127.0.0.1:0/verify", services) as (_, raw):
        invite = request(call_id="v@t", headers=[PAI, ("Identity", identity)])
        first = await raw.exchange(invite)
        assert "verstat=TN-Validation-Passed" in (
            response_of(first).header("p-asserted-identity") or ""
        )
        assert await raw.exchange(invite) == first
    assert verifier.calls == 1
    assert len(records) == 1
    assert records[0].certificate is not None


async def test_the_ack_ends_the_transaction(
    call_signer: DemoSigner, records: list[CallRecord]
) -> None:
    services = SIPServices(signer=call_signer, log=records.append)
    async with running("udp:127.0.0.1:0/sign", services) as (server, raw):
        invite = request(call_id="acked@t", branch="z9hG4bK-acked")
        first = await raw.exchange(invite)
        cancel = await raw.exchange(request("CANCEL", call_id="acked@t", branch="z9hG4bK-acked"))
        assert response_of(cancel).status == 200  # answered already: the CANCEL does nothing
        raw.client.send(  # type: ignore[attr-defined]
            request("ACK", call_id="acked@t", cseq="1 ACK", branch="z9hG4bK-acked")
        )
        assert await raw.nothing_more()  # an ACK is never answered
        ((_, stats),) = server.transaction_stats()
        assert (stats.acked, stats.completed) == (1, 0)
        # The transaction is gone: the same INVITE now is a new call.
        again = await raw.exchange(invite)
        assert response_of(again).status == 302
        assert again != first
    assert len(records) == 2


async def test_the_table_is_bounded(call_signer: DemoSigner) -> None:
    services = SIPServices(signer=call_signer)
    async with running("udp:127.0.0.1:0/sign", services, max_transactions=3) as (server, raw):
        invites = [request(call_id=f"flood-{n}@t") for n in range(10)]
        answers = [await raw.exchange(invite) for invite in invites]
        ((_, stats),) = server.transaction_stats()
        assert (stats.completed, stats.evicted) == (3, 7)
        assert await raw.exchange(invites[-1]) == answers[-1]  # still kept
        assert await raw.exchange(invites[0]) != answers[0]  # dropped: answered afresh


async def test_a_transaction_expires_after_its_lifetime(call_signer: DemoSigner) -> None:
    services = SIPServices(signer=call_signer)
    async with running("udp:127.0.0.1:0/sign", services, transaction_lifetime=0.2) as (_, raw):
        invite = request(call_id="late@t")
        first = await raw.exchange(invite)
        await asyncio.sleep(0.6)
        assert await raw.exchange(invite) != first


async def test_a_slow_verification_sends_100_trying_first(
    call_signer: DemoSigner, call_verifier: DemoVerifier
) -> None:
    identity = call_signer.sign(ORIG, ["12155550131"], "A", "slow@t")
    verifier = GatedVerifier(call_verifier)
    services = SIPServices(verifier=verifier)
    async with running("udp:127.0.0.1:0/verify", services, trying_delay=0.05) as (_, raw):
        invite = request(call_id="slow@t", headers=[PAI, ("Identity", identity)])
        trying = await raw.exchange(invite)
        provisional = response_of(trying)
        assert (provisional.status, provisional.cseq) == (100, (1, "INVITE"))
        assert ";tag=" not in (provisional.header("to") or "")
        assert await raw.exchange(invite) == trying  # Proceeding: the 100 again
        verifier.gate.set()
        final = await raw.receive()
        assert response_of(final).status == 302
        assert await raw.exchange(invite) == final
    assert verifier.calls == 1


async def test_tcp_keeps_no_responses(call_signer: DemoSigner) -> None:
    """Nothing is retransmitted over TCP, so a reliable listener keeps no table."""
    services = SIPServices(signer=call_signer)
    async with SIPServer(parse_listeners("tcp:127.0.0.1:0/sign"), services) as server:
        async with tcp_client(server.address("tcp")) as client:
            await client.send(request())
            assert (await client.receive()).status == 302
        ((_, stats),) = server.transaction_stats()
    assert stats.completed == 0


@pytest.mark.parametrize(
    ("via", "same"),
    [
        ("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport", True),
        ("SIP/2.0/UDP 10.0.0.1:5060 ; received=10.0.0.9 ; branch=z9hG4bKabc", True),
        # The Via of our response, as a non-compliant UAC copies it into the ACK.
        ("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=5060;received=10.0.0.9", True),
        ("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKabc", False),  # another sent-by
        ("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKxyz", False),  # another branch
    ],
)
def test_transaction_keys(via: str, same: bool) -> None:
    assert (_key(via) == _key("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc")) is same


def _key(top_via: str, cseq: str = "1 INVITE") -> object:
    data = request(omit=("Via",), headers=[("Via", top_via)], call_id="k@t", cseq=cseq)
    parsed = frame_message(data)
    assert isinstance(parsed, SIPRequest)
    return transaction_key(parsed)


def test_a_branch_without_the_magic_cookie_is_matched_on_the_whole_via() -> None:
    old = "SIP/2.0/UDP 10.0.0.1:5060;branch=1"
    assert _key(old) == _key(old, "1 ACK")
    assert _key(old) != _key(old + ";x=1")
    assert _key(old) != _key(old, "2 INVITE")


@pytest.fixture
def repository(
    tmp_path: Path, pki: DemoPKI, credential: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> Iterator[tuple[LocalHTTPServer, TLSFiles]]:
    tls = make_tls_files(tmp_path / "tls")
    with serve(tls) as server:
        server.routes["/chain.pem"] = Route.body(pki.chain_pem(credential[1]))
        yield server, tls


async def test_a_call_whose_certificate_is_cached_is_answered_at_once(
    repository: tuple[LocalHTTPServer, TLSFiles],
    pki: DemoPKI,
    credential: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    records: list[CallRecord],
) -> None:
    """The real STI-VS: the first call fetches the x5u (a task); the next ones are
    answered inside ``handle``, and are server transactions all the same."""
    server_, tls = repository
    signer = PassportSigner(credential[0], server_.url("/chain.pem"))

    def invite(call_id: str) -> bytes:
        claims = ShakenClaims(ORIG, ("12155550131",), int(time.time()), "A", call_id)
        identity = format_identity(signer.sign(claims), signer.x5u)
        return request(
            call_id=call_id, branch=f"z9hG4bK-{call_id}", headers=[PAI, ("Identity", identity)]
        )

    async with X5UFetcher(FetchPolicy(allow_private=True), verify=str(tls.root_pem)) as fetcher:
        verifier = VerificationService(fetcher, TrustStore([pki.root.certificate]))
        services = SIPServices(verifier=verifier, log=records.append)
        async with running("udp:127.0.0.1:0/verify", services) as (server, raw):
            for call_id in ("first@t", "second@t"):
                answer = await raw.exchange(invite(call_id))
                assert "verstat=TN-Validation-Passed" in (
                    response_of(answer).header("p-asserted-identity") or ""
                )
            assert await raw.exchange(invite("second@t")) == answer  # a retransmission
            cancel = request("CANCEL", call_id="second@t", branch="z9hG4bK-second@t")
            assert response_of(await raw.exchange(cancel)).status == 200
            ack = request("ACK", call_id="second@t", cseq="1 ACK", branch="z9hG4bK-second@t")
            raw.client.send(ack)  # type: ignore[attr-defined]
            assert await raw.nothing_more()
            ((_, stats),) = server.transaction_stats()
            assert (stats.retransmissions, stats.acked, stats.completed) == (1, 1, 1)

            handler = server._handlers[0]
            sent: list[bytes] = []
            message = frame_message(invite("third@t"))
            message.validate()
            assert isinstance(message, SIPRequest)
            assert handler.handle(message, ("127.0.0.1", 5999), sent.append) is None
            (third,) = sent
            assert response_of(third).status == 302
            assert b"verstat=TN-Validation-Passed" in third
    assert server_.requests.count("/chain.pem") == 1
    info = verifier.cache_info()
    assert (info.misses, info.hits) == (1, 2)  # the cached calls' probes count no miss
    assert [r.call_id for r in records] == ["first@t", "second@t", "third@t"]
    assert all(r.certificate is not None and r.verstat == "TN-Validation-Passed" for r in records)


async def test_an_ack_repeating_the_302s_from_and_to_ends_the_transaction(
    call_signer: DemoSigner,
) -> None:
    """As SIPp's scenarios send it (``[last_From:]``, ``[last_To:]``): the To with our tag."""
    async with running("udp:127.0.0.1:0/sign", SIPServices(signer=call_signer)) as (server, raw):
        reply = response_of(await raw.exchange(request(call_id="rep@t", branch="z9hG4bK-rep")))
        from_, to = reply.header("from"), reply.header("to")
        assert from_ is not None
        assert to is not None
        assert ";tag=" in to
        ack = request(
            "ACK", call_id="rep@t", cseq="1 ACK", branch="z9hG4bK-rep", from_=from_, to=to
        )
        raw.client.send(ack)  # type: ignore[attr-defined]
        assert await raw.nothing_more()
        ((_, stats),) = server.transaction_stats()
        assert (stats.acked, stats.completed) == (1, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_", "<sip:unterminated@127.0.0.1"),
        ("to", "no uri here"),
        ("cseq", "1 INVITE"),
        ("cseq", "x ACK"),
        ("headers", [("From", f"<sip:+{ORIG}@127.0.0.1>;tag=second")]),
    ],
)
async def test_an_ack_that_is_not_valid_ends_nothing(
    call_signer: DemoSigner, field: str, value: object
) -> None:
    """Same branch, Call-ID and CSeq number as the INVITE, but a bad (or a second)
    header: the ACK is not answered, and the INVITE's retransmission still gets the
    response it got."""
    async with running("udp:127.0.0.1:0/sign", SIPServices(signer=call_signer)) as (server, raw):
        invite = request(call_id="bad@t", branch="z9hG4bK-bad")
        first = await raw.exchange(invite)
        reply = response_of(first)
        fields: dict[str, object] = {
            "from_": reply.header("from"),
            "to": reply.header("to"),
            "cseq": "1 ACK",
            field: value,
        }
        ack = request("ACK", call_id="bad@t", branch="z9hG4bK-bad", **fields)  # type: ignore[arg-type]
        raw.client.send(ack)  # type: ignore[attr-defined]
        assert await raw.nothing_more()
        ((_, stats),) = server.transaction_stats()
        assert (stats.acked, stats.completed) == (0, 1)
        assert await raw.exchange(invite) == first
