"""The redirect server over real UDP and TCP sockets on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sip_support import (
    DEST,
    ORIG,
    X5U,
    DemoSigner,
    DemoVerifier,
    GatedVerifier,
    request,
    tcp_client,
    udp_client,
)

from opensti.core.errors import NoActiveCertificate
from opensti.core.identity import parse_identity
from opensti.core.passport import PassportSigner, decode_passport
from opensti.core.verify import Verstat
from opensti.sip import (
    CallRecord,
    FailurePolicy,
    Mode,
    RedirectPolicy,
    ServerLimits,
    SIPServer,
    SIPServices,
    parse_listeners,
)

pytestmark = pytest.mark.integration

LISTENERS = ",".join(
    [
        "udp:127.0.0.1:0/sign",
        "tcp:127.0.0.1:0/sign",
        "udp:127.0.0.1:0/verify",
        "udp:127.0.0.1:0/verify/reject",
        "udp:127.0.0.1:0/verify/continue-with-reason",
        "tcp:127.0.0.1:0/verify/reject",
    ]
)
PAI = ("P-Asserted-Identity", f"<sip:+{ORIG}@127.0.0.1;user=phone>")


def address_of(
    server: SIPServer,
    transport: str,
    mode: Mode,
    policy: FailurePolicy = FailurePolicy.CONTINUE,
) -> tuple[str, int]:
    for spec, address in server.addresses:
        if (spec.transport, spec.mode) == (transport, mode) and (
            mode is Mode.SIGN or spec.failure_policy is policy
        ):
            return address
    raise LookupError(transport, mode, policy)


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
async def server(
    call_signer: DemoSigner, call_verifier: DemoVerifier, records: list[CallRecord]
) -> AsyncIterator[SIPServer]:
    services = SIPServices(signer=call_signer, verifier=call_verifier, log=records.append)
    async with SIPServer(parse_listeners(LISTENERS), services) as running:
        yield running


async def _sign(server: SIPServer, data: bytes) -> str:
    """Send an INVITE to the UDP sign listener; return the 302's Identity."""
    async with udp_client(address_of(server, "udp", Mode.SIGN)) as client:
        response = await client.exchange(data)
    assert response.status == 302, response.reason
    identity = response.header("identity")
    assert identity is not None
    return identity


async def _verify(
    server: SIPServer,
    identities: Sequence[str],
    policy: FailurePolicy = FailurePolicy.CONTINUE,
    headers: Sequence[tuple[str, str]] = (PAI,),
    **kwargs: object,
):  # type: ignore[no-untyped-def]
    fields = list(headers) + [("Identity", identity) for identity in identities]
    async with udp_client(address_of(server, "udp", Mode.VERIFY, policy)) as client:
        return await client.exchange(request(headers=fields, **kwargs))  # type: ignore[arg-type]


# --- sign mode --------------------------------------------------------------------


async def test_sign_answers_302_with_a_valid_identity(
    server: SIPServer, call_verifier: DemoVerifier, records: list[CallRecord]
) -> None:
    uri = f"sip:+{DEST}@127.0.0.1;user=phone"
    async with udp_client(address_of(server, "udp", Mode.SIGN)) as client:
        response = await client.exchange(request(uri=uri, headers=[PAI]))
    assert (response.status, response.reason) == (302, "Moved Temporarily")
    assert response.header("contact") == f"<{uri}>"
    assert response.to_addr.tag
    identity = response.header("identity")
    assert identity is not None
    assert parse_identity(identity).info == X5U
    result = await call_verifier.verify([identity], ORIG, [DEST])
    assert result.verstat is Verstat.PASSED
    assert result.claims is not None
    assert result.claims.attest == "A"
    [record] = records
    assert (record.direction, record.orig, record.dest) == ("outbound", ORIG, (DEST,))
    assert (record.call_id, record.sip_code, record.attest, record.x5u) == (
        response.call_id,
        302,
        "A",
        X5U,
    )


async def test_sign_takes_attestation_from_x_attest(server: SIPServer) -> None:
    identity = await _sign(server, request(headers=[("X-Attest", "b")]))
    assert decode_passport(parse_identity(identity).token).payload["attest"] == "B"


async def test_sign_prefers_p_asserted_identity_over_from(server: SIPServer) -> None:
    pai = ("P-Asserted-Identity", "<sip:alice@h>, <tel:+1-215-555-0199>")
    identity = await _sign(server, request(headers=[pai]))
    payload = decode_passport(parse_identity(identity).token).payload
    assert payload["orig"] == {"tn": "12155550199"}
    assert payload["dest"] == {"tn": [DEST]}


