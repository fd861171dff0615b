"""Issuing SHAKEN certificates and CRLs: what the sandbox STI-CA and STI-PA sign with.

Everything is in the ATIS-1000080 profile (P-256, TNAuthList, CRL distribution point,
SHAKEN policy OID, critical key usage and basic constraints), so what the sandbox
issues passes the same checks a real certificate must.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList

__all__ = [
    "SHAKEN_POLICY_OID",
    "DemoPKI",
    "IssuedCertificate",
    "issue_ca",
    "issue_crl",
    "issue_shaken_certificate",
    "issue_stipa_certificate",
    "new_key",
    "private_key_pem",
    "to_pem",
]

#: US SHAKEN Certificate Policy v1.4.
SHAKEN_POLICY_OID = "2.16.840.1.114569.1.1.4"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _serial() -> int:
    # ATIS-1000080 v005: positive, at least 64 bits from a CSPRNG.
    return secrets.randbits(127) | (1 << 126)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None

    @property
    def pem(self) -> bytes:
        return to_pem([self.certificate])


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _crl_distribution_point(crl_url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def _policies(oid: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(oid), None)])


def issue_ca(
    common_name: str,
    *,
    organization: str,
    now: dt.datetime,
    days: int = 3650,
    issuer: IssuedCertificate | None = None,
    crl_url: str | None = None,
) -> IssuedCertificate:
    """A root (no ``issuer``) or an intermediate CA in the SHAKEN profile."""
    key = new_key()
    subject = _name(common_name, organization)
    signer_key = issuer.key if issuer else key
    assert signer_key is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), True
        )
        .add_extension(_key_usage(cert_sign=True), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False
        ).add_extension(_policies(SHAKEN_POLICY_OID), False)
        if crl_url:
            builder = builder.add_extension(_crl_distribution_point(crl_url), False)
    return IssuedCertificate(builder.sign(signer_key, hashes.SHA256()), key)


def issue_shaken_certificate(
    spc: str,
    *,
    public_key: ec.EllipticCurvePublicKey,
    issuer: IssuedCertificate,
    crl_url: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    organization: str = "opensti sandbox SP",
    tnauthlist: TNAuthList | None = None,
    policy_oid: str = SHAKEN_POLICY_OID,
    subject: x509.Name | None = None,
    with_tnauthlist: bool = True,
) -> x509.Certificate:
    """An STI end-entity certificate (ATIS-1000080 section 6.4.1) for one SPC; the
    subject is ``subject`` (a CSR's) or C/O/CN=SHAKEN <SPC>. ``with_tnauthlist=False``
    leaves out the TNAuthList, as a general-purpose ACME CA would."""
    assert issuer.key is not None
    value = (tnauthlist or TNAuthList.for_spc(spc)).to_der()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or _name(f"SHAKEN {spc}", organization))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage(digital_signature=True), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        .add_extension(_crl_distribution_point(crl_url), False)
        .add_extension(_policies(policy_oid), False)
    )
    if with_tnauthlist:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(TNAUTHLIST_OID), value), False
        )
    return builder.sign(issuer.key, hashes.SHA256())


def issue_stipa_certificate(
    *, now: dt.datetime, days: int = 3650, organization: str = "opensti sandbox STI-PA"
) -> IssuedCertificate:
    """The STI-PA's own self-signed certificate: it signs SPC tokens and the CRL."""
    key = new_key()
    subject = _name("SHAKEN STI-PA", organization)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(cert, key)


def issue_crl(
    signer: IssuedCertificate,
    *,
    revoked: Iterable[tuple[int, dt.datetime]] = (),
    now: dt.datetime,
    next_update: dt.timedelta = dt.timedelta(days=1),
) -> x509.CertificateRevocationList:
    """The STI-PA's CRL: one list for the certificates of every STI-CA it approves."""
    assert signer.key is not None
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.certificate.subject)
        .last_update(now)
        .next_update(now + next_update)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(signer.key, hashes.SHA256())


@dataclass
class DemoPKI:
    """A complete, self-consistent SHAKEN PKI in memory: STI-PA, CA root and
    intermediate, and end-entity certs on demand. For the demo and for tests."""

    now: dt.datetime
    crl_url: str = "https://sti-pa.sandbox.invalid/download/v1/crl"
    stipa: IssuedCertificate = field(init=False)
    root: IssuedCertificate = field(init=False)
    intermediate: IssuedCertificate = field(init=False)

    def __post_init__(self) -> None:
        self.stipa = issue_stipa_certificate(now=self.now)
        self.root = issue_ca("SHAKEN ROOT sandbox", organization="opensti sandbox CA", now=self.now)
        self.intermediate = issue_ca(
            "SHAKEN intermediate sandbox",
            organization="opensti sandbox CA",
            now=self.now,
            days=1825,
            issuer=self.root,
            crl_url=self.crl_url,
        )

    def issue(
        self,
        spc: str,
        *,
        days: float = 7,
        key: ec.EllipticCurvePrivateKey | None = None,
        **options: object,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A new key and its end-entity cert for ``spc`` (options pass through)."""
        key = key or new_key()
        cert = issue_shaken_certificate(
            spc,
            public_key=key.public_key(),
            issuer=self.intermediate,
            crl_url=self.crl_url,
            not_before=self.now - dt.timedelta(minutes=5),
            not_after=self.now + dt.timedelta(days=days),
            **options,  # type: ignore[arg-type]
        )
        return key, cert

    def chain_pem(self, leaf: x509.Certificate) -> bytes:
        return to_pem([leaf, self.intermediate.certificate])

    def crl(self, revoked: Iterable[int] = ()) -> x509.CertificateRevocationList:
        return issue_crl(self.stipa, revoked=[(s, self.now) for s in revoked], now=self.now)
