"""T-Mobile's production SHAKEN root and sub-CA (tests/vectors/sti-ca/README.md): the
explicit NULL in ``ecdsa-with-SHA256`` that cryptography refuses, on real certificates."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509

from opensti.core.certs import (
    TrustContext,
    load_certificate_chain,
    read_trust_anchors,
    validate_shaken_certificate,
)
from opensti.core.errors import ChainUntrusted
from tests.core.core_support import VECTORS

DIR = VECTORS / "sti-ca"
ROOT = (DIR / "tmobile-prod-root.pem").read_bytes()
SUB = (DIR / "tmobile-prod-sub.pem").read_bytes()
LEAF = (DIR / "tmobile-leaf-2022.pem").read_bytes()
WHEN = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB!!not base64\n-----END CERTIFICATE-----\n"


def _trust(*pems: bytes) -> TrustContext:
    found = read_trust_anchors([("sti-pa-trust-list.pem", b"".join(pems))])
    return TrustContext(anchors=found.certificates, signed=found.signed)


def test_cryptography_alone_refuses_them() -> None:
    for pem in (ROOT, SUB):
        with pytest.raises(ValueError, match="signature_alg"):
            x509.load_pem_x509_certificate(pem)


def test_the_production_chain_verifies_over_the_original_bytes() -> None:
    anchors = read_trust_anchors([("list.pem", ROOT + BROKEN_PEM)])
    [root] = anchors.certificates
    assert root.subject.rfc4514_string() == "CN=TMOBILE-PROD-ROOT-STIRSHAKEN-EC,O=TMOBILE-USA,C=US"
    assert len(anchors.skipped) == 1
    root_sha256 = hashlib.sha256(anchors.signed[root].der).hexdigest()
    assert root_sha256 == "d54b8c44268da3eaee9c5483c289652d1bd7f82420891114475470adebf8bf1e"
    chain = load_certificate_chain(LEAF + SUB)
    validated = validate_shaken_certificate(chain, _trust(ROOT), WHEN)
    assert validated.spc == "6529"
    assert [c.subject.rfc4514_string() for c in validated.path[1:]] == [
        "CN=TMOBILE-PROD-SUB-STIRSHAKEN-EC,O=TMOBILE-USA,C=US",
        "CN=TMOBILE-PROD-ROOT-STIRSHAKEN-EC,O=TMOBILE-USA,C=US",
    ]


def test_a_changed_byte_in_the_sub_ca_breaks_its_signature() -> None:
    # The sub-CA's serial number 0x2cb8 (02 02 2c b8) becomes 0x2cb9: still the known
    # deviation, still parses, but the root never signed it.
    tampered = SUB.replace(b"AgICLLgw", b"AgICLLkw")
    assert tampered != SUB
    chain = load_certificate_chain(LEAF + tampered)
    with pytest.raises(ChainUntrusted, match="does not verify"):
        validate_shaken_certificate(chain, _trust(ROOT), WHEN)


def test_validity_is_checked_on_the_real_chain() -> None:
    chain = load_certificate_chain(LEAF + SUB)
    with pytest.raises(ChainUntrusted, match="expired"):
        validate_shaken_certificate(chain, _trust(ROOT), dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
