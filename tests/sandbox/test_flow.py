"""The whole acquisition flow with plain HTTP calls, ending in a certificate that
opensti.core accepts against the STI-PA trust list and a PASSporT secsipidx verifies."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from opensti.core.certs import TrustContext, load_certificate_chain, validate_shaken_certificate
from opensti.core.errors import CertificateRevoked
from opensti.core.identity import format_identity
from opensti.core.passport import ShakenClaims, sign_passport
from opensti.sandbox.server import SandboxHandle
from tests.sandbox.acme_support import (
    ACMETestClient,
    Issued,
    STIPATestClient,
    b64,
    jwk_fingerprint,
    run_program,
)

pytestmark = pytest.mark.integration

SECSIPIDX = "/usr/bin/secsipidx"


def acquire(sandbox: SandboxHandle, stipa: STIPATestClient, spc: str = "123H") -> Issued:
    """EAB account, SPC token from the STI-PA, order, tkauth-01, CSR, chain."""
    client = ACMETestClient(sandbox)
    try:
        assert client.register(sandbox.state.add_eab()).status_code == 201
        token = stipa.spc_token(spc, jwk_fingerprint(client.key))
        return client.issue(spc, token)
    finally:
        client.close()


def published_trust(stipa: STIPATestClient) -> TrustContext:
    """The trust context a verifier builds from what the STI-PA publishes."""
    anchors = tuple(x509.load_pem_x509_certificates(stipa.http.get("/api/v1/ca-list").content))
    crl = x509.load_der_x509_crl(stipa.http.get("/download/v1/crl").content)
    token = stipa.spc_token("123H", "SHA256 " + ":".join(["00"] * 32))
    header = json.loads(_b64decode(token.split(".")[0]))
    stipa_cert = x509.load_pem_x509_certificate(stipa.http.get(header["x5u"]).content)
    return TrustContext(anchors=anchors, crls=(crl,), crl_signers=(stipa_cert,))


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_issued_chain_validates_against_the_stipa_trust_list(
    sandbox: SandboxHandle, stipa: STIPATestClient
) -> None:
    issued = acquire(sandbox, stipa, "456J")
    chain = load_certificate_chain(issued.chain_pem)
    validated = validate_shaken_certificate(chain, published_trust(stipa), dt.datetime.now(dt.UTC))
    assert validated.spc == "456J"
    assert validated.public_key == issued.key.public_key()
    assert validated.path[-1] == sandbox.trust_anchors[0]


def test_revoked_certificate_fails_validation(
    sandbox: SandboxHandle, stipa: STIPATestClient
) -> None:
    issued = acquire(sandbox, stipa)
    client = ACMETestClient(sandbox)
    leaf = load_certificate_chain(issued.chain_pem).leaf
    der = leaf.public_bytes(serialization.Encoding.DER)
    client.key = issued.key
    response = client.post(client.directory["revokeCert"], {"certificate": b64(der)}, use_jwk=True)
    client.close()
    assert response.status_code == 200
    with pytest.raises(CertificateRevoked):
        validate_shaken_certificate(
            load_certificate_chain(issued.chain_pem),
            published_trust(stipa),
            dt.datetime.now(dt.UTC),
        )


def _secsipidx(tmp_path: Path, pubkey: str, *cert_checks: str) -> int:
    """secsipidx's exit status checking ``tmp_path/identity`` with a 60 s freshness."""
    identity, key = str(tmp_path / "identity"), str(tmp_path / pubkey)
    result = run_program(
        SECSIPIDX, "-c", "-fidentity", identity, "-fpubkey", key, "-expire", "60", *cert_checks
    )
    return result.returncode


@pytest.mark.interop
@pytest.mark.skipif(shutil.which(SECSIPIDX) is None, reason="secsipidx is not installed")
def test_secsipidx_verifies_a_passport_signed_with_the_issued_key(
    sandbox: SandboxHandle, stipa: STIPATestClient, tmp_path: Path
) -> None:
    issued = acquire(sandbox, stipa)
    claims = ShakenClaims(
        orig="12025550100",
        dest=("12025550101",),
        iat=int(dt.datetime.now(dt.UTC).timestamp()),
        attest="A",
        origid="5d2e4f0a-7b7e-4a8a-9c3e-1f2a3b4c5d6e",
    )
    x5u = "https://127.0.0.1/cert.pem"
    identity = format_identity(sign_passport(claims, key=issued.key, x5u=x5u), x5u)
    (tmp_path / "identity").write_text(identity)
    (tmp_path / "pub.pem").write_bytes(
        issued.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "chain.pem").write_bytes(issued.chain_pem)
    (tmp_path / "root.pem").write_bytes(
        sandbox.trust_anchors[0].public_bytes(serialization.Encoding.PEM)
    )
    assert _secsipidx(tmp_path, "pub.pem") == 0
    # With its certificate checks: validity (1) + chain to the root in -ca-file (4).
    root = str(tmp_path / "root.pem")
    assert _secsipidx(tmp_path, "chain.pem", "-cert-verify", "5", "-ca-file", root) == 0
    other_root = tmp_path / "other-root.pem"
    other_root.write_bytes(sandbox.state.pki.stipa.pem)
    untrusted = ("-cert-verify", "5", "-ca-file", str(other_root))
    assert _secsipidx(tmp_path, "chain.pem", *untrusted) != 0
