"""``opensti passport sign|verify|decode``: the core's STI-AS and STI-VS on the command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer

from opensti.cli._app import app, err_console, group, print_json, read_input_file
from opensti.cli._context import settings_of
from opensti.cli._div_rcd import RCDOptions, fetch_resource, sign_extended
from opensti.core.bounds import check_origid, check_signing_iat, check_x5u
from opensti.core.call import verify_call
from opensti.core.certs import (
    CertificateChain,
    CertificateSet,
    TrustContext,
    ValidatedCertificate,
    load_certificate_chain,
    load_certificates,
    load_crl,
    validate_shaken_certificate,
)
from opensti.core.errors import BadIdentityInfo, ChainUntrusted, InvalidInput, PassportError
from opensti.core.identity import format_identity, parse_identity
from opensti.core.passport import (
    ATTESTATION_LEVELS,
    ShakenClaims,
    decode_passport,
    load_private_key,
    sign_passport,
)
from opensti.core.tn import canonicalize_tn
from opensti.core.verify import DEFAULT_MAX_AGE
from opensti.verification import fetch_policy, no_usable_anchor, read_anchor_path
from opensti.verification.fetch import FetchPolicy, X5UFetcher

passport_app = group(help="Sign, verify and decode SHAKEN PASSporTs (Identity headers).")
app.add_typer(passport_app, name="passport")


@passport_app.command("sign")
def sign(
    key: Annotated[Path, typer.Option(help="EC P-256 private key (PEM) of the certificate.")],
    x5u: Annotated[str, typer.Option(help="HTTPS URL of the certificate chain.")],
    orig: Annotated[str, typer.Option(help="Calling number (TN or tel/sip URI).")],
    dest: Annotated[list[str], typer.Option(help="Called number; repeat for several.")],
    attest: Annotated[
        str | None, typer.Option(help="Attestation level: A, B or C (ppt shaken).")
    ] = None,
    origid: Annotated[
        str | None, typer.Option(help="Origination id (default: a new UUID).")
    ] = None,
    iat: Annotated[
        int | None, typer.Option(help="Issued-at, epoch seconds (default: now).")
    ] = None,
    compact: Annotated[bool, typer.Option(help="Compact form (RFC 8225 section 7).")] = False,
    ppt: Annotated[str, typer.Option(help="PASSporT type: shaken, div or rcd.")] = "shaken",
    div: Annotated[
        str | None, typer.Option(help="ppt div: the number the call was diverted from.")
    ] = None,
    rcd_name: Annotated[str | None, typer.Option(help="Rich Call Data: display name.")] = None,
    rcd_icon: Annotated[
        str | None, typer.Option(help="Rich Call Data: logo URL (fetched for its rcdi).")
    ] = None,
    rcd_reason: Annotated[str | None, typer.Option(help="Rich Call Data: call reason.")] = None,
    allow_http_icon: Annotated[bool, typer.Option(help="Fetch an http:// logo.")] = False,
    allow_private_icon: Annotated[
        bool, typer.Option(help="Fetch the logo from loopback/private addresses.")
    ] = False,
    allow_http_x5u: Annotated[
        bool,
        typer.Option(
            "--allow-http-x5u", help="Accept an http:// x5u (unsafe; for verifier tests)."
        ),
    ] = False,
) -> None:
    """Print the Identity header value (without the ``Identity:`` name) for one call."""
    if ppt == "shaken" and attest not in ATTESTATION_LEVELS:
        raise InvalidInput(f"--attest must be A, B or C, not {attest!r}")
    if ppt != "shaken" and attest is not None:
        raise InvalidInput(f"--attest is a SHAKEN claim; a {ppt!r} PASSporT has none")
    private_key = load_private_key(read_input_file(key, "key file"))
    check_x5u(x5u, allow_http=allow_http_x5u)
    orig_tn, dest_tns = canonicalize_tn(orig), tuple(canonicalize_tn(tn) for tn in dest)
    now = int(time.time())
    when = now if iat is None else check_signing_iat(iat, now)
    claims = (
        ShakenClaims(orig_tn, dest_tns, when, attest, check_origid(origid) or str(uuid.uuid4()))
        if attest is not None
        else None
    )
    rcd = RCDOptions(rcd_name, rcd_icon, rcd_reason)
    if claims is not None and ppt == "shaken" and div is None and not rcd.given:
        token = sign_passport(claims, key=private_key, x5u=x5u, compact=compact)
        print(format_identity(token, x5u))
        return
    if compact:
        raise InvalidInput("--compact cannot carry div or rcd claims (RFC 8224 section 5.2)")
    policy = FetchPolicy(allow_http=allow_http_icon, allow_private=allow_private_icon)
    token = sign_extended(
        ppt=ppt,
        key=private_key,
        x5u=x5u,
        shaken=claims,
        orig=orig_tn,
        dest=dest_tns,
        iat=when,
        div=div,
        rcd=rcd,
        policy=policy,
    )
    print(format_identity(token, x5u, ppt=ppt))


def _load_anchors(path: Path) -> CertificateSet:
    """Every usable anchor; one warning line per skipped one, one error line if none is
    left (the verification then fails with 437: bundle content is never a usage error)."""
    if not path.exists():
        raise InvalidInput(f"--trust-anchors: {str(path)!r} does not exist")
    found = read_anchor_path(path)
    for skipped in found.skipped:
        warning = f"warning: trust anchor skipped: {skipped.describe()}"
        err_console.print(warning, markup=False, highlight=False, soft_wrap=True)
    if not found.certificates:
        error = no_usable_anchor(found, str(path)).message
        err_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
    return found


def _anchor_report(found: CertificateSet) -> dict[str, object]:
    return {
        "loaded": len(found.certificates),
        "skipped": [skipped.to_dict() for skipped in found.skipped],
    }


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
    ctx: typer.Context,
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
    allow_http_x5u: Annotated[
        bool | None,
        typer.Option(help="Accept and fetch http:// x5u (default: setting x5u_allow_http)."),
    ] = None,
    allow_private_x5u: Annotated[
        bool, typer.Option(help="Allow fetching x5u from loopback/private addresses.")
    ] = False,
    x5u_private_host: Annotated[
        list[str] | None,
        typer.Option(help="Host pattern or CIDR an x5u may resolve privately; repeatable."),
    ] = None,
    x5u_deny_host: Annotated[
        list[str] | None, typer.Option(help="Host pattern never fetched; repeatable.")
    ] = None,
    rsa_ca: Annotated[
        bool | None,
        typer.Option(help="Accept RSA-signed CA certificates (default: setting verify_rsa_ca)."),
    ] = None,
) -> int:
    """Verify Identity header(s); print the result as JSON. Exit 0 if TN-Validation-Passed.

    The x5u and RSA CA policies come from the settings (x5u_allow_http,
    x5u_private_hosts, x5u_deny_hosts, verify_rsa_ca), which these flags override or
    extend. Unusable trust anchors are skipped with a warning and counted in the JSON.
    """
    for value in identity:
        _require_parsable(value)
    settings = settings_of(ctx)
    when = int(time.time()) if now is None else now
    anchors = _load_anchors(trust_anchors)
    trust = TrustContext(
        anchors=anchors.certificates,
        signed=anchors.signed,
        crls=(load_crl(read_input_file(crl, "CRL file")),) if crl else (),
        crl_signers=tuple(load_certificates(read_input_file(crl_signer, "CRL signer")))
        if crl_signer
        else (),
        allow_rsa_ca=settings.verify_rsa_ca if rsa_ca is None else rsa_ca,
    )
    local_chain = (
        load_certificate_chain(read_input_file(cert_file, "cert file")) if cert_file else None
    )
    policy = fetch_policy(
        settings,
        allow_private=allow_private_x5u,
        private_hosts=(*settings.x5u_private_hosts, *(x5u_private_host or ())),
        deny_hosts=(*settings.x5u_deny_hosts, *(x5u_deny_host or ())),
        **({} if allow_http_x5u is None else {"allow_http": allow_http_x5u}),
    )

    def resolve(url: str) -> ValidatedCertificate:
        if not trust.anchors:
            raise ChainUntrusted(no_usable_anchor(anchors, str(trust_anchors)).message)
        chain = local_chain or _fetch_chain(url, policy)
        return validate_shaken_certificate(chain, trust, dt.datetime.fromtimestamp(when, dt.UTC))

    # A div PASSporT per diversion and the rcd claims are verified too (verify_call);
    # a logo is fetched under the x5u rules.
    result = verify_call(
        identity,
        orig_tn=canonicalize_tn(orig) if orig else None,
        dest_tns=[canonicalize_tn(tn) for tn in dest] if dest else None,
        now=when,
        resolve=resolve,
        fetch=lambda url: fetch_resource(url, policy),
        max_age=max_age,
        # A --cert-file chain is never fetched, so the x5u scheme does not matter.
        allow_http_x5u=policy.allow_http or local_chain is not None,
    )
    print_json({**result.to_dict(), "trust_anchors": _anchor_report(anchors)})
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
