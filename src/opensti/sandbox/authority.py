"""The sandbox's persistent PKI and URLs: one STI-PA certificate (signs SPC tokens and
the CRL) and one STI-CA root + intermediate (the root is the STI-PA trust list).

Keys are created on the first start and kept in the database, so certificates issued
before a restart still chain to the same root. The intermediate's CRL distribution
point is the CRL URL of the first start; end-entity certificates always carry the
current one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from opensti.sandbox.pki import (
    IssuedCertificate,
    issue_ca,
    issue_crl,
    issue_stipa_certificate,
    private_key_pem,
)
from opensti.sandbox.store import Certificate, PKIEntry, SandboxStore

__all__ = ["SandboxPKI", "SandboxURLs"]


@dataclass(frozen=True, slots=True)
class SandboxURLs:
    """Every public URL of one sandbox, derived from its base URL."""

    base: str

    def acme(self, path: str) -> str:
        return f"{self.base}/acme/{path}"

    @property
    def directory(self) -> str:
        return self.acme("directory")

    @property
    def stipa(self) -> str:
        return self.base

    @property
    def crl(self) -> str:
        return f"{self.base}/download/v1/crl"

    @property
    def ca_list(self) -> str:
        return f"{self.base}/api/v1/ca-list"

    def stipa_certificate(self, certificate_id: str) -> str:
        return f"{self.base}/download/v1/certificate/{certificate_id}.crt"


def _load(entry: PKIEntry) -> IssuedCertificate:
    key = serialization.load_pem_private_key(entry.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return IssuedCertificate(x509.load_pem_x509_certificate(entry.cert_pem), key)


def _entry(name: str, issued: IssuedCertificate) -> PKIEntry:
    assert issued.key is not None
    return PKIEntry(name=name, cert_pem=issued.pem, key_pem=private_key_pem(issued.key))


class SandboxPKI:
    """STI-PA certificate, CA root and intermediate, loaded or created once."""

    def __init__(self, store: SandboxStore, urls: SandboxURLs, now: dt.datetime) -> None:
        self._store = store
        self._urls = urls
        entries = store.pki_entries()
        if {"stipa", "root", "intermediate"} <= entries.keys():
            self.stipa = _load(entries["stipa"])
            self.root = _load(entries["root"])
            self.intermediate = _load(entries["intermediate"])
            return
        self.stipa = issue_stipa_certificate(now=now)
        self.root = issue_ca("SHAKEN ROOT sandbox", organization="opensti sandbox CA", now=now)
        self.intermediate = issue_ca(
            "SHAKEN intermediate sandbox",
            organization="opensti sandbox CA",
            now=now,
            days=1825,
            issuer=self.root,
            crl_url=urls.crl,
        )
        with store.session() as session:
            for name in ("stipa", "root", "intermediate"):
                session.merge(_entry(name, getattr(self, name)))

    @property
    def stipa_certificate_id(self) -> str:
        """The file name under /download/v1/certificate/, like iconectiv's certificateId_N."""
        return f"certificateId_{self.stipa.certificate.serial_number % 10**8:08d}"

    @property
    def stipa_certificate_url(self) -> str:
        return self._urls.stipa_certificate(self.stipa_certificate_id)

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        return (self.root.certificate,)

    def crl(self, now: dt.datetime) -> x509.CertificateRevocationList:
        """The STI-PA CRL with every certificate the sandbox CA has revoked."""
        with self._store.session() as session:
            revoked = [
                (int(cert.serial, 16), cert.revoked_at)
                for cert in session.scalars(
                    select(Certificate).where(Certificate.revoked_at.is_not(None))
                )
                if cert.revoked_at is not None
            ]
        return issue_crl(self.stipa, revoked=revoked, now=now)
