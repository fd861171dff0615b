"""The signer's files both interop peers (secsipidx, Kamailio) read: a DemoPKI key and
chain, the roots and CRLs, written once per test module (see conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.sandbox.pki import DemoPKI, private_key_pem, to_pem

__all__ = ["CHAIN_PATH", "Credentials", "make_credentials", "write_file"]

#: Where the x5u repository serves the signer's chain.
CHAIN_PATH = "/sti/chain.pem"


@dataclass(frozen=True)
class Credentials:
    """Files of one signer and its PKI, as the tools read them."""

    key: ec.EllipticCurvePrivateKey
    key_pem: Path
    public_key_pem: Path
    chain_pem: Path
    leaf_pem: Path
    root_pem: Path
    intermediate_pem: Path
    crl_pem: Path
    revoked_crl_pem: Path
    #: The root of another PKI: a verifier trusting only it must refuse the chain.
    stranger_root_pem: Path


def write_file(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def make_credentials(directory: Path, pki: DemoPKI, *, days: float = 7) -> Credentials:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = pki.issue("1234", days=days)
    pem = serialization.Encoding.PEM
    public = key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_pem = write_file(directory, "key.pem", private_key_pem(key))
    key_pem.chmod(0o600)
    return Credentials(
        key=key,
        key_pem=key_pem,
        public_key_pem=write_file(directory, "public.pem", public),
        chain_pem=write_file(directory, "chain.pem", pki.chain_pem(cert)),
        leaf_pem=write_file(directory, "leaf.pem", to_pem([cert])),
        root_pem=write_file(directory, "root.pem", pki.root.pem),
        intermediate_pem=write_file(directory, "intermediate.pem", pki.intermediate.pem),
        crl_pem=write_file(directory, "crl.pem", pki.crl().public_bytes(pem)),
        revoked_crl_pem=write_file(
            directory, "revoked.pem", pki.crl([cert.serial_number]).public_bytes(pem)
        ),
        stranger_root_pem=write_file(directory, "stranger-root.pem", DemoPKI(pki.now).root.pem),
    )
