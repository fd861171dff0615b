"""SHAKEN certificates: loading, the ATIS-1000080 profile, chain validation, CRLs.

Path building and signature checks are cryptography's (``x509.verification``). Its
client verifier follows the Web PKI, which would reject a SHAKEN end-entity cert (no
SAN, a TNAuthList it does not know), so the end-entity extension policy is relaxed to
``permit_all`` and the SHAKEN profile is checked here instead. The clock and the trust
store are always parameters.

A path that holds a certificate read through :mod:`opensti.core.lenient` (the explicit
NULL in ``ecdsa-with-SHA256`` that cryptography refuses to parse) cannot go through
cryptography's verifier, which would check the signature over the re-encoded TBS; such
a path is built here (:func:`_lenient_path`), with the same checks the verifier makes on
a SHAKEN path: validity, CA basicConstraints and path length, keyCertSign, names, and
each signature over the bytes the issuer signed.

Trust bundles are read one certificate at a time (:func:`read_certificates`), so one
unusable anchor is skipped with its reason instead of spoiling the whole list.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
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
from opensti.core.lenient import (
    SignedTBS,
    certificate_shaped,
    relax_certificate,
    subject_of_der,
)
from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList

__all__ = [
    "SHAKEN_POLICY_ARC",
    "CertificateChain",
    "CertificateSet",
    "Signed",
    "SignedTBS",
    "SkippedCertificate",
    "TrustContext",
    "ValidatedCertificate",
    "check_revocation",
    "check_shaken_ee_profile",
    "issued_by",
    "load_certificate_chain",
    "load_certificates",
    "load_crl",
    "read_certificates",
    "read_trust_anchors",
    "tnauthlist_of",
    "validate_shaken_certificate",
]

#: SHAKEN Certificate Policy OIDs are 2.16.840.1.114569.1.1.x (current US: .3, .4).
SHAKEN_POLICY_ARC = "2.16.840.1.114569.1.1."
_TNAUTHLIST = x509.ObjectIdentifier(TNAUTHLIST_OID)
_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
_MAX_CHAIN_BYTES = 256 * 1024
_MAX_CHAIN_DEPTH = 4
_ECDSA_SIGNATURES = (
    SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384,
)
#: Certificates read through the lenient path, mapped to what their issuer signed.
Signed = Mapping[x509.Certificate, SignedTBS]


def _no_signed() -> Signed:
    return {}


@dataclass(frozen=True, slots=True)
class CertificateChain:
    """What an x5u serves: the end-entity cert first, then intermediates (RFC 8555 9.1)."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()
    signed: Signed = field(default_factory=_no_signed, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class TrustContext:
    """STI-PA trust anchors (approved STI-CA roots) and the CRLs in force."""

    anchors: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    #: Certificates that may sign a CRL (the STI-PA's), beside the anchors and path.
    crl_signers: tuple[x509.Certificate, ...] = ()
    #: Accepted certificate policy OIDs; None accepts any OID in the SHAKEN arc.
    policy_oids: frozenset[str] | None = None
    #: Anchors read through the lenient path (see :mod:`opensti.core.lenient`).
    signed: Signed = field(default_factory=_no_signed, compare=False, hash=False)
    #: Accept CA certificates signed with RSA (>= 2048 bits, sha256WithRSAEncryption)
    #: in the path; the leaf key and the PASSporT stay ES256 (see docs/verification.md).
    allow_rsa_ca: bool = True


@dataclass(frozen=True, slots=True)
class SkippedCertificate:
    """A certificate of a bundle that cannot be used, named as far as it can be read."""

    reason: str
    subject: str | None = None
    fingerprint: str | None = None
    source: str = ""

    def describe(self) -> str:
        name = self.subject or "unreadable subject"
        where = f" in {self.source}" if self.source else ""
        sha = f" sha256 {self.fingerprint}" if self.fingerprint else ""
        return f"{name}{sha}{where}: {self.reason}"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "subject": self.subject,
            "sha256": self.fingerprint,
            "source": self.source or None,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CertificateSet:
    """The certificates of a bundle in order, and those skipped with their reasons."""

    certificates: tuple[x509.Certificate, ...] = ()
    signed: Signed = field(default_factory=_no_signed)
    skipped: tuple[SkippedCertificate, ...] = ()

    def __add__(self, other: CertificateSet) -> CertificateSet:
        known = set(self.certificates)
        new = tuple(c for c in other.certificates if c not in known)
        return CertificateSet(
            certificates=self.certificates + new,
            signed={**self.signed, **other.signed},
            skipped=self.skipped + other.skipped,
        )


@dataclass(frozen=True, slots=True)
class ValidatedCertificate:
    """A chain that passed every check, ready to verify PASSporT signatures."""

    leaf: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    spc: str
    path: tuple[x509.Certificate, ...]
    #: The leaf's validity in epoch seconds, read once: every call checks it.
    valid_from: float = field(init=False, repr=False, compare=False)
    valid_until: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "valid_from", self.leaf.not_valid_before_utc.timestamp())
        object.__setattr__(self, "valid_until", self.leaf.not_valid_after_utc.timestamp())

    @property
    def not_before(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    def valid_at(self, now: float) -> bool:
        """Whether the leaf is within its validity period at epoch second ``now``."""
        return self.valid_from <= now <= self.valid_until


def _fingerprint(der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def _der_blocks(data: bytes) -> list[bytes | str]:
    """The DER of each certificate in a PEM bundle (or ``data`` itself when it is not
    PEM); a block that is not base64 is its reason instead."""
    if _PEM_MARKER not in data:
        return [data] if data.strip() else []
    blocks: list[bytes | str] = []
    for match in _PEM_BLOCK.finditer(data):
        try:
            blocks.append(base64.b64decode(b"".join(match.group(1).split()), validate=True))
        except (binascii.Error, ValueError):
            blocks.append("a PEM block that is not base64")
    return blocks


def _read_der(der: bytes, source: str) -> tuple[x509.Certificate, SignedTBS | None]:
    try:
        return x509.load_der_x509_certificate(der), None
    except ValueError as exc:
        relaxed = relax_certificate(der)
        if relaxed is None:
            raise _Skip(
                SkippedCertificate(
                    f"not a PEM or DER certificate: {exc}",
                    subject_of_der(der),
                    _fingerprint(der) if certificate_shaped(der) else None,
                    source,
                )
            ) from None
        return relaxed


class _Skip(Exception):
    def __init__(self, skipped: SkippedCertificate) -> None:
        self.skipped = skipped


def read_certificates(data: bytes, *, source: str = "") -> CertificateSet:
    """Every certificate of a PEM bundle (or one DER certificate), in order; what cannot
    be read is skipped with its reason, not raised. Certificates with the explicit NULL
    in their ECDSA AlgorithmIdentifier are read through :mod:`opensti.core.lenient`."""
    if len(data) > _MAX_CHAIN_BYTES * 64:
        return CertificateSet(skipped=(SkippedCertificate("larger than 16 MiB", source=source),))
    certs: list[x509.Certificate] = []
    signed: dict[x509.Certificate, SignedTBS] = {}
    skipped: list[SkippedCertificate] = []
    for block in _der_blocks(data):
        if isinstance(block, str):
            skipped.append(SkippedCertificate(block, source=source))
            continue
        try:
            cert, original = _read_der(block, source)
        except _Skip as skip:
            skipped.append(skip.skipped)
            continue
        certs.append(cert)
        if original is not None:
            signed[cert] = original
    return CertificateSet(tuple(certs), signed, tuple(skipped))


def _strict(data: bytes) -> CertificateSet:
    if len(data) > _MAX_CHAIN_BYTES:
        raise InvalidCertificate("certificate data is larger than 256 KiB")
    found = read_certificates(data)
    if found.skipped:
        raise InvalidCertificate(found.skipped[0].reason)
    if not found.certificates:
        raise InvalidCertificate("no certificate found")
    return found


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Parse a PEM bundle (or one DER certificate) in order; raise on anything else."""
    return list(_strict(data).certificates)


def load_certificate_chain(data: bytes) -> CertificateChain:
    """An x5u's chain: every certificate must be readable (one bad block refuses it)."""
    found = _strict(data)
    certs = found.certificates
    return CertificateChain(leaf=certs[0], intermediates=certs[1:], signed=found.signed)


def _anchor_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot anchor a SHAKEN path, or None."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"its public key cannot be read: {exc}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            return f"its EC key is on {key.curve.name}, not P-256 or P-384"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return f"its RSA key has {key.key_size} bits, fewer than 2048"
    else:
        return "its key is neither EC nor RSA"
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.value.ca:
        return "it is not a CA certificate (basicConstraints CA:TRUE is missing)"
    return None


def read_trust_anchors(sources: Iterable[tuple[str, bytes]]) -> CertificateSet:
    """The usable trust anchors of ``(name, bytes)`` sources, each checked on its own:
    one unreadable or unusable certificate is skipped with its reason, never fatal."""
    found = CertificateSet()
    for name, data in sources:
        one = read_certificates(data, source=name)
        if not one.certificates and not one.skipped:
            one = CertificateSet(skipped=(SkippedCertificate("no certificate", source=name),))
        found += one
    usable: list[x509.Certificate] = []
    skipped = list(found.skipped)
    for cert in found.certificates:
        problem = _anchor_problem(cert)
        if problem is None and cert not in usable:
            usable.append(cert)
        elif problem is not None:
            skipped.append(
                SkippedCertificate(
                    problem, cert.subject.rfc4514_string(), _fingerprint_of(cert, found.signed)
                )
            )
    signed = {c: s for c, s in found.signed.items() if c in usable}
    return CertificateSet(tuple(usable), signed, tuple(skipped))


def _fingerprint_of(cert: x509.Certificate, signed: Signed) -> str:
    """SHA-256 of the certificate as it came (a leniently read one's own bytes)."""
    original = signed.get(cert)
    return _fingerprint(original.der) if original else cert.fingerprint(hashes.SHA256()).hex()


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
    cert: x509.Certificate,
    *,
    policy_oids: frozenset[str] | None = None,
    allow_rsa_ca: bool = False,
) -> str:
    """Check the ATIS-1000080 end-entity profile; return the SPC of its TNAuthList.

    Not enforced: the subject's C/O/CN form, which deployed certificates vary on and
    which does not change what the certificate may sign. ``allow_rsa_ca`` accepts a
    leaf its CA signed with sha256WithRSAEncryption (the leaf's own key stays P-256).
    """
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateProfileError("certificate key is not EC P-256")
    algorithm = cert.signature_algorithm_oid
    if algorithm == SignatureAlgorithmOID.RSA_WITH_SHA256 and not allow_rsa_ca:
        raise CertificateProfileError(
            "certificate is signed with RSA by its CA, which the RSA CA policy refuses"
        )
    if algorithm not in (*_ECDSA_SIGNATURES, SignatureAlgorithmOID.RSA_WITH_SHA256):
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


def issued_by(child: x509.Certificate, issuer: x509.Certificate, signed: Signed) -> str | None:
    """Why ``issuer``'s key did not sign ``child`` (None when it did), over the TBS bytes
    as they came: a leniently read certificate's original ones (see ``signed``)."""
    original = signed.get(child)
    tbs = original.tbs if original else child.tbs_certificate_bytes
    signature = original.signature if original else child.signature
    algorithm = child.signature_algorithm_oid
    key = issuer.public_key()
    hash_algorithm = child.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm in _ECDSA_SIGNATURES:
            assert hash_algorithm is not None
            key.verify(signature, tbs, ec.ECDSA(hash_algorithm))
        elif (
            isinstance(key, rsa.RSAPublicKey) and algorithm == SignatureAlgorithmOID.RSA_WITH_SHA256
        ):
            key.verify(signature, tbs, padding.PKCS1v15(), hashes.SHA256())
        else:
            oid = algorithm.dotted_string
            return f"{_name(child)} is signed with an unsupported algorithm ({oid})"
    except InvalidSignature:
        return f"the signature of {_name(child)} does not verify with the key of {_name(issuer)}"
    return None


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "an empty subject"


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"{_name(cert)} is not valid yet"
    if now > cert.not_valid_after_utc:
        return f"{_name(cert)} has expired"
    return None


def _ca_problem(issuer: x509.Certificate, below: int, now: dt.datetime) -> str | None:
    """What stops ``issuer`` from signing a path with ``below`` CAs under it."""
    constraints = _extension(issuer, x509.BasicConstraints)
    if constraints is None or not constraints.value.ca:
        return f"{_name(issuer)} is not a CA"
    limit = constraints.value.path_length
    if limit is not None and below > limit:
        return f"{_name(issuer)} allows {limit} CAs below it, the path has {below}"
    usage = _extension(issuer, x509.KeyUsage)
    if usage is not None and not usage.value.key_cert_sign:
        return f"{_name(issuer)} key usage lacks keyCertSign"
    for ext in issuer.extensions:
        # As cryptography's CA policy: a critical extension we do not act on refuses
        # the CA (name constraints included: no SHAKEN CA uses them).
        unknown = isinstance(ext.value, x509.UnrecognizedExtension | x509.NameConstraints)
        if ext.critical and unknown:
            return f"{_name(issuer)} has a critical extension {ext.oid.dotted_string}"
    return _valid_at(issuer, now)


def _uses_lenient(chain: CertificateChain, trust: TrustContext) -> bool:
    """Does a path for ``chain`` hold a certificate cryptography could not check?"""
    if chain.signed:
        return True
    issuers = {cert.issuer for cert in (chain.leaf, *chain.intermediates)}
    return any(anchor.subject in issuers for anchor in trust.signed)


def _lenient_path(
    chain: CertificateChain, trust: TrustContext, now: dt.datetime
) -> tuple[x509.Certificate, ...]:
    """The path cryptography's verifier would build, built by hand for a chain or an
    anchor read leniently: the same checks, each signature over the original TBS."""
    signed: Signed = {**trust.signed, **chain.signed}
    problems: list[str] = []

    def link(path: tuple[x509.Certificate, ...], issuer: x509.Certificate) -> bool:
        below = len(path) - 1
        problem = _ca_problem(issuer, below, now) or issued_by(path[-1], issuer, signed)
        if problem is not None:
            problems.append(problem)
        return problem is None

    def grow(path: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...] | None:
        issuer_name = path[-1].issuer
        for anchor in trust.anchors:
            if anchor.subject == issuer_name and link(path, anchor):
                return (*path, anchor)
        if len(path) > _MAX_CHAIN_DEPTH:
            problems.append("the path is longer than allowed")
            return None
        for ca in chain.intermediates:
            if ca not in path and ca.subject == issuer_name and link(path, ca):
                found = grow((*path, ca))
                if found is not None:
                    return found
        return None

    expired = _valid_at(chain.leaf, now)
    found = None if expired else grow((chain.leaf,))
    if found is None:
        reason = expired or (problems[-1] if problems else "no issuer among the anchors")
        raise ChainUntrusted(f"certificate does not chain to an STI-PA trust anchor: {reason}")
    return found


def _check_rsa(path: Sequence[x509.Certificate], allow: bool) -> None:
    """RSA signatures in the path: only if allowed, sha256WithRSAEncryption, >= 2048 bits."""
    for cert, issuer in itertools.pairwise(path):
        key = issuer.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            continue
        if not allow:
            raise ChainUntrusted(f"{_name(issuer)} signs with RSA, which the RSA CA policy refuses")
        if (
            key.key_size < 2048
            or cert.signature_algorithm_oid != SignatureAlgorithmOID.RSA_WITH_SHA256
        ):
            raise ChainUntrusted(
                f"{_name(cert)} is signed with RSA other than sha256WithRSAEncryption "
                "with a key of at least 2048 bits"
            )


def _build_path(
    chain: CertificateChain, trust: TrustContext, now: dt.datetime
) -> tuple[x509.Certificate, ...]:
    if not trust.anchors:
        raise ChainUntrusted("no trust anchors are configured")
    if _uses_lenient(chain, trust):
        path = _lenient_path(chain, trust, now)
    else:
        path = _verified_path(chain, trust.anchors, now)
    _check_rsa(path, trust.allow_rsa_ca)
    return path


def _verified_path(
    chain: CertificateChain, anchors: Sequence[x509.Certificate], now: dt.datetime
) -> tuple[x509.Certificate, ...]:
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
    spc = check_shaken_ee_profile(
        chain.leaf, policy_oids=trust.policy_oids, allow_rsa_ca=trust.allow_rsa_ca
    )
    path = _build_path(chain, trust, now)
    check_revocation(path, trust.crls, (*trust.crl_signers, *trust.anchors))
    key = chain.leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return ValidatedCertificate(leaf=chain.leaf, public_key=key, spc=spc, path=path)
