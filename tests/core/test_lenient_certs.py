"""Chains and trust bundles as real STI-CAs send them: the explicit NULL parameter in
``ecdsa-with-SHA256`` (T-Mobile's production root and sub-CA), RSA-signed CA
certificates (the older Neustar chain), and bundles with one bad certificate."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from opensti.core.certs import (
    CertificateChain,
    TrustContext,
    load_certificate_chain,
    load_certificates,
    read_trust_anchors,
    validate_shaken_certificate,
)
from opensti.core.errors import (
    CertificateProfileError,
    CertificateRevoked,
    ChainUntrusted,
    InvalidCertificate,
)
from opensti.core.lenient import relax_certificate, subject_of_der
from opensti.sandbox.pki import DemoPKI, issue_crl, new_key, to_pem
from tests._sti_ca_chains import NullParamPKI, pem_of_der, rsa_ca_pki, with_null_parameter
from tests.core.core_support import NOW

BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB!!not base64\n-----END CERTIFICATE-----\n"


def _der(pem: bytes) -> bytes:
    return base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))


def _trust(*pems: bytes, **options: object) -> TrustContext:
    anchors = read_trust_anchors([(f"anchor{i}.pem", pem) for i, pem in enumerate(pems)])
    return TrustContext(anchors=anchors.certificates, signed=anchors.signed, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "which",
    [
        {"root": True, "intermediate": False, "leaf": False},
        {"root": False, "intermediate": True, "leaf": False},
        {"root": False, "intermediate": False, "leaf": True},
        {"root": True, "intermediate": True, "leaf": True},
    ],
    ids=["root", "intermediate", "leaf", "all"],
)
def test_null_parameter_chain_verifies(which: dict[str, bool]) -> None:
    odd = NullParamPKI.create(NOW, **which)
    key, chain_pem = odd.issue("1234")
    with pytest.raises(ValueError, match="signature_alg"):  # cryptography alone refuses
        x509.load_pem_x509_certificates(odd.root_pem + chain_pem)
    chain = load_certificate_chain(chain_pem)
    validated = validate_shaken_certificate(chain, _trust(odd.root_pem), NOW)
    assert validated.spc == "1234"
    assert validated.public_key.public_numbers() == key.public_key().public_numbers()
    assert [c.subject for c in validated.path] == [
        chain.leaf.subject,
        odd.pki.intermediate.certificate.subject,
        odd.pki.root.certificate.subject,
    ]


def test_null_parameter_signature_is_checked_over_the_original_tbs() -> None:
    """A NULL-encoded intermediate signed by a key other than the root's is refused."""
    odd = NullParamPKI.create(NOW, root=False, intermediate=False)
    forged = pem_of_der(with_null_parameter(odd.pki.intermediate.certificate, new_key()))
    _, chain_pem = odd.issue("1234")
    leaf_pem = chain_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    chain = load_certificate_chain(leaf_pem + forged)
    with pytest.raises(ChainUntrusted, match="does not verify"):
        validate_shaken_certificate(chain, _trust(odd.root_pem), NOW)


def test_null_parameter_chain_gets_every_other_check() -> None:
    odd = NullParamPKI.create(NOW, leaf=True)
    _, chain_pem = odd.issue("1234", days=1)
    chain = load_certificate_chain(chain_pem)
    trust = _trust(odd.root_pem)
    with pytest.raises(ChainUntrusted, match="expired"):
        validate_shaken_certificate(chain, trust, NOW + dt.timedelta(days=2))
    with pytest.raises(ChainUntrusted, match="not valid yet"):
        validate_shaken_certificate(chain, trust, NOW - dt.timedelta(days=1))
    crl = issue_crl(odd.pki.stipa, revoked=[(chain.leaf.serial_number, NOW)], now=NOW)
    revoked = TrustContext(
        anchors=trust.anchors,
        signed=trust.signed,
        crls=(crl,),
        crl_signers=(odd.pki.stipa.certificate,),
    )
    with pytest.raises(CertificateRevoked):
        validate_shaken_certificate(chain, revoked, NOW)
    stranger = DemoPKI(NOW)
    with pytest.raises(ChainUntrusted):
        validate_shaken_certificate(chain, _trust(stranger.root.pem), NOW)


def test_null_parameter_leaf_still_needs_the_shaken_profile() -> None:
    odd = NullParamPKI.create(NOW, leaf=True)
    _, chain_pem = odd.issue("1234", policy_oid="1.2.3.4")
    with pytest.raises(CertificateProfileError, match="policy"):
        validate_shaken_certificate(load_certificate_chain(chain_pem), _trust(odd.root_pem), NOW)


