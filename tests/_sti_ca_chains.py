"""STI-CA chains as real networks send them, built for the tests.

:class:`NullParamPKI`: certificates encoded as T-Mobile's production SHAKEN root and
sub-CA are: an explicit NULL parameter in the ``ecdsa-with-SHA256`` AlgorithmIdentifier
(both the one in the TBS and the outer one), correctly signed by the issuer over that TBS.

The generator works on bytes on purpose, independently of opensti's pyasn1 reader: it
takes a certificate cryptography built, splices ``05 00`` into the two
AlgorithmIdentifiers, fixes the enclosing lengths and signs the new TBS with the
issuer's key. ``cryptography`` >= 45 refuses the result; OpenSSL and secsipidx accept it.

:func:`rsa_ca_pki`: the shape of the older Neustar "Certified Caller ID" chain, an RSA
root and intermediate (sha256WithRSAEncryption) over a P-256 SHAKEN leaf.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from opensti.sandbox.pki import SHAKEN_POLICY_OID, DemoPKI, IssuedCertificate, to_pem

__all__ = ["RSAPKI", "NullParamPKI", "pem_of_der", "rsa_ca_pki", "with_null_parameter"]

#: SEQUENCE { OID ecdsa-with-SHA256 } and the same with a NULL parameter.
STRICT_ALG = bytes.fromhex("300a06082a8648ce3d040302")
NULL_ALG = bytes.fromhex("300c06082a8648ce3d0403020500")


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _content(der: bytes) -> bytes:
    """The body of one DER TLV (the whole input)."""
    first = der[1]
    if first < 0x80:
        return der[2 : 2 + first]
    size = first & 0x7F
    length = int.from_bytes(der[2 : 2 + size], "big")
    return der[2 + size : 2 + size + length]


def with_null_parameter(cert: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey) -> bytes:
    """``cert`` (signed with ecdsa-with-SHA256) re-encoded with the NULL and re-signed."""
    tbs_body = _content(cert.tbs_certificate_bytes)
    assert STRICT_ALG in tbs_body
    tbs = _tlv(0x30, tbs_body.replace(STRICT_ALG, NULL_ALG, 1))
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + NULL_ALG + _tlv(0x03, b"\x00" + signature))


def pem_of_der(der: bytes) -> bytes:
    lines = base64.encodebytes(der).decode().replace("\n", "")
    body = "\n".join(lines[i : i + 64] for i in range(0, len(lines), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode()


@dataclass
class NullParamPKI:
    """A DemoPKI whose root, intermediate and/or leaf are NULL-parameter encoded."""

    pki: DemoPKI
    root: bool = True
    intermediate: bool = True
    leaf: bool = False

    @classmethod
    def create(cls, now: dt.datetime | None = None, **which: bool) -> NullParamPKI:
        return cls(DemoPKI(now or dt.datetime.now(dt.UTC)), **which)

    def _encode(
        self, cert: IssuedCertificate | x509.Certificate, signer: IssuedCertificate, odd: bool
    ) -> bytes:
        certificate = cert.certificate if isinstance(cert, IssuedCertificate) else cert
        if not odd:
            return to_pem([certificate])
        assert signer.key is not None
        return pem_of_der(with_null_parameter(certificate, signer.key))

    @property
    def root_pem(self) -> bytes:
        return self._encode(self.pki.root, self.pki.root, self.root)

    @property
    def intermediate_pem(self) -> bytes:
        return self._encode(self.pki.intermediate, self.pki.root, self.intermediate)

    def issue(
        self, spc: str = "1234", **options: object
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """A key and its chain (leaf, intermediate) as an x5u serves it."""
        key, cert = self.pki.issue(spc, **options)  # type: ignore[arg-type]
        leaf = self._encode(cert, self.pki.intermediate, self.leaf)
        return key, leaf + self.intermediate_pem


def _rsa_ca(
    name: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    now: dt.datetime,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RSA STI-CA test"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    issuer_name, signer = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), True
        )
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(SHAKEN_POLICY_OID), None)]
            ),
            False,
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass
class RSAPKI:
    """An RSA root and intermediate issuing P-256 leaves, like the older Neustar chain."""

    pki: DemoPKI
    root: x509.Certificate
    intermediate: x509.Certificate

    def issue(self, spc: str = "1234") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        return self.pki.issue(spc)

    def chain_pem(self, leaf: x509.Certificate) -> bytes:
        return to_pem([leaf, self.intermediate])


def rsa_ca_pki(now: dt.datetime | None = None, *, bits: int = 2048) -> RSAPKI:
    now = now or dt.datetime.now(dt.UTC)
    root_key = rsa.generate_private_key(65537, bits)
    inter_key = rsa.generate_private_key(65537, bits)
    root = _rsa_ca("RSA STI-CA root", root_key, None, now)
    intermediate = _rsa_ca("RSA STI-CA intermediate", inter_key, (root.subject, root_key), now)
    pki = DemoPKI(now)
    # DemoPKI issues leaves from its intermediate: make that the RSA one.
    pki.intermediate = IssuedCertificate(intermediate, inter_key)  # type: ignore[arg-type]
    return RSAPKI(pki, root, intermediate)
