"""SHAKEN certificates: the ATIS-1000080 end-entity profile, chains, CRLs."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from opensti.core.certs import (
    CertificateChain,
    TrustContext,
    check_shaken_ee_profile,
    load_certificate_chain,
    load_certificates,
    load_crl,
    tnauthlist_of,
    validate_shaken_certificate,
)
from opensti.core.errors import (
    CertificateProfileError,
    CertificateRevoked,
    ChainUntrusted,
    InvalidCertificate,
    UnsupportedCredential,
)
from opensti.core.tnauthlist import SPC, TNAUTHLIST_OID, TelephoneNumber, TNAuthList
from opensti.sandbox.pki import (
    DemoPKI,
    IssuedCertificate,
    issue_crl,
    issue_stipa_certificate,
    to_pem,
)
from tests.core.core_support import NOW, reissue, vector_json

TNAUTHLIST = x509.ObjectIdentifier(TNAUTHLIST_OID)


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{name: flags.get(name, False) for name in names})


def _tnauthlist_ext(value: bytes) -> tuple[x509.ExtensionType, bool]:
    return x509.UnrecognizedExtension(TNAUTHLIST, value), False


# The end-entity profile, one rule at a time.


def test_a_sandbox_certificate_passes_the_profile(signer: tuple[object, x509.Certificate]) -> None:
    _, cert = signer
    assert check_shaken_ee_profile(cert) == "1234"
    assert tnauthlist_of(cert) == TNAuthList.for_spc("1234")


def test_the_comcast_tnauthlist_value_gives_its_spc(pki: DemoPKI) -> None:
    vectors = {v["name"]: v for v in vector_json("tnauthlist/vectors.json")}
    der = bytes.fromhex(vectors["spc-318J-comcast"]["der_hex"])
    _, cert = pki.issue("1234")
    real = reissue(cert, pki.intermediate, add=(_tnauthlist_ext(der),))
    assert check_shaken_ee_profile(real) == "318J"


def _bad_certificates(pki: DemoPKI) -> dict[str, tuple[x509.Certificate, str]]:
    _, good = pki.issue("1234")
    inter = pki.intermediate
    two_spcs = TNAuthList((SPC("1234"), SPC("5678"))).to_der()
    one_tn = TNAuthList((TelephoneNumber("12155550121"),)).to_der()
    return {
        "no TNAuthList": (reissue(good, inter, drop=(TNAUTHLIST,)), "no TNAuthList"),
        "two SPCs": (
            reissue(good, inter, add=(_tnauthlist_ext(two_spcs),)),
            "exactly one SPC",
        ),
        "a TN instead of an SPC": (
            reissue(good, inter, add=(_tnauthlist_ext(one_tn),)),
            "exactly one SPC",
        ),
        "TNAuthList garbage": (
            reissue(good, inter, add=(_tnauthlist_ext(b"\x30\x03\x02\x01\x01"),)),
            "does not parse",
        ),
        "CA:TRUE": (
            reissue(good, inter, add=((x509.BasicConstraints(ca=True, path_length=None), True),)),
            "CA:TRUE",
        ),
        "no digitalSignature": (
            reissue(good, inter, add=((_key_usage(key_agreement=True), True),)),
            "digitalSignature",
        ),
        "no key usage": (reissue(good, inter, drop=(x509.KeyUsage,)), "digitalSignature"),
        "no CRLDP": (
            reissue(good, inter, drop=(x509.CRLDistributionPoints,)),
            "CRL distribution point",
        ),
        "no SHAKEN policy": (
            reissue(
                good,
                inter,
                add=(
                    (
                        x509.CertificatePolicies(
                            [x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)]
                        ),
                        False,
                    ),
                ),
            ),
            "policy",
        ),
        "no policies at all": (reissue(good, inter, drop=(x509.CertificatePolicies,)), "policy"),
        "RSA key": (
            reissue(
                good,
                inter,
                public_key=rsa.generate_private_key(65537, 2048).public_key(),
                drop=(x509.SubjectKeyIdentifier,),
            ),
            "P-256",
        ),
        "P-384 key": (
            reissue(
                good,
                inter,
                public_key=ec.generate_private_key(ec.SECP384R1()).public_key(),
                drop=(x509.SubjectKeyIdentifier,),
            ),
            "P-256",
        ),
    }


BAD_CASES = (
    "no TNAuthList",
    "two SPCs",
    "a TN instead of an SPC",
    "TNAuthList garbage",
    "CA:TRUE",
    "no digitalSignature",
    "no key usage",
    "no CRLDP",
    "no SHAKEN policy",
    "no policies at all",
    "RSA key",
    "P-384 key",
)


@pytest.fixture(scope="module")
def bad_certificates(pki: DemoPKI) -> dict[str, tuple[x509.Certificate, str]]:
    certificates = _bad_certificates(pki)
    assert tuple(certificates) == BAD_CASES
    return certificates


@pytest.mark.parametrize("case", BAD_CASES)
def test_each_profile_rule_fails_on_its_own(
    case: str,
    bad_certificates: dict[str, tuple[x509.Certificate, str]],
    trust: TrustContext,
    pki: DemoPKI,
) -> None:
    cert, message = bad_certificates[case]
    with pytest.raises(CertificateProfileError, match=message):
        check_shaken_ee_profile(cert)
    # The whole validation refuses it too, with the same 437 class.
    chain = CertificateChain(cert, (pki.intermediate.certificate,))
    with pytest.raises(CertificateProfileError):
        validate_shaken_certificate(chain, trust, NOW)


def test_policy_oids_can_be_pinned(signer: tuple[object, x509.Certificate]) -> None:
    _, cert = signer
    assert check_shaken_ee_profile(cert, policy_oids=frozenset({"2.16.840.1.114569.1.1.4"}))
    with pytest.raises(CertificateProfileError, match="policy"):
        check_shaken_ee_profile(cert, policy_oids=frozenset({"2.16.840.1.114569.1.1.3"}))


def test_missing_basic_constraints_is_not_a_ca(pki: DemoPKI) -> None:
    _, good = pki.issue("1234")
    cert = reissue(good, pki.intermediate, drop=(x509.BasicConstraints,))
    assert check_shaken_ee_profile(cert) == "1234"


# Chain validation to the STI-PA trust anchors.


def test_valid_chain(pki: DemoPKI, signer: tuple[object, x509.Certificate]) -> None:
    _, cert = signer
    trust = TrustContext(anchors=(pki.root.certificate,))
    validated = validate_shaken_certificate(load_certificate_chain(pki.chain_pem(cert)), trust, NOW)
    assert validated.spc == "1234"
    assert validated.leaf == cert
    assert validated.path == (cert, pki.intermediate.certificate, pki.root.certificate)
    assert validated.public_key.public_numbers() == cert.public_key().public_numbers()


def test_chain_to_another_root_is_untrusted(signer: tuple[object, x509.Certificate]) -> None:
    _, cert = signer
    other = DemoPKI(now=NOW)
    trust = TrustContext(anchors=(other.root.certificate,))
    with pytest.raises(ChainUntrusted):
        validate_shaken_certificate(
            CertificateChain(cert, (other.intermediate.certificate,)), trust, NOW
        )


def test_self_signed_end_entity_is_untrusted(pki: DemoPKI, trust: TrustContext) -> None:
    key, good = pki.issue("1234")
    self_signed = reissue(good, IssuedCertificate(good, key))
    assert self_signed.issuer == self_signed.subject
    with pytest.raises(ChainUntrusted):
        validate_shaken_certificate(CertificateChain(self_signed), trust, NOW)


def test_missing_intermediate_is_untrusted(
    signer: tuple[object, x509.Certificate], trust: TrustContext
) -> None:
    _, cert = signer
    with pytest.raises(ChainUntrusted):
        validate_shaken_certificate(CertificateChain(cert), trust, NOW)


def test_no_anchors_means_untrusted(pki: DemoPKI, signer: tuple[object, x509.Certificate]) -> None:
    _, cert = signer
    chain = CertificateChain(cert, (pki.intermediate.certificate,))
    with pytest.raises(ChainUntrusted, match="no trust anchors"):
        validate_shaken_certificate(chain, TrustContext(anchors=()), NOW)


@pytest.mark.parametrize(
    "when",
    [NOW + dt.timedelta(days=8), NOW - dt.timedelta(minutes=6)],
    ids=["expired", "not-yet-valid"],
)
def test_outside_the_validity_window(
    pki: DemoPKI, signer: tuple[object, x509.Certificate], trust: TrustContext, when: dt.datetime
) -> None:
    _, cert = signer  # valid from NOW - 5 min to NOW + 7 days
    chain = CertificateChain(cert, (pki.intermediate.certificate,))
    with pytest.raises(ChainUntrusted):
        validate_shaken_certificate(chain, trust, when)


# Revocation through the STI-PA CRL.


def _chain(pki: DemoPKI, cert: x509.Certificate) -> CertificateChain:
    return CertificateChain(cert, (pki.intermediate.certificate,))


def test_revoked_end_entity(pki: DemoPKI) -> None:
    _, cert = pki.issue("1234")
    trust = TrustContext(
        anchors=(pki.root.certificate,),
        crls=(pki.crl([cert.serial_number]),),
        crl_signers=(pki.stipa.certificate,),
    )
    with pytest.raises(CertificateRevoked) as caught:
        validate_shaken_certificate(_chain(pki, cert), trust, NOW)
    assert caught.value.value == cert.serial_number


def test_revoked_intermediate(pki: DemoPKI) -> None:
    _, cert = pki.issue("1234")
    trust = TrustContext(
        anchors=(pki.root.certificate,),
        crls=(pki.crl([pki.intermediate.certificate.serial_number]),),
        crl_signers=(pki.stipa.certificate,),
    )
    with pytest.raises(CertificateRevoked):
        validate_shaken_certificate(_chain(pki, cert), trust, NOW)


def test_crl_listing_other_serials_passes(pki: DemoPKI) -> None:
    _, cert = pki.issue("1234")
    trust = TrustContext(
        anchors=(pki.root.certificate,),
        crls=(pki.crl([cert.serial_number + 1]),),
        crl_signers=(pki.stipa.certificate,),
    )
    assert validate_shaken_certificate(_chain(pki, cert), trust, NOW).spc == "1234"


def test_crl_with_unverifiable_signature_is_refused(pki: DemoPKI) -> None:
    _, cert = pki.issue("1234")
    # Same issuer name as the real STI-PA, another key: a forged CRL.
    impostor = issue_stipa_certificate(now=NOW)
    assert impostor.certificate.subject == pki.stipa.certificate.subject
    forged = issue_crl(impostor, now=NOW)
    trust = TrustContext(
        anchors=(pki.root.certificate,), crls=(forged,), crl_signers=(pki.stipa.certificate,)
    )
    with pytest.raises(UnsupportedCredential, match="CRL") as caught:
        validate_shaken_certificate(_chain(pki, cert), trust, NOW)
    assert not isinstance(caught.value, CertificateRevoked)


def test_crl_without_known_signer_is_refused(pki: DemoPKI) -> None:
    _, cert = pki.issue("1234")
    trust = TrustContext(anchors=(pki.root.certificate,), crls=(pki.crl(),))
    with pytest.raises(UnsupportedCredential, match="CRL"):
        validate_shaken_certificate(_chain(pki, cert), trust, NOW)


# Loading.


def test_load_pem_chain_keeps_order(pki: DemoPKI, signer: tuple[object, x509.Certificate]) -> None:
    _, cert = signer
    chain = load_certificate_chain(pki.chain_pem(cert))
    assert chain.leaf == cert
    assert chain.intermediates == (pki.intermediate.certificate,)


def test_load_der_certificate(signer: tuple[object, x509.Certificate]) -> None:
    _, cert = signer
    assert load_certificates(cert.public_bytes(serialization.Encoding.DER)) == [cert]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x30\x03\x02\x01\x01",
        b"-----BEGIN CERTIFICATE-----" + b"A" * 300_000,
    ],
)
def test_garbage_certificates(data: bytes) -> None:
    with pytest.raises(InvalidCertificate):
        load_certificates(data)


def test_load_crl_pem_and_der(pki: DemoPKI) -> None:
    crl = pki.crl([5])
    assert load_crl(crl.public_bytes(serialization.Encoding.PEM)) == crl
    assert load_crl(crl.public_bytes(serialization.Encoding.DER)) == crl
    with pytest.raises(InvalidCertificate):
        load_crl(b"not a crl")
    with pytest.raises(InvalidCertificate):
        load_crl(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")


def test_to_pem_round_trip(pki: DemoPKI) -> None:
    certs = [pki.intermediate.certificate, pki.root.certificate]
    assert load_certificates(to_pem(certs)) == certs
