"""``opensti cert add|set|remove|request|list|show|export``: certificate entries, which
calls each signs, and their certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opensti.cli._app import app, console, print_json, read_input_file
from opensti.cli._context import StepProgress, open_app, read_secret
from opensti.core.errors import InvalidInput
from opensti.lifecycle.acquire import AcquireStep, CertificateInfo, EntryDetail, EntryInfo
from opensti.store import RoutingChange

cert_app = typer.Typer(help="Certificate entries (one per SPC) and their certificates.")
app.add_typer(cert_app, name="cert")

JSONOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NameArgument = Annotated[str, typer.Argument(help="The entry's name.")]
DefaultSignerOption = Annotated[
    bool | None,
    typer.Option(
        "--default-signer/--no-default-signer",
        help="Sign every call no entry's prefix claims (moves the role from another entry).",
    ),
]
PrefixOption = Annotated[
    list[str] | None,
    typer.Option(
        "--prefix",
        help="Sign calls whose calling number (E.164 digits) starts with this; repeatable. "
        "The longest prefix of all entries wins.",
    ),
]
AttestOption = Annotated[
    str | None,
    typer.Option("--attest", help="Attestation (A, B or C) when the caller gives none."),
]
RCDNameOption = Annotated[
    str | None,
    typer.Option(
        "--rcd-name",
        help='Display name its calls assert (RFC 9795 rcd "nam", branded calling); "" removes it.',
    ),
]
RCDIconOption = Annotated[
    str | None,
    typer.Option(
        "--rcd-icon",
        help='Logo URL (https) its calls assert (rcd "icn"); fetched now for its rcdi '
        'digest, so an unusable logo is refused. "" removes it.',
    ),
]
EnableOption = Annotated[
    bool | None,
    typer.Option("--enable/--disable", help="A disabled entry neither renews nor signs."),
]

#: One progress line per step of ``cert request``.
STEP_LABELS: dict[str, str] = {
    AcquireStep.PREPARE: "certificate key made and kept (encrypted) for the order",
    AcquireStep.RESUME_ORDER: "the order placed earlier, resumed at the CA",
    AcquireStep.SPC_TOKEN: "SPC token (from the STI-PA, or the one brought), checked",
    AcquireStep.NEW_ORDER: "ACME newOrder with the TNAuthList identifier",
    AcquireStep.CHALLENGE: "tkauth-01 answered with the SPC token",
    AcquireStep.FINALIZE: "CSR with TNAuthList sent, order finalized",
    AcquireStep.DOWNLOAD: "certificate chain downloaded",
    AcquireStep.VALIDATE: "chain checked against the STI-PA trust list",
    AcquireStep.STORE: "chain stored",
    AcquireStep.PUBLISH: "chain published on the STI-CR",
    AcquireStep.DEPLOY: "deployment tasks run",
    AcquireStep.ACTIVATE: "certificate made active",
}


def _when(cert: CertificateInfo | None) -> str:
    if cert is None or cert.not_after is None:
        return "-"
    return f"{cert.not_after:%Y-%m-%d %H:%M} UTC"


def _routing(
    default_signer: bool | None,
    prefixes: list[str] | None,
    attest: str | None,
    enabled: bool | None,
    clear_prefixes: bool = False,
    rcd: tuple[str | None, str | None] = (None, None),
) -> RoutingChange:
    return RoutingChange(
        default_signer=default_signer,
        add_prefixes=tuple(prefixes or ()),
        clear_prefixes=clear_prefixes,
        attest=None if attest is None else attest.strip().upper(),
        enabled=enabled,
        rcd_name=rcd[0],
        rcd_icon=rcd[1],
    )


def _print_notes(notes: tuple[str, ...]) -> None:
    for note in notes:
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)


def _show_changed(entry: EntryInfo, json_output: bool) -> None:
    if json_output:
        print_json(entry.to_dict())
        return
    _print_entry(entry)
    _print_notes(entry.notes)


def _print_entry(entry: EntryInfo) -> None:
    source = "token brought" if entry.has_token else f"STI-PA {entry.stipa_account_id}"
    active = entry.active
    rows = (
        ("entry", entry.name),
        ("SPC", entry.spc),
        ("ACME account", f"{entry.acme_account} at {entry.ca}"),
        ("SPC token", source),
        ("CRL URL", entry.crl_url or "-"),
        ("active certificate", f"#{active.id}, serial {active.serial}" if active else "none"),
        ("expires", _when(active)),
        ("x5u", (active and active.x5u) or "-"),
        ("enabled", "yes" if entry.enabled else "no (neither renews nor signs)"),
        ("signs", entry.signs),
        ("attestation", f"{entry.attest} when the caller gives none"),
        ("rcd name", entry.rcd_name or "-"),
        ("rcd icon", _icon(entry)),
    )
    for label, value in rows:
        console.print(f"{label + ':':<20}{value}", highlight=False, markup=False, soft_wrap=True)


def _icon(entry: EntryInfo) -> str:
    if entry.rcd_icon is None:
        return "-"
    return f"{entry.rcd_icon} (rcdi {entry.rcd_icon_digest})"


@cert_app.command("add")
def cert_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="A name for the entry.")],
    spc: Annotated[str, typer.Option(help="The SPC (OCN) the certificate is for.")],
    account: Annotated[str, typer.Option(help="The ACME account (see: opensti account list).")],
    stipa: Annotated[
        str | None, typer.Option(help="STI-PA account id that issues the SPC tokens.")
    ] = None,
    crl_url: Annotated[str | None, typer.Option(help="The STI-PA CRL URL.")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="An SPC token fetched elsewhere (JSON answer or JWT).")
    ] = None,
    token: Annotated[str | None, typer.Option(help="An SPC token (JWT), with --crl-url.")] = None,
    default_signer: DefaultSignerOption = None,
    prefix: PrefixOption = None,
    attest: AttestOption = None,
    rcd_name: RCDNameOption = None,
    rcd_icon: RCDIconOption = None,
    enable: EnableOption = None,
    json_output: JSONOption = False,
) -> None:
    """Add a certificate entry: one SPC, one ACME account, and where its SPC token comes from.

    Which calls it signs: --prefix and --default-signer. With neither, the first entry
    to get a certificate while no entry is the default signer becomes the default.
    """
    data = None if token_file is None else read_input_file(token_file, "token file")
    with open_app(ctx) as application:
        entry = application.certificates.add_entry(
            name=name,
            spc=spc,
            acme_account=account,
            stipa_account_id=stipa,
            crl_url=crl_url,
            token_file=data,
            token=token,
            routing=_routing(default_signer, prefix, attest, enable, rcd=(rcd_name, rcd_icon)),
        )
    _show_changed(entry, json_output)


@cert_app.command("set")
def cert_set(
    ctx: typer.Context,
    name: NameArgument,
    default_signer: DefaultSignerOption = None,
    prefix: PrefixOption = None,
    clear_prefixes: Annotated[
        bool, typer.Option("--clear-prefixes", help="Drop the entry's prefixes (before --prefix).")
    ] = False,
    attest: AttestOption = None,
    rcd_name: RCDNameOption = None,
    rcd_icon: RCDIconOption = None,
    enable: EnableOption = None,
    json_output: JSONOption = False,
) -> None:
    """Change which calls an entry signs, its attestation, the name and logo its calls
    assert (branded calling), or enable/disable it."""
    change = _routing(default_signer, prefix, attest, enable, clear_prefixes, (rcd_name, rcd_icon))
    if change == RoutingChange():
        raise InvalidInput(
            "nothing to change: give --default-signer, --no-default-signer, --prefix, "
            "--clear-prefixes, --attest, --rcd-name, --rcd-icon, --enable or --disable"
        )
    with open_app(ctx) as application:
        entry = application.certificates.change_entry(name, change)
    _show_changed(entry, json_output)


@cert_app.command("remove")
def cert_remove(
    ctx: typer.Context,
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Also revoke its certificates at the CA.")
    ] = False,
    json_output: JSONOption = False,
) -> None:
    """Remove an entry; its published chains stay on the STI-CR until they expire
    (calls signed before still verify), unless --revoke."""
    if not yes:
        fate = "revoked at the CA" if revoke else "kept on the STI-CR until they expire"
        typer.confirm(f"Remove entry {name!r}? Its certificates are {fate}.", abort=True)
    with open_app(ctx) as application:
        removed = application.certificates.remove_entry(name, revoke=revoke)
    if json_output:
        print_json(removed.to_dict())
        return
    revoked = f", {len(removed.revoked)} certificate(s) revoked" if removed.revoked else ""
    console.print(
        f"removed entry {name!r}{revoked}; {removed.still_published} chain(s) stay "
        "published until they expire",
        highlight=False,
        markup=False,
    )


@cert_app.command("request")
def cert_request(ctx: typer.Context, name: NameArgument, json_output: JSONOption = False) -> None:
    """Get a certificate for the entry now: the whole flow, one line per step."""
    with open_app(ctx) as application, StepProgress(STEP_LABELS) as progress:
        result = application.certificates.request_certificate(name, progress=progress)
    if json_output:
        print_json(result.to_dict())
        return
    cert = result.certificate
    console.print(
        f"certificate #{cert.id} for SPC {result.spc}: serial {cert.serial}, "
        f"valid until {_when(cert)}\nx5u: {cert.x5u or '- (set OPENSTI_PUBLIC_BASE_URL)'}",
        highlight=False,
        markup=False,
    )
    _print_notes(result.notes)


@cert_app.command("list")
def cert_list(ctx: typer.Context, json_output: JSONOption = False) -> None:
    """Every entry with its active certificate."""
    with open_app(ctx) as application:
        entries = application.certificates.list_entries()
    if json_output:
        print_json([entry.to_dict() for entry in entries])
        return
    table = Table("entry", "SPC", "account", "active", "expires", "signs", "attest", "x5u")
    for entry in entries:
        active = entry.active
        table.add_row(
            entry.name,
            entry.spc,
            entry.acme_account,
            f"#{active.id}" if active else "none",
            _when(active),
            _routing_cell(entry),
            entry.attest,
            (active and active.x5u) or "-",
        )
    console.print(table)


def _routing_cell(entry: EntryInfo) -> str:
    """Short: "default", the prefixes, or "disabled"."""
    if not entry.enabled:
        return "disabled"
    parts = (["default"] if entry.default_signer else []) + [f"{p}*" for p in entry.prefixes]
    return ", ".join(parts) or "nothing"


def _print_detail(detail: EntryDetail) -> None:
    _print_entry(detail.entry)
    if detail.certificates:
        table = Table("certificate", "state", "serial", "expires", title="certificates")
        for cert in detail.certificates:
            table.add_row(f"#{cert.id}", cert.state, cert.serial, _when(cert))
        console.print(table)
    if detail.events:
        table = Table("at", "step", "outcome", "error", title="recent events")
        for event in detail.events:
            table.add_row(f"{event.at:%Y-%m-%d %H:%M:%S}", event.step, event.outcome, event.error)
        console.print(table)


@cert_app.command("show")
def cert_show(ctx: typer.Context, name: NameArgument, json_output: JSONOption = False) -> None:
    """An entry, its certificates and its recent lifecycle events."""
    with open_app(ctx) as application:
        detail = application.certificates.show_entry(name)
    if json_output:
        print_json(detail.to_dict())
    else:
        _print_detail(detail)


@cert_app.command("export")
def cert_export(
    ctx: typer.Context,
    name: NameArgument,
    out: Annotated[Path, typer.Option(help="Directory to write the files to.")],
    format: Annotated[str, typer.Option(help="pem (chain + key) or pfx (PKCS#12).")] = "pem",
    password_file: Annotated[
        Path | None, typer.Option(help="Encrypt the PFX with the password in this file.")
    ] = None,
    json_output: JSONOption = False,
) -> None:
    """Write the active certificate with its private key (key files are 0600)."""
    if format not in ("pem", "pfx"):
        raise InvalidInput(f"--format must be pem or pfx, not {format!r}", value=format)
    password = None
    if password_file is not None:
        password = read_secret(from_stdin=False, path=password_file, what="password")
    with open_app(ctx) as application:
        files = application.certificates.export_certificate(
            name,
            out,
            format="pfx" if format == "pfx" else "pem",
            password=password,
        )
    if json_output:
        print_json({"files": [str(path) for path in files]})
    else:
        for path in files:
            console.print(f"wrote {path}", highlight=False, markup=False)