async def test_sign_falls_back_to_from_when_pai_holds_no_tn(server: SIPServer) -> None:
    pai = ("P-Asserted-Identity", "<sip:alice@h>")
    identity = await _sign(server, request(headers=[pai]))
    assert decode_passport(parse_identity(identity).token).payload["orig"] == {"tn": ORIG}


UNUSABLE_CALLS = [
    ({"headers": [("X-Attest", "D")]}, "X-Attest"),
    ({"from_": "<sip:alice@127.0.0.1>;tag=1"}, "telephone number"),
    ({"to": "<sip:bob@127.0.0.1>"}, "telephone number"),
]


@pytest.mark.parametrize(("kwargs", "warning"), UNUSABLE_CALLS)
async def test_sign_sends_unusable_calls_on_unsigned(
    call_signer: DemoSigner, kwargs: dict[str, object], warning: str
) -> None:
    """The default: a 302 to the Request-URI without Identity, so the SBC goes on."""
    records: list[CallRecord] = []
    services = SIPServices(signer=call_signer, log=records.append)
    async with (
        SIPServer(parse_listeners("udp:127.0.0.1:0/sign"), services) as server,
        udp_client(server.address("udp")) as client,
    ):
        response = await client.exchange(request(**kwargs))  # type: ignore[arg-type]
    assert response.status == 302
    assert response.header("identity") is None
    assert response.header("contact") == f"<sip:+{DEST}@127.0.0.1;user=phone>"
    assert warning in (response.header("warning") or "")
    [record] = records
    assert (record.signed, record.sip_code) == (False, 302)
    assert warning in (record.reason or "")


@pytest.mark.parametrize(("kwargs", "warning"), UNUSABLE_CALLS)
async def test_sign_rejects_unusable_calls_with_400_under_reject(
    call_signer: DemoSigner, kwargs: dict[str, object], warning: str
) -> None:
    services = SIPServices(signer=call_signer)
    async with (
        SIPServer(parse_listeners("udp:127.0.0.1:0/sign/reject"), services) as server,
        udp_client(server.address("udp")) as client,
    ):
        response = await client.exchange(request(**kwargs))  # type: ignore[arg-type]
    assert response.status == 400
    assert response.header("identity") is None
    assert warning in (response.header("warning") or "")


async def test_sign_over_tcp_pipelined(server: SIPServer) -> None:
    async with tcp_client(address_of(server, "tcp", Mode.SIGN)) as client:
        await client.send(request(call_id="a@t") + request(call_id="b@t"))
        first, second = await client.receive(), await client.receive()
    assert {first.call_id, second.call_id} == {"a@t", "b@t"}
    assert all(r.status == 302 and r.header("identity") for r in (first, second))


class NoCertificateSigner:
    def sign(self, orig_tn: str, dest_tns: Sequence[str], attest: str | None, call_id: str) -> str:
        raise NoActiveCertificate("entry 'default' has no active certificate")


async def test_sign_without_active_certificate_goes_on_unsigned_or_is_a_500() -> None:
    services = SIPServices(signer=NoCertificateSigner())
    async with (
        SIPServer(
            parse_listeners("udp:127.0.0.1:0/sign,udp:127.0.0.1:0/sign/reject"), services
        ) as server,
        udp_client(server.addresses[0][1]) as going_on,
        udp_client(server.addresses[1][1]) as rejecting,
    ):
        unsigned = await going_on.exchange(request())
        refused = await rejecting.exchange(request())
    assert (unsigned.status, unsigned.header("identity")) == (302, None)
    assert "no active certificate" in (unsigned.header("warning") or "")
    assert (refused.status, refused.reason) == (500, "No Active Certificate")


async def test_sign_can_take_the_called_number_from_the_request_uri(
    call_signer: DemoSigner,
) -> None:
    services = SIPServices(signer=call_signer, policy=RedirectPolicy(dest_from_request_uri=True))
    async with SIPServer(parse_listeners("udp:127.0.0.1:0"), services) as server:
        identity = await _sign(server, request(uri="sip:+12155550177@127.0.0.1"))
    assert decode_passport(parse_identity(identity).token).payload["dest"] == {
        "tn": ["12155550177"]
    }


# --- verify mode ------------------------------------------------------------------


