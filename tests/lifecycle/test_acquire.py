"""Certificate entries and ``request_certificate`` against a real sandbox: the flow of
issue 5, the bring-your-own SPC token paths, failures and export."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from opensti.acme import key_fingerprint
from opensti.core.certs import (
    TrustContext,
    load_certificate_chain,
    tnauthlist_of,
    validate_shaken_certificate,
)
from opensti.core.errors import InvalidInput, InvalidSPCToken, StiPaRefused
from opensti.core.passport import load_private_key
from opensti.core.tnauthlist import TNAuthList
from opensti.lifecycle.acquire import AcquireStep
from opensti.stipa import StiPaClient, StiPaCredentials
from opensti.store import (
    Certificate,
    CertificateState,
    acme_account_key,
    certificate_key,
    get_acme_account,
    get_certificate,
    list_events,
)
from tests.lifecycle.acquire_support import World, world
from tests.sandbox.acme_support import run_program
from tests.sandbox.conftest import clock, sandbox_factory

__all__ = ["clock", "sandbox_factory", "world"]

pytestmark = pytest.mark.integration

SECSIPIDX = "/usr/bin/secsipidx"
SPCS = ("123H", "456J")

#: The steps of a request with nothing to resume.
FRESH_FLOW = [step for step in AcquireStep if step is not AcquireStep.RESUME_ORDER]


def _sandbox_trust(world: World) -> TrustContext:
    return TrustContext(anchors=world.sandbox.trust_anchors)


def _stored(world: World, certificate_id: int) -> Certificate:
    with world.app.database.read_session() as session:
        return get_certificate(session, certificate_id)


def _entries(world: World, account: str) -> None:
    for spc in SPCS:
        world.app.certificates.add_entry(
            name=f"e-{spc}", spc=spc, acme_account=account, stipa_account_id="123H"
        )


def test_two_entries_for_one_stipa_account_get_two_valid_certificates(world: World) -> None:
    account = world.ready()
    _entries(world, account)
    seen: list[AcquireStep] = []
    results = [
        world.app.certificates.request_certificate(f"e-{spc}", progress=seen.append) for spc in SPCS
    ]
    assert seen == [*FRESH_FLOW, *FRESH_FLOW]
    for spc, result in zip(SPCS, results, strict=True):
        cert = _stored(world, result.certificate.id)
        assert cert.state is CertificateState.ACTIVE
        assert cert.chain_pem is not None
        chain = load_certificate_chain(cert.chain_pem.encode())
        validated = validate_shaken_certificate(
            chain, _sandbox_trust(world), dt.datetime.now(dt.UTC)
        )
        assert validated.spc == spc
        assert tnauthlist_of(chain.leaf) == TNAuthList.for_spc(spc)
        key = load_private_key(certificate_key(world.app.box, cert).reveal())
        assert key.public_key() == chain.leaf.public_key()
        assert cert.x5u_url == f"https://sti-cr.example.net/sti-cr/{cert.id}.pem"
        assert b"PRIVATE KEY" not in cert.key_ciphertext
    with world.app.database.read_session() as session:
        steps = [e.step for e in reversed(list_events(session, cert.entry_id))]
    # No deployment task here, so no deploy event (each task run records one).
    assert steps == [step.value for step in FRESH_FLOW if step is not AcquireStep.DEPLOY]
    listed = {entry.spc: entry.active for entry in world.app.certificates.list_entries()}
    assert {spc: a.id if a else None for spc, a in listed.items()} == {
        spc: r.certificate.id for spc, r in zip(SPCS, results, strict=True)
    }


def test_a_new_request_supersedes_the_active_certificate(world: World) -> None:
    account = world.ready()
    _entries(world, account)
    first = world.app.certificates.request_certificate("e-123H")
    second = world.app.certificates.request_certificate("e-123H")
    assert second.superseded_id == first.certificate.id
    assert _stored(world, first.certificate.id).state is CertificateState.SUPERSEDED
    states = [c.state for c in world.app.certificates.show_entry("e-123H").certificates]
    assert states == ["active", "superseded"]


@pytest.mark.interop
@pytest.mark.skipif(shutil.which(SECSIPIDX) is None, reason="secsipidx is not installed")
def test_secsipidx_verifies_a_passport_signed_with_each_certificate(
    world: World, tmp_path: Path
) -> None:
    account = world.ready()
    _entries(world, account)
    signer_certs = {}
    for spc in SPCS:
        signer_certs[spc] = world.app.certificates.request_certificate(f"e-{spc}").chain_pem
    service = world.app.signing_service()
    root = tmp_path / "root.pem"
    root.write_bytes(world.sandbox.trust_anchors[0].public_bytes(serialization.Encoding.PEM))
    for spc in SPCS:
        signed = service.sign("12025550100", "12025550101", "A", entry=f"e-{spc}")
        (tmp_path / "identity").write_text(signed.identity)
        (tmp_path / "chain.pem").write_bytes(signer_certs[spc])
        result = run_program(
            SECSIPIDX,
            *("-c", "-fidentity", str(tmp_path / "identity")),
            *("-fpubkey", str(tmp_path / "chain.pem"), "-expire", "60"),
            *("-cert-verify", "5", "-ca-file", str(root)),
        )
        assert result.returncode == 0, result


def _token_for(world: World, account: str, spc: str) -> tuple[str, str | None]:
    """An SPC token fetched "on another host": straight from the STI-PA API."""
    with world.app.database.read_session() as session:
        key = load_private_key(
            acme_account_key(world.app.box, get_acme_account(session, account)).reveal()
        )
    client = StiPaClient(
        StiPaCredentials("123H", "demo", "demo-password"),
        base_url=world.sandbox.stipa_base_url,
        trust_anchors=(world.sandbox.state.pki.stipa.certificate,),
        verify=world.sandbox.verify,
    )
    with client:
        token = client.request_token(TNAuthList.for_spc(spc), key_fingerprint(key))
    return token.jwt, token.crl_url


def _ca_anchors(world: World, tmp_path: Path) -> None:
    """Without an STI-PA account the trust list comes from a configured file."""
    path = tmp_path / "ca-roots.pem"
    path.write_bytes(world.sandbox.trust_anchors[0].public_bytes(serialization.Encoding.PEM))
    world.app.close()
    world.env["OPENSTI_CA_TRUST_ANCHORS"] = str(path)
    world.__post_init__()


def test_bring_your_own_token_file(world: World, tmp_path: Path) -> None:
    world.add_sandbox_ca()
    account = world.account()
    _ca_anchors(world, tmp_path)
    jwt, crl = _token_for(world, account, "456J")
    data = json.dumps({"token": jwt, "crl": crl}).encode()
    entry = world.app.certificates.add_entry(
        name="byo", spc="456J", acme_account=account, token_file=data
    )
    assert (entry.has_token, entry.crl_url, entry.stipa_account_id) == (True, crl, None)
    result = world.app.certificates.request_certificate("byo")
    chain = load_certificate_chain(result.chain_pem)
    assert (
        validate_shaken_certificate(chain, _sandbox_trust(world), dt.datetime.now(dt.UTC)).spc
        == "456J"
    )


def test_bring_your_own_token_and_crl_url(world: World, tmp_path: Path) -> None:
    world.add_sandbox_ca()
    account = world.account()
    _ca_anchors(world, tmp_path)
    jwt, crl = _token_for(world, account, "123H")
    world.app.certificates.add_entry(
        name="byo", spc="123H", acme_account=account, token=jwt, crl_url=crl
    )
    result = world.app.certificates.request_certificate("byo")
    assert result.spc == "123H"
    assert result.certificate.state == "active"


@pytest.mark.parametrize(
    ("spc", "token_file", "error", "message"),
    [
        ("12345", None, InvalidInput, r"SPC '12345' is not valid: expected an OCN"),
        ("123H", b"hello world", InvalidSPCToken, "neither the STI-PA's JSON answer nor a JWT"),
        ("123H", b"a.b.c", InvalidSPCToken, "not an SPC token"),
        ("123H", "456J", InvalidSPCToken, "the SPC token is for SPC 456J, not SPC 123H"),
        ("123H", "other-key", InvalidSPCToken, "the SPC token is bound to key"),
    ],
)
def test_bad_entries_are_refused_and_nothing_stored(
    world: World, spc: str, token_file: bytes | str | None, error: type, message: str
) -> None:
    world.add_sandbox_ca()
    account = world.account()
    world.account("other")
    data: bytes | None = None
    if token_file == "456J":
        data = _token_for(world, account, "456J")[0].encode()
    elif token_file == "other-key":
        data = _token_for(world, "other", "123H")[0].encode()
    elif isinstance(token_file, bytes):
        data = token_file
    before = world.snapshot()
    with pytest.raises(error, match=message):
        world.app.certificates.add_entry(
            name="bad",
            spc=spc,
            acme_account=account,
            token_file=data,
            stipa_account_id=None if data else "123H",
        )
    assert world.snapshot() == before


def test_an_entry_needs_a_token_source(world: World) -> None:
    world.add_sandbox_ca()
    account = world.account()
    before = world.snapshot()
    with pytest.raises(InvalidInput, match="needs an STI-PA account"):
        world.app.certificates.add_entry(name="bad", spc="123H", acme_account=account)
    assert world.snapshot() == before


def test_a_refused_request_records_the_failed_step_and_stores_no_certificate(
    world: World,
) -> None:
    account = world.ready()
    _entries(world, account)
    world.sandbox.state.faults.set("stipa", "refuse")
    with pytest.raises(StiPaRefused, match="HTTP 503: the service is unavailable"):
        world.app.certificates.request_certificate("e-123H")
    detail = world.app.certificates.show_entry("e-123H")
    assert detail.certificates == []
    # Retried at once a few times (a 503 is transient), then given up.
    assert {(e.step, e.outcome) for e in detail.events} == {("spc-token", "failed")}
    assert detail.events[0].error is not None
    assert "503" in detail.events[0].error


def test_export_pem_and_pfx(world: World, tmp_path: Path) -> None:
    account = world.ready()
    _entries(world, account)
    result = world.app.certificates.request_certificate("e-123H")
    chain, key = world.app.certificates.export_certificate("e-123H", tmp_path / "pem")
    assert chain.read_bytes() == result.chain_pem
    assert key.stat().st_mode & 0o777 == 0o600
    exported = load_private_key(key.read_bytes())
    (pfx,) = world.app.certificates.export_certificate("e-123H", tmp_path / "pfx", format="pfx")
    loaded = pkcs12.load_pkcs12(pfx.read_bytes(), None)
    assert loaded.key is not None
    assert loaded.key.public_key() == exported.public_key()
    assert loaded.cert is not None
    assert loaded.cert.certificate == load_certificate_chain(result.chain_pem).leaf
    with pytest.raises(InvalidInput, match="not pem or pfx"):
        world.app.certificates.export_certificate("e-123H", tmp_path, format="der")  # type: ignore[arg-type]
