"""``opensti passport sign|verify|decode``: the core's STI-AS and STI-VS on the command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509

from opensti.cli._app import app, print_json, read_input_file
from opensti.core.bounds import check_origid, check_signing_iat, check_x5u
from opensti.core.certs import (
    CertificateChain,
    TrustContext,
    ValidatedCertificate,
    load_certificate_chain,
    load_certificates,
    load_crl,
    validate_shaken_certificate,
)
from opensti.core.errors import BadIdentityInfo, InvalidInput, PassportError
from opensti.core.identity import format_identity, parse_identity
from opensti.core.passport import (
    ATTESTATION_LEVELS,
    ShakenClaims,
    decode_passport,
    load_private_key,
    sign_passport,
)
from opensti.core.tn import canonicalize_tn
from opensti.core.verify import DEFAULT_MAX_AGE, verify_identities
from opensti.verification.fetch import FetchPolicy, X5UFetcher

passport_app = typer.Typer(help="Sign, verify and decode SHAKEN PASSporTs (Identity headers).")
app.add_typer(passport_app, name="passport")


@passport_app.command("sign")
def sign(
    key: Annotated[Path, typer.Option(help="EC P-256 private key (PEM) of the certificate.")],
    x5u: Annotated[str, typer.Option(help="HTTPS URL of the certificate chain.")],
    orig: Annotated[str, typer.Option(help="Calling number (TN or tel/sip URI).")],
    dest: Annotated[list[str], typer.Option(help="Called number; repeat for several.")],
    attest: Annotated[str, typer.Option(help="Attestation level: A, B or C.")],
    origid: Annotated[
        str | None, typer.Option(help="Origination id (default: a new UUID).")
    ] = None,
    iat: Annotated[
        int | None, typer.Option(help="Issued-at, epoch seconds (default: now).")
    ] = None,
    compact: Annotated[bool, typer.Option(help="Compact form (RFC 8225 section 7).")] = False,
    allow_http_x5u: Annotated[
        bool,
        typer.Option(
            "--allow-http-x5u", help="Accept an http:// x5u (unsafe; for verifier tests)."
        ),
    ] = False,
) -> None:
    """Print the Identity header value (without the ``Identity:`` name) for one call."""
    if attest not in ATTESTATION_LEVELS:
        raise InvalidInput(f"--attest must be A, B or C, not {attest!r}")
    private_key = load_private_key(read_input_file(key, "key file"))
    check_x5u(x5u, allow_http=allow_http_x5u)
    now = int(time.time())
    claims = ShakenClaims(
        orig=canonicalize_tn(orig),
        dest=tuple(canonicalize_tn(tn) for tn in dest),
        iat=now if iat is None else check_signing_iat(iat, now),
        attest=attest,
        origid=check_origid(origid) or str(uuid.uuid4()),
    )
    token = sign_passport(claims, key=private_key, x5u=x5u, compact=compact)
    print(format_identity(token, x5u))


def _load_anchors(path: Path) -> tuple[x509.Certificate, ...]:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    anchors: list[x509.Certificate] = []
    for file in files:
        anchors.extend(load_certificates(read_input_file(file, "trust anchor file")))
    if not anchors:
        raise InvalidInput(f"no certificates in {str(path)!r}")
    return tuple(anchors)


def _fetch_chain(url: str, policy: FetchPolicy) -> CertificateChain:
    async def run() -> bytes:
        async with X5UFetcher(policy) as fetcher:
            return await fetcher.fetch(url)

    data = asyncio.run(run())
    try:
        return load_certificate_chain(data)
    except InvalidInput as exc:
        raise BadIdentityInfo(f"x5u content is not a certificate chain: {exc}") from None


def _require_parsable(value: str) -> None:
    """A header that is not an Identity header at all is a usage error (exit 2)."""
    try:
        parse_identity(value)
    except PassportError as exc:
        raise InvalidInput(f"--identity: {exc}") from None


@passport_app.command("verify")
def verify(
    identity: Annotated[list[str], typer.Option(help="Identity header value; repeatable.")],
    trust_anchors: Annotated[
        Path, typer.Option(help="PEM file or directory of STI-PA trust anchors (CA roots).")
    ],
    orig: Annotated[str | None, typer.Option(help="Calling number from the signalling.")] = None,
    dest: Annotated[
        list[str] | None, typer.Option(help="Called number from the signalling.")
    ] = None,
    cert_file: Annotated[
        Path | None, typer.Option(help="Use this PEM chain instead of fetching x5u.")
    ] = None,
    crl: Annotated[Path | None, typer.Option(help="STI-PA CRL (PEM or DER).")] = None,
    crl_signer: Annotated[
        Path | None, typer.Option(help="Certificate that signs the CRL (the STI-PA's).")
    ] = None,
    now: Annotated[int | None, typer.Option(help="Verify as of this epoch second.")] = None,
    max_age: Annotated[int, typer.Option(help="Freshness window for iat, seconds.")] = (
        DEFAULT_MAX_AGE
    ),
    allow_http_x5u: Annotated[bool, typer.Option(help="Accept and fetch http:// x5u.")] = False,
    allow_private_x5u: Annotated[
        bool, typer.Option(help="Allow fetching x5u from loopback/private addresses.")
    ] = False,
) -> int:
    """Verify Identity header(s); print the result as JSON. Exit 0 if TN-Validation-Passed."""
    for value in identity:
        _require_parsable(value)
    when = int(time.time()) if now is None else now
    trust = TrustContext(
        anchors=_load_anchors(trust_anchors),
        crls=(load_crl(read_input_file(crl, "CRL file")),) if crl else (),
        crl_signers=tuple(load_certificates(read_input_file(crl_signer, "CRL signer")))
        if crl_signer
        else (),
    )
    local_chain = (
        load_certificate_chain(read_input_file(cert_file, "cert file")) if cert_file else None
    )
    policy = FetchPolicy(allow_http=allow_http_x5u, allow_private=allow_private_x5u)

    def resolve(url: str) -> ValidatedCertificate:
        chain = local_chain or _fetch_chain(url, policy)
        return validate_shaken_certificate(chain, trust, dt.datetime.fromtimestamp(when, dt.UTC))

    result = verify_identities(
        identity,
        orig_tn=canonicalize_tn(orig) if orig else None,
        dest_tns=[canonicalize_tn(tn) for tn in dest] if dest else None,
        now=when,
        resolve=resolve,
        max_age=max_age,
        allow_http_x5u=allow_http_x5u,
    )
    print_json(result.to_dict())
    return 0 if result.passed else 1


@passport_app.command("decode")
def decode(
    header: Annotated[str, typer.Argument(help="Identity header value or bare JWS.")],
) -> None:
    """Print the PASSporT's header and payload as JSON, without verifying anything."""
    value = header.strip()
    if value.lower().startswith("identity:"):
        value = value.split(":", 1)[1].strip()
    try:
        info = parse_identity(value) if ";" in value else None
        passport = decode_passport(info.token if info else value)
    except PassportError as exc:
        raise InvalidInput(str(exc)) from None
    output: dict[str, object] = {"header": passport.header, "payload": passport.payload}
    if info:
        output["info"] = info.info
        output["params"] = {"alg": info.alg, "ppt": info.ppt, **info.extensions}
    print_json(output)