async def test_verify_pass_puts_verstat_on_pai(
    server: SIPServer, call_signer: DemoSigner, records: list[CallRecord]
) -> None:
    identity = call_signer.sign(ORIG, [DEST], "A", "x")
    uri = f"sip:+{DEST}@127.0.0.1;user=phone"
    response = await _verify(server, [identity], uri=uri)
    assert response.status == 302
    assert response.header("contact") == f"<{uri}>"
    assert response.header_values("p-asserted-identity") == [
        f"<sip:+{ORIG};verstat=TN-Validation-Passed@127.0.0.1;user=phone>"
    ]
    assert response.header("reason") is None
    [record] = records
    assert (record.direction, record.verstat, record.attest, record.sip_code, record.x5u) == (
        "inbound",
        "TN-Validation-Passed",
        "A",
        302,
        X5U,
    )


async def test_verify_without_pai_puts_verstat_on_from(
    server: SIPServer, call_signer: DemoSigner
) -> None:
    identity = call_signer.sign(ORIG, [DEST], "A", "x")
    from_ = f'"Alice" <sip:+{ORIG}@127.0.0.1;user=phone>;tag=keep'
    response = await _verify(server, [identity], headers=[], from_=from_)
    assert response.status == 302
    assert response.header("p-asserted-identity") is None
    assert response.header("from") == (
        f'"Alice" <sip:+{ORIG};verstat=TN-Validation-Passed@127.0.0.1;user=phone>;tag=keep'
    )


async def test_verify_tel_pai_gets_verstat_parameter_and_forged_verstat_is_replaced(
    server: SIPServer, call_signer: DemoSigner
) -> None:
    identity = call_signer.sign(ORIG, [DEST], "A", "x")
    pai = ("P-Asserted-Identity", f"<tel:+{ORIG};verstat=TN-Validation-Failed>")
    response = await _verify(server, [identity], headers=[pai])
    assert response.header_values("p-asserted-identity") == [
        f"<tel:+{ORIG};verstat=TN-Validation-Passed>"
    ]


def _tampered(signer: DemoSigner) -> str:
    """A valid header whose signature belongs to another PASSporT."""
    good = signer.sign(ORIG, [DEST], "A", "x")
    other = signer.sign(ORIG, [DEST], "C", "y")
    token, rest = good.split(";", 1)
    return token.rsplit(".", 1)[0] + "." + other.split(";", 1)[0].rsplit(".", 1)[1] + ";" + rest


async def test_verify_tampered_identity(server: SIPServer, call_signer: DemoSigner) -> None:
    tampered = _tampered(call_signer)
    rejected = await _verify(server, [tampered], FailurePolicy.REJECT)
    assert (rejected.status, rejected.reason) == (438, "Invalid Identity Header")
    assert rejected.header("contact") is None
    continued = await _verify(server, [tampered], FailurePolicy.CONTINUE)
    assert continued.status == 302
    assert "verstat=TN-Validation-Failed@" in (continued.header("p-asserted-identity") or "")
    assert continued.header("reason") is None
    reasoned = await _verify(server, [tampered], FailurePolicy.CONTINUE_WITH_REASON)
    assert reasoned.status == 302
    assert reasoned.header("reason") == 'STIR ;cause=438 ;text="Invalid Identity Header"'


async def test_verify_stale_identity_is_403(
    server: SIPServer, passport_signer: PassportSigner
) -> None:
    stale = DemoSigner(passport_signer, clock=lambda: time.time() - 120)
    response = await _verify(server, [stale.sign(ORIG, [DEST], "A", "x")], FailurePolicy.REJECT)
    assert (response.status, response.reason) == (403, "Stale Date")
    reasoned = await _verify(
        server, [stale.sign(ORIG, [DEST], "A", "x")], FailurePolicy.CONTINUE_WITH_REASON
    )
    assert reasoned.header("reason") == 'STIR ;cause=403 ;text="Stale Date"'


async def test_verify_without_identity(server: SIPServer) -> None:
    rejected = await _verify(server, [], FailurePolicy.REJECT)
    assert (rejected.status, rejected.reason) == (428, "Use Identity Header")
    continued = await _verify(server, [], FailurePolicy.CONTINUE)
    assert continued.status == 302
    assert "verstat=No-TN-Validation@" in (continued.header("p-asserted-identity") or "")


async def test_verify_unknown_repository_is_436(
    server: SIPServer, credential: tuple[object, object]
) -> None:
    elsewhere = DemoSigner(PassportSigner(credential[0], "https://127.0.0.1:8443/other.pem"))  # type: ignore[arg-type]
    response = await _verify(server, [elsewhere.sign(ORIG, [DEST], "A", "x")], FailurePolicy.REJECT)
    assert (response.status, response.reason) == (436, "Bad Identity Info")


