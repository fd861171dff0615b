"""SHAKEN certificates: loading, the ATIS-1000080 profile, chain validation, CRLs.

Path building and signature checks are cryptography's (``x509.verification``). Its
client verifier follows the Web PKI, which would reject a SHAKEN end-entity cert (no
SAN, a TNAuthList it does not know), so the end-entity extension policy is relaxed to
``permit_all`` and the SHAKEN profile is checked here instead. The clock and the trust
store are always parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from opensti.core.errors import (
    CertificateProfileError,
    CertificateRevoked,
    ChainUntrusted,
    InvalidCertificate,
    InvalidTNAuthList,
    UnsupportedCredential,
)
from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList

__all__ = [
    "SHAKEN_POLICY_ARC",
    "CertificateChain",
    "TrustContext",
    "ValidatedCertificate",
    "check_revocation",
    "check_shaken_ee_profile",
    "load_certificate_chain",
    "load_certificates",
    "load_crl",
    "tnauthlist_of",
    "validate_shaken_certificate",
]

#: SHAKEN Certificate Policy OIDs are 2.16.840.1.114569.1.1.x (current US: .3, .4).
SHAKEN_POLICY_ARC = "2.16.840.1.114569.1.1."
_TNAUTHLIST = x509.ObjectIdentifier(TNAUTHLIST_OID)
_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"
_MAX_CHAIN_BYTES = 256 * 1024
_MAX_CHAIN_DEPTH = 4


@dataclass(frozen=True, slots=True)
class CertificateChain:
    """What an x5u serves: the end-entity cert first, then intermediates (RFC 8555 9.1)."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True, slots=True)