def test_other_malformed_certificates_stay_refused() -> None:
    odd = NullParamPKI.create(NOW)
    der = _der(odd.root_pem)
    trailing = der + b"\x00"  # data after the certificate
    assert relax_certificate(trailing) is None
    # The NULL plus a non-DER (long-form) outer length: not the known deviation.
    body = der[4:]
    long_form = b"\x30\x83" + len(body).to_bytes(3, "big") + body
    assert relax_certificate(long_form) is None
    with pytest.raises(InvalidCertificate, match="not a PEM or DER"):
        load_certificate_chain(pem_of_der(long_form))
    ordinary = odd.pki.intermediate.certificate.public_bytes(serialization.Encoding.DER)
    assert relax_certificate(ordinary) is None


def test_an_x5u_chain_with_a_broken_block_is_refused() -> None:
    _, chain_pem = NullParamPKI.create(NOW).issue("1234")
    with pytest.raises(InvalidCertificate):
        load_certificate_chain(chain_pem + BROKEN_PEM)


def test_mixed_bundle_loads_what_it_can() -> None:
    """The T-Mobile-shaped root, ordinary roots and a broken block in one bundle."""
    odd = NullParamPKI.create(NOW)
    ordinary = DemoPKI(NOW)
    _, leaf = ordinary.issue("5678")
    bundle = odd.root_pem + BROKEN_PEM + ordinary.root.pem + to_pem([leaf])
    anchors = read_trust_anchors([("bundle.pem", bundle), ("empty.pem", b"")])
    assert set(anchors.certificates) == {
        x509.load_der_x509_certificate(_der(ordinary.root.pem)),
        *anchors.signed,
    }
    assert len(anchors.signed) == 1
    reasons = {s.source: s for s in anchors.skipped if s.source == "empty.pem"}
    assert reasons["empty.pem"].reason == "no certificate"
    not_ca = next(s for s in anchors.skipped if "not a CA" in s.reason)
    assert not_ca.subject == leaf.subject.rfc4514_string()
    assert not_ca.fingerprint == leaf.fingerprint(hashes.SHA256()).hex()
    assert any("base64" in s.reason for s in anchors.skipped)
    trust = TrustContext(anchors=anchors.certificates, signed=anchors.signed)
    # Calls under either CA verify with the one bundle.
    validate_shaken_certificate(
        CertificateChain(leaf, (ordinary.intermediate.certificate,)), trust, NOW
    )
    _, odd_chain = odd.issue("1234")
    validate_shaken_certificate(load_certificate_chain(odd_chain), trust, NOW)


def test_skipped_anchors_are_named_as_far_as_they_read() -> None:
    """Subject when pyasn1 reads it, and always the SHA-256 of the bytes as they came."""
    odd = NullParamPKI.create(NOW)
    der = _der(odd.root_pem)
    assert subject_of_der(der) == "CN=SHAKEN ROOT sandbox,O=opensti sandbox CA,C=US"
    # Same subject, but the signature BIT STRING is cut: no longer the known deviation.
    garbled = der + b"\x00"
    found = read_trust_anchors(
        [("x.pem", pem_of_der(garbled) + pem_of_der(b"\x30\x03\x02\x01\x01"))]
    )
    assert not found.certificates
    first, second = found.skipped
    assert first.subject == "CN=SHAKEN ROOT sandbox,O=opensti sandbox CA,C=US"
    assert first.fingerprint == hashlib.sha256(garbled).hexdigest()
    assert second.subject is None
    assert second.fingerprint is None  # not shaped like a certificate: no fingerprint
    assert "x.pem" in first.describe()
    assert first.fingerprint in first.describe()


def test_rsa_ca_chain_follows_the_policy() -> None:
    rsa_pki = rsa_ca_pki(NOW)
    _, leaf = rsa_pki.issue("1234")
    chain = CertificateChain(leaf, (rsa_pki.intermediate,))
    root_pem = to_pem([rsa_pki.root])
    assert validate_shaken_certificate(chain, _trust(root_pem), NOW).spc == "1234"
    with pytest.raises(CertificateProfileError, match="RSA CA policy"):
        validate_shaken_certificate(chain, _trust(root_pem, allow_rsa_ca=False), NOW)


def test_null_parameter_root_needs_no_record_of_what_it_signed() -> None:
    """An anchor's own signature is never checked, so a NULL-parameter root read by any
    loader (the STI-PA CA list, the lifecycle's trust file) anchors an ordinary chain."""
    odd = NullParamPKI.create(NOW, root=True, intermediate=False)
    _, chain_pem = odd.issue("1234")
    [root] = load_certificates(odd.root_pem)
    trust = TrustContext(anchors=(root,))
    assert validate_shaken_certificate(load_certificate_chain(chain_pem), trust, NOW).spc == "1234"