async def test_verify_called_number_mismatch_is_438(
    server: SIPServer, call_signer: DemoSigner
) -> None:
    identity = call_signer.sign(ORIG, ["12155550100"], "A", "x")
    response = await _verify(server, [identity], FailurePolicy.REJECT)
    assert response.status == 438


async def test_verify_one_good_header_among_bad_ones_passes(
    server: SIPServer, call_signer: DemoSigner
) -> None:
    good = call_signer.sign(ORIG, [DEST], "A", "x")
    response = await _verify(server, [_tampered(call_signer), good], FailurePolicy.REJECT)
    assert response.status == 302


async def test_verify_over_tcp_reject(server: SIPServer, call_signer: DemoSigner) -> None:
    address = address_of(server, "tcp", Mode.VERIFY, FailurePolicy.REJECT)
    async with tcp_client(address) as client:
        good = call_signer.sign(ORIG, [DEST], "A", "x")
        await client.send(request(headers=[PAI, ("Identity", good)]))
        assert (await client.receive()).status == 302
        await client.send(request(headers=[PAI, ("Identity", _tampered(call_signer))]))
        assert (await client.receive()).status == 438


async def test_retransmission_and_cancel_during_verification(
    call_verifier: DemoVerifier, call_signer: DemoSigner
) -> None:
    verifier = GatedVerifier(call_verifier)
    services = SIPServices(verifier=verifier, policy=RedirectPolicy(trying_delay=None))
    async with (
        SIPServer(parse_listeners("udp:127.0.0.1:0/verify"), services) as server,
        udp_client(server.address("udp")) as client,
    ):
        invite = request(call_id="held@t", headers=[PAI], branch="z9hG4bK-held")
        client.send(invite)
        client.send(invite)  # a retransmission while the first is being verified
        other = await client.exchange(request("CANCEL", call_id="held@t"))
        assert other.status == 481  # a CANCEL of another transaction (its own branch)
        cancel = await client.exchange(request("CANCEL", call_id="held@t", branch="z9hG4bK-held"))
        assert (cancel.status, cancel.cseq) == (200, (1, "CANCEL"))
        verifier.gate.set()
        final = await client.receive()
        assert (final.status, final.cseq) == (487, (1, "INVITE"))
        after = await client.exchange(request("OPTIONS"))
        assert after.cseq == (1, "OPTIONS")  # nothing else was sent in between
    assert verifier.calls == 1


async def test_a_verifier_that_hangs_gives_no_tn_validation(call_verifier: DemoVerifier) -> None:
    services = SIPServices(
        verifier=GatedVerifier(call_verifier),
        policy=RedirectPolicy(verify_timeout=0.2, trying_delay=None),
    )
    async with (
        SIPServer(parse_listeners("udp:127.0.0.1:0/verify/reject"), services) as server,
        udp_client(server.address("udp")) as client,
    ):
        response = await client.exchange(request(headers=[PAI]))
    assert response.status == 302
    assert "verstat=No-TN-Validation@" in (response.header("p-asserted-identity") or "")


# --- other methods and bad input ----------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_options_is_200(server: SIPServer, transport: str) -> None:
    address = address_of(server, transport, Mode.SIGN)
    if transport == "udp":
        async with udp_client(address) as udp:
            response = await udp.exchange(request("OPTIONS"))
    else:
        async with tcp_client(address) as tcp:
            await tcp.send(request("OPTIONS"))
            response = await tcp.receive()
    assert (response.status, response.reason) == (200, "OK")
    assert "INVITE" in (response.header("allow") or "")


async def test_other_methods_get_405_with_allow(server: SIPServer) -> None:
    async with udp_client(address_of(server, "udp", Mode.SIGN)) as client:
        response = await client.exchange(request("REGISTER"))
    assert response.status == 405
    assert response.header("allow") == "INVITE, ACK, CANCEL, OPTIONS"


async def test_cancel_without_transaction_is_481(server: SIPServer) -> None:
    async with udp_client(address_of(server, "udp", Mode.SIGN)) as client:
        assert (await client.exchange(request("CANCEL"))).status == 481


@pytest.mark.parametrize(
    "silent",
    [
        b"\x00\x01garbage",
        b"\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n",
        request("ACK"),
        request("INVITE", omit=["Call-ID"]),
        request("ACK", cseq="1 INVITE"),
    ],
    ids=["garbage", "keepalive", "stray-response", "ack", "no-call-id", "malformed-ack"],
)
async def test_no_answer_then_the_server_still_serves(server: SIPServer, silent: bytes) -> None:
    async with udp_client(address_of(server, "udp", Mode.SIGN)) as client:
        client.send(silent)
        response = await client.exchange(request("OPTIONS"))
    # The first datagram back answers the OPTIONS: nothing was sent for ``silent``.
    assert (response.status, response.cseq) == (200, (1, "OPTIONS"))