class TrustContext:
    """STI-PA trust anchors (approved STI-CA roots) and the CRLs in force."""

    anchors: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    #: Certificates that may sign a CRL (the STI-PA's), beside the anchors and path.
    crl_signers: tuple[x509.Certificate, ...] = ()
    #: Accepted certificate policy OIDs; None accepts any OID in the SHAKEN arc.
    policy_oids: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ValidatedCertificate:
    """A chain that passed every check, ready to verify PASSporT signatures."""

    leaf: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    spc: str
    path: tuple[x509.Certificate, ...]

    @property
    def not_before(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Parse a PEM bundle (or one DER certificate) in order; raise on anything else."""
    if len(data) > _MAX_CHAIN_BYTES:
        raise InvalidCertificate("certificate data is larger than 256 KiB")
    try:
        if _PEM_MARKER in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise InvalidCertificate(f"not a PEM or DER certificate: {exc}") from None
    if not certs:
        raise InvalidCertificate("no certificate found")
    return certs


def load_certificate_chain(data: bytes) -> CertificateChain:
    certs = load_certificates(data)
    return CertificateChain(leaf=certs[0], intermediates=tuple(certs[1:]))


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise InvalidCertificate(f"not a PEM or DER CRL: {exc}") from None


def tnauthlist_of(cert: x509.Certificate) -> TNAuthList | None:
    try:
        ext = cert.extensions.get_extension_for_oid(_TNAUTHLIST)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    assert isinstance(value, x509.UnrecognizedExtension)
    return TNAuthList.from_der(value.value)


_ExtT = TypeVar("_ExtT", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[_ExtT]) -> x509.Extension[_ExtT] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def check_shaken_ee_profile(
    cert: x509.Certificate, *, policy_oids: frozenset[str] | None = None
) -> str:
    """Check the ATIS-1000080 end-entity profile; return the SPC of its TNAuthList.

    Not enforced: the subject's C/O/CN form, which deployed certificates vary on and
    which does not change what the certificate may sign.
    """
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateProfileError("certificate key is not EC P-256")
    if cert.signature_algorithm_oid not in (
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    ):
        raise CertificateProfileError("certificate is not signed with ECDSA")
    try:
        tnauthlist = tnauthlist_of(cert)
    except (InvalidTNAuthList, ValueError) as exc:
        raise CertificateProfileError(f"TNAuthList extension does not parse: {exc}") from None
    if tnauthlist is None:
        raise CertificateProfileError("certificate has no TNAuthList extension")
    spc = tnauthlist.single_spc
    if spc is None:
        raise CertificateProfileError("TNAuthList of a SHAKEN certificate must be exactly one SPC")
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.value.ca:
        raise CertificateProfileError("end-entity certificate has CA:TRUE")
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or not usage.value.digital_signature:
        raise CertificateProfileError("key usage does not include digitalSignature")
    if _extension(cert, x509.CRLDistributionPoints) is None:
        raise CertificateProfileError("certificate has no CRL distribution point")
    policies = _extension(cert, x509.CertificatePolicies)
    oids = {p.policy_identifier.dotted_string for p in policies.value} if policies else set()
    if not any(_policy_accepted(oid, policy_oids) for oid in oids):
        raise CertificateProfileError("certificate carries no accepted SHAKEN policy OID")
    return spc


def _policy_accepted(oid: str, accepted: frozenset[str] | None) -> bool:
    if accepted is None:
        return oid.startswith(SHAKEN_POLICY_ARC)
    return oid in accepted


def _build_path(
    chain: CertificateChain, anchors: Sequence[x509.Certificate], now: dt.datetime
) -> tuple[x509.Certificate, ...]:
    if not anchors:
        raise ChainUntrusted("no trust anchors are configured")
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(now)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(chain.leaf, list(chain.intermediates))
    except VerificationError as exc:
        raise ChainUntrusted(
            f"certificate does not chain to an STI-PA trust anchor: {exc}"
        ) from None
    return tuple(verified.chain)


def _crl_signer(
    crl: x509.CertificateRevocationList, candidates: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    for cert in candidates:
        if cert.subject != crl.issuer:
            continue
        key = cert.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey) and _crl_signature_valid(crl, key):
            return cert
    return None


def _crl_signature_valid(
    crl: x509.CertificateRevocationList, key: ec.EllipticCurvePublicKey
) -> bool:
    try:
        return crl.is_signature_valid(key)
    except (InvalidSignature, ValueError, TypeError):
        return False


def check_revocation(
    path: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    signers: Sequence[x509.Certificate],
) -> None:
    """Raise :class:`CertificateRevoked` if a non-root cert of ``path`` is on a CRL.

    The SHAKEN CRL is issued by the STI-PA for certs other CAs issued (an indirect
    CRL), so an entry matches on serial number, and on the issuer too when the entry
    names one (certificateIssuer). A CRL whose signature cannot be checked against the
    known signers is refused rather than ignored.
    """
    for crl in crls:
        if _crl_signer(crl, [*signers, *path]) is None:
            raise UnsupportedCredential("the CRL's signature cannot be verified")
        for cert in path[:-1]:
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None and _entry_names_issuer(entry, cert.issuer):
                raise CertificateRevoked(
                    f"certificate serial {cert.serial_number:x} is revoked",
                    value=cert.serial_number,
                )


def _entry_names_issuer(entry: x509.RevokedCertificate, issuer: x509.Name) -> bool:
    try:
        named = entry.extensions.get_extension_for_class(x509.CertificateIssuer).value
    except x509.ExtensionNotFound:
        return True
    return any(isinstance(n, x509.DirectoryName) and n.value == issuer for n in named)


def validate_shaken_certificate(
    chain: CertificateChain, trust: TrustContext, now: dt.datetime
) -> ValidatedCertificate:
    """Everything an STI-VS checks on a credential before trusting its key.

    Raises a subclass of :class:`UnsupportedCredential` (SIP 437) on any failure.
    """
    spc = check_shaken_ee_profile(chain.leaf, policy_oids=trust.policy_oids)
    path = _build_path(chain, trust.anchors, now)
    check_revocation(path, trust.crls, (*trust.crl_signers, *trust.anchors))
    key = chain.leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return ValidatedCertificate(leaf=chain.leaf, public_key=key, spc=spc, path=path)
