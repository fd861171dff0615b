"""The PKCS#10 request for a SHAKEN end-entity certificate (ATIS-1000080 section 6.4.1)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opensti.core.errors import InvalidInput
from opensti.core.passport import require_p256
from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList

__all__ = ["shaken_csr"]


def shaken_csr(
    key: ec.EllipticCurvePrivateKey,
    tnauthlist: TNAuthList,
    *,
    organization: str,
    country: str = "US",
) -> bytes:
    """A PEM CSR: subject ``C/O/CN=SHAKEN <SPC>``, the TNAuthList and CA:FALSE.

    CA:FALSE must agree with the SPC token's ``"ca": false`` (RFC 9448 section 6).
    """
    require_p256(key)
    spc = tnauthlist.single_spc
    if spc is None:
        raise InvalidInput("an end-entity certificate's TNAuthList must be exactly one SPC")
    if len(country) != 2 or not country.isalpha() or not organization.strip():
        raise InvalidInput(f"subject needs a 2-letter country and an organization: {country!r}")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country.upper()),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"SHAKEN {spc}"),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(TNAUTHLIST_OID), tnauthlist.to_der()),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)
