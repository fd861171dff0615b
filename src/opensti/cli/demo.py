"""``opensti demo``: the whole job on one machine, offline, in under a minute."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from rich.table import Table

from opensti.cli._app import app, console
from opensti.core.certs import (
    TrustContext,
    ValidatedCertificate,
    load_certificate_chain,
    validate_shaken_certificate,
)
from opensti.core.identity import format_identity
from opensti.core.passport import ShakenClaims, sign_passport
from opensti.core.verify import CredentialResolver, verify_identities
from opensti.sandbox.pki import DemoPKI, private_key_pem, to_pem

_DEMO_SPCS = ("123H", "456J")


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _constant(validated: ValidatedCertificate) -> CredentialResolver:
    def resolve(_url: str) -> ValidatedCertificate:
        return validated

    return resolve


@app.command("demo")
def demo(
    out: Annotated[
        Path | None, typer.Option(help="Directory for the demo files (default: a temp dir).")
    ] = None,
) -> int:
    """Issue SHAKEN certificates for two OCNs from a local PKI, sign a call with each
    and verify it, showing every step."""
    directory = out or Path(tempfile.mkdtemp(prefix="opensti-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    with console.status("Creating the sandbox STI-PA and STI-CA (root + intermediate)..."):
        pki = DemoPKI(now)
    anchors = _write(directory / "trust-anchors.pem", pki.root.pem)
    crl = pki.crl()
    trust = TrustContext(
        anchors=(pki.root.certificate,), crls=(crl,), crl_signers=(pki.stipa.certificate,)
    )
    table = Table(title="Calls signed and verified", show_lines=False)
    for column in ("OCN", "certificate", "attest", "orig -> dest", "verstat"):
        table.add_column(column)
    failures = 0
    for index, spc in enumerate(_DEMO_SPCS):
        key, cert = pki.issue(spc)
        chain_file = _write(directory / f"{spc}-chain.pem", pki.chain_pem(cert))
        _write(directory / f"{spc}-key.pem", private_key_pem(key), 0o600)
        console.print(
            f"[green]issued[/] SHAKEN {spc}: serial {cert.serial_number:x}, "
            f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC -> {chain_file}"
        )
        x5u = f"https://sti-cr.sandbox.invalid/{spc}/{cert.serial_number:x}.pem"
        orig, dest = f"1215555{index:04d}", "12155550131"
        iat = int(time.time())
        claims = ShakenClaims(orig, (dest,), iat, "A", str(uuid.uuid4()))
        identity = format_identity(sign_passport(claims, key=key, x5u=x5u), x5u)
        validated = validate_shaken_certificate(
            load_certificate_chain(chain_file.read_bytes()), trust, now
        )
        result = verify_identities(
            [identity],
            orig_tn=orig,
            dest_tns=[dest],
            now=iat,
            resolve=_constant(validated),
        )
        failures += not result.passed
        table.add_row(
            spc, f"SHAKEN {validated.spc}", "A", f"{orig} -> {dest}", result.verstat.value
        )
        console.print(f"Identity: {identity}", soft_wrap=True, highlight=False, markup=False)
    _write(directory / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    _write(directory / "sti-pa.pem", pki.stipa.pem)
    _write(directory / "intermediate.pem", to_pem([pki.intermediate.certificate]))
    console.print(table)
    console.print(
        f"Files (keys, chains, CRL) are in [bold]{directory}[/]; trust anchors: {anchors}"
    )
    return 1 if failures else 0