@pytest.mark.parametrize(
    "malformed",
    [
        request("INVITE", cseq="1 OPTIONS"),
        request("INVITE", from_="<<garbage>;tag=1"),
        request("INVITE", headers=[("To", "<sip:again@h>")]),
        request("INVITE").replace(b"Content-Length: 0", b"Content-Length: 12"),
        request("INVITE", headers=[("P-Asserted-Identity", "<sip:unterminated@h")]),
    ],
    ids=["cseq-method", "from", "two-to", "content-length", "pai"],
)
async def test_malformed_requests_get_400(server: SIPServer, malformed: bytes) -> None:
    for listener in (Mode.SIGN, Mode.VERIFY):
        async with udp_client(address_of(server, "udp", listener)) as client:
            response = await client.exchange(malformed)
            assert response.status == 400
            assert response.header("warning")
            assert (await client.exchange(request("OPTIONS"))).status == 200


async def test_tcp_garbage_closes_the_connection(server: SIPServer) -> None:
    address = address_of(server, "tcp", Mode.SIGN)
    async with tcp_client(address) as client:
        await client.send(b"\x16\x03\x01 this is not SIP\r\n\r\n")
        assert await client.closed_by_peer()
    async with tcp_client(address) as client:
        await client.send(request("OPTIONS"))
        assert (await client.receive()).status == 200


async def test_tcp_oversized_content_length_closes_the_connection(server: SIPServer) -> None:
    async with tcp_client(address_of(server, "tcp", Mode.SIGN)) as client:
        await client.send(request().replace(b"Content-Length: 0", b"Content-Length: 99999999"))
        assert await client.closed_by_peer()


async def test_tcp_message_split_across_writes(server: SIPServer) -> None:
    data = request(body=b"v=0\r\n", headers=[("Content-Type", "application/sdp")])
    async with tcp_client(address_of(server, "tcp", Mode.SIGN)) as client:
        for i in range(0, len(data), 50):
            await client.send(data[i : i + 50])
        assert (await client.receive()).status == 302


async def test_tcp_connection_cap(call_signer: DemoSigner) -> None:
    services = SIPServices(signer=call_signer)
    limits = ServerLimits(max_tcp_connections=1)
    async with SIPServer(parse_listeners("tcp:127.0.0.1:0"), services, limits=limits) as server:
        address = server.address("tcp")
        async with tcp_client(address) as first:
            await first.send(request("OPTIONS"))
            assert (await first.receive()).status == 200
            async with tcp_client(address) as second:
                assert await second.closed_by_peer()
            await first.send(request("OPTIONS"))
            assert (await first.receive()).status == 200


async def test_idle_tcp_connections_are_closed(call_signer: DemoSigner) -> None:
    services = SIPServices(signer=call_signer)
    limits = ServerLimits(tcp_idle_timeout=0.2)
    async with (
        SIPServer(parse_listeners("tcp:127.0.0.1:0"), services, limits=limits) as server,
        tcp_client(server.address("tcp")) as client,
    ):
        assert await client.closed_by_peer()


async def test_responses_are_counted_for_metrics(server: SIPServer) -> None:
    """Every response a listener sends, by status code, over UDP and TCP; read back as
    Prometheus's parser reads /metrics."""
    udp = address_of(server, "udp", Mode.SIGN)
    invite = request(headers=[PAI])
    async with udp_client(udp) as client:
        assert (await client.exchange(invite)).status == 302
        assert (await client.exchange(invite)).status == 302  # a retransmission, resent
        assert (await client.exchange(request("REGISTER"))).status == 405
    async with tcp_client(address_of(server, "tcp", Mode.SIGN)) as tcp:
        await tcp.send(request("OPTIONS"))
        assert (await tcp.receive()).status == 200
    text = "\n".join(line for family in server.metric_families() for line in family.render())
    counts = {
        (sample.labels["listener"], sample.labels["code"]): sample.value
        for family in text_string_to_metric_families(text + "\n")
        for sample in family.samples
    }
    assert counts == {
        ("udp:127.0.0.1:0/sign", "302"): 2,
        ("udp:127.0.0.1:0/sign", "405"): 1,
        ("tcp:127.0.0.1:0/sign", "200"): 1,
    }
