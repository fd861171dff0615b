"""The SHAKEN CSR: subject, TNAuthList, CA:FALSE, signed by the certificate key."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opensti.acme import shaken_csr
from opensti.core.errors import InvalidInput, InvalidKey
from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList


def _load(pem: bytes) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(pem)


def test_csr_subject_extensions_and_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _load(shaken_csr(key, TNAuthList.for_spc("123H"), organization="Example Carrier"))
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    subject = {a.oid: a.value for a in csr.subject}
    assert subject == {
        NameOID.COUNTRY_NAME: "US",
        NameOID.ORGANIZATION_NAME: "Example Carrier",
        NameOID.COMMON_NAME: "SHAKEN 123H",
    }
    tnauthlist = csr.extensions.get_extension_for_oid(x509.ObjectIdentifier(TNAUTHLIST_OID))
    assert not tnauthlist.critical
    assert TNAuthList.from_der(tnauthlist.value.value) == TNAuthList.for_spc("123H")
    assert tnauthlist.value.value.hex() == "3008a006160431323348"
    constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False


def test_csr_country_is_a_parameter() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _load(shaken_csr(key, TNAuthList.for_spc("1234"), organization="O", country="ca"))
    assert csr.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "CA"


def test_csr_refuses_a_non_p256_key() -> None:
    with pytest.raises(InvalidKey):
        shaken_csr(
            ec.generate_private_key(ec.SECP384R1()), TNAuthList.for_spc("1234"), organization="O"
        )


def test_csr_refuses_more_than_one_spc() -> None:
    value = TNAuthList.from_der(TNAuthList.for_spc("1234").to_der())
    two = TNAuthList((*value.entries, *TNAuthList.for_spc("5678").entries))
    with pytest.raises(InvalidInput, match="exactly one SPC"):
        shaken_csr(ec.generate_private_key(ec.SECP256R1()), two, organization="O")


@pytest.mark.parametrize(("country", "organization"), [("USA", "O"), ("US", "  ")])
def test_csr_refuses_a_bad_subject(country: str, organization: str) -> None:
    with pytest.raises(InvalidInput):
        shaken_csr(
            ec.generate_private_key(ec.SECP256R1()),
            TNAuthList.for_spc("1234"),
            organization=organization,
            country=country,
        )
