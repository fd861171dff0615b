"""Verified calls keep the other provider's certificate: a call from a peer, verified
over real SIP (UDP) and over the REST API, with the peer's chain fetched over HTTPS on
127.0.0.1, then shown by ``opensti calls show``, ``/api/v1/calls`` and the web UI."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from opensti.api import create_api
from opensti.app import App
from opensti.calls import CallLog, certificate_info, find_calls
from opensti.config import load_settings
from opensti.core.identity import format_identity
from opensti.core.passport import PassportSigner, ShakenClaims
from opensti.sip import SIPServer, SIPServices, parse_listeners
from opensti.store import RemoteCertificate, Role, Secret, create_api_token, create_user
from opensti.verification import FetchPolicy, TrustStore, VerificationService, X5UFetcher
from opensti.web import create_web
from tests._servers import Route, make_tls_files, serve
from tests._site import Site, make_site
from tests.calls.test_calls_cli import run
from tests.sip.sip_support import request, udp_client
from tests.web.conftest import PASSWORD, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.db_dialect]

PEER_SPC = "456Z"
ORIG, DEST = "12025550100", "12025550199"


@dataclass
class Peer:
    """Our site, and another provider whose chain our verifier fetches from its x5u."""

    site: Site
    signer: PassportSigner
    leaf: x509.Certificate
    verifier: VerificationService
    log: CallLog

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.leaf.public_bytes(serialization.Encoding.DER)).hexdigest()

    def identity(self, call_id: str) -> str:
        claims = ShakenClaims(
            orig=ORIG, dest=(DEST,), iat=int(time.time()), attest="B", origid=call_id
        )
        return format_identity(self.signer.sign(claims), self.signer.x5u)

    def remote_rows(self) -> int:
        with self.site.database.read_session() as session:
            return session.scalar(select(func.count()).select_from(RemoteCertificate)) or 0


@pytest.fixture
def peer_site(
    tmp_path: Path, database_url: str
) -> Iterator[tuple[Site, PassportSigner, x509.Certificate, Path]]:
    tls = make_tls_files(tmp_path / "tls")
    with (
        serve(tls) as repository,
        make_site(tmp_path / "data", repository.url(""), database_url) as site,
    ):
        key, leaf = site.pki.issue(PEER_SPC)
        repository.routes["/peer/456Z.pem"] = Route.body(site.pki.chain_pem(leaf))
        signer = PassportSigner(key, repository.url("/peer/456Z.pem"))
        yield site, signer, leaf, tls.root_pem


@pytest.fixture
async def peer(
    peer_site: tuple[Site, PassportSigner, x509.Certificate, Path],
) -> AsyncIterator[Peer]:
    site, signer, leaf, tls_root = peer_site
    async with X5UFetcher(FetchPolicy(allow_private=True), verify=str(tls_root)) as fetcher:
        verifier = VerificationService(fetcher, TrustStore([site.pki.root.certificate]))
        with CallLog(site.database) as log:
            yield Peer(site, signer, leaf, verifier, log)


def _assert_is_the_peer(cert: dict[str, object] | None, peer: Peer) -> None:
    assert cert is not None
    assert cert["spc"] == PEER_SPC
    assert cert["fingerprint"] == peer.fingerprint
    assert cert["subject"] == peer.leaf.subject.rfc4514_string()
    assert cert["issuer"] == peer.leaf.issuer.rfc4514_string()
    assert cert["certificate_id"] is None  # not one of ours
    assert str(cert["pem"]).startswith("-----BEGIN CERTIFICATE-----")


async def test_a_call_verified_over_sip_is_shown_with_the_peers_certificate(peer: Peer) -> None:
    services = SIPServices(verifier=peer.verifier, log=peer.log)
    pai = ("P-Asserted-Identity", f"<sip:+{ORIG}@127.0.0.1;user=phone>")
    to = f"<sip:+{DEST}@127.0.0.1;user=phone>"
    async with (
        SIPServer(parse_listeners("udp:127.0.0.1:0/verify"), services) as server,
        udp_client(server.address("udp")) as client,
    ):
        for n in range(3):  # three calls from one peer: its certificate is stored once
            call_id = f"sip-{n}@peer"
            invite = request(
                to=to, call_id=call_id, headers=[pai, ("Identity", peer.identity(call_id))]
            )
            response = await client.exchange(invite)
            while response.status < 200:  # 100 Trying: the first x5u fetch ran slow
                response = await client.receive()
            assert response.status == 302
            assert "TN-Validation-Passed" in (response.header("p-asserted-identity") or "")
    assert peer.log.flush()
    assert peer.remote_rows() == 1
    site = peer.site
    with site.database.read_session() as session:
        (message,) = find_calls(session, "sip-0@peer")
        assert message.remote_certificate_id is not None
        info = certificate_info(session, message)
        assert info is not None
        _assert_is_the_peer(info.to_dict(), peer)
        message_id = message.id

    shown = run(site, "calls", "show", "sip-1@peer", "--json")
    assert shown.returncode == 0, shown.stderr
    _assert_is_the_peer(json.loads(shown.stdout)["records"][0]["certificate"], peer)
    text = run(site, "calls", "show", "sip-1@peer")
    assert "another provider" in text.stdout
    assert PEER_SPC in text.stdout
    assert peer.fingerprint in text.stdout

    settings = load_settings(data_dir=site.data_dir, database_url=site.database_url)
    with App.from_settings(settings) as application:
        with application.database.session() as session:
            create_user(
                session, name="rita", password=Secret.from_text(PASSWORD), role=Role.READ_ONLY
            )
        transport = httpx.ASGITransport(app=create_web(application))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as ui:
            assert (await sign_in(ui, "rita")).status_code == 303
            page = await ui.get(f"/calls/{message_id}")
    assert page.status_code == 200
    assert "Signed by another provider" in page.text
    assert PEER_SPC in page.text
    assert peer.fingerprint in page.text
    assert "BEGIN CERTIFICATE" in page.text


async def test_a_call_verified_over_rest_is_shown_with_the_peers_certificate(peer: Peer) -> None:
    site = peer.site
    settings = load_settings(data_dir=site.data_dir, database_url=site.database_url)
    with App.from_settings(settings) as application:
        with application.database.session() as session:
            _, token = create_api_token(session, name="op", role=Role.OPERATOR)
        api = create_api(application, verifier=peer.verifier, call_log=peer.log)
        headers = {"Authorization": f"Bearer {token.reveal_text()}"}
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as client:
            for call_id in ("rest-1@peer", "rest-2@peer"):
                body = {"identity": peer.identity(call_id), "from": ORIG, "to": DEST}
                verified = await client.post("/api/v1/verify", json={**body, "call_id": call_id})
                assert verified.json()["verstat"] == "TN-Validation-Passed", verified.text
            assert peer.log.flush()
            detail = (await client.get("/api/v1/calls/rest-2@peer")).json()
    (record,) = detail["records"]
    assert (record["direction"], record["verstat"]) == ("inbound", "TN-Validation-Passed")
    _assert_is_the_peer(record["certificate"], peer)
    assert record["certificate"]["remote_certificate_id"] is not None
    assert peer.remote_rows() == 1


async def test_a_new_writer_finds_the_stored_certificate(peer: Peer) -> None:
    """Another process (or a restart) writes the same peer: still one row, same id."""
    result = await peer.verifier.verify([peer.identity("a@peer")], ORIG, [DEST])
    assert result.certificate is not None
    ids = set()
    for call_id in ("a@peer", "b@peer"):
        with CallLog(peer.site.database) as log:
            log.record_verified(result, orig=ORIG, dest=[DEST], call_id=call_id)
            assert log.flush()
        with peer.site.database.read_session() as session:
            (message,) = find_calls(session, call_id)
            ids.add(message.remote_certificate_id)
    (only,) = ids
    assert only is not None
    assert peer.remote_rows() == 1
