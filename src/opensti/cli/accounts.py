"""``opensti ca list|add|remove`` and ``opensti account add|import|list|show|remove``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opensti.cli._app import app, console, group, print_json, read_input_file
from opensti.cli._context import copy_to_clipboard, open_app
from opensti.lifecycle.accounts import AccountInfo, CAInfo
from opensti.store import Secret

ca_app = group(help="Certificate authorities (STI-CAs): built-in and custom.")
account_app = group(help="ACME accounts at the STI-CAs.")
app.add_typer(ca_app, name="ca")
app.add_typer(account_app, name="account")

JSONOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NameOption = Annotated[
    str | None, typer.Option(help="Name of the account here (default: the CA's name).")
]
StagingOption = Annotated[bool, typer.Option("--staging", help="The CA's staging directory.")]


def _print_cas(cas: list[CAInfo]) -> None:
    table = Table(
        "name", "kind", "directory", "EAB", "identifier", "tkauth field", "fingerprint", "cert key"
    )
    for ca in cas:
        table.add_row(
            ca.name,
            ca.kind,
            ca.directory_url,
            "required" if ca.needs_eab else "-",
            ca.identifier_encoding,
            ca.tkauth_field,
            ca.fingerprint_algorithm,
            "account key" if ca.cert_key_is_account_key else "separate",
        )
    console.print(table)


@ca_app.command("list")
def ca_list(ctx: typer.Context, json_output: JSONOption = False) -> None:
    """The CAs accounts can be made at."""
    with open_app(ctx) as application:
        cas = application.accounts.list_cas()
    if json_output:
        print_json([ca.to_dict() for ca in cas])
    else:
        _print_cas(cas)


@ca_app.command("add")
def ca_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the CA.")],
    directory_url: Annotated[str, typer.Option(help="The CA's ACME directory URL.")],
    staging_url: Annotated[str | None, typer.Option(help="Its staging directory URL.")] = None,
    eab: Annotated[
        bool, typer.Option("--eab/--no-eab", help="Whether the CA requires EAB.")
    ] = True,
    terms_url: Annotated[str | None, typer.Option(help="Terms of service URL.")] = None,
    identifier_encoding: Annotated[
        str, typer.Option(help="TNAuthList identifier value: padded or base64url.")
    ] = "padded",
    tkauth_field: Annotated[
        str, typer.Option(help="tkauth-01 answer field: atc or tkauth.")
    ] = "atc",
    fingerprint: Annotated[
        str, typer.Option(help="SPC token fingerprint: jwk_thumbprint or spki_sha256.")
    ] = "jwk_thumbprint",
    cert_key_is_account_key: Annotated[
        bool, typer.Option(help="The CA certifies the account key only.")
    ] = False,
    honours_validity: Annotated[
        bool, typer.Option(help="The CA honours notBefore/notAfter in orders.")
    ] = False,
    json_output: JSONOption = False,
) -> None:
    """Add a custom CA by its ACME directory URL."""
    with open_app(ctx) as application:
        ca = application.accounts.add_ca(
            name,
            directory_url,
            staging_directory_url=staging_url,
            needs_eab=eab,
            terms_url=terms_url,
            identifier_encoding=identifier_encoding,
            tkauth_field=tkauth_field,
            fingerprint_algorithm=fingerprint,
            cert_key_is_account_key=cert_key_is_account_key,
            honours_validity=honours_validity,
        )
    if json_output:
        print_json(ca.to_dict())
    else:
        console.print(f"added CA {ca.name}: {ca.directory_url}", highlight=False, markup=False)


def _print_account(account: AccountInfo) -> None:
    rows = (
        ("account", account.name),
        ("CA", f"{account.ca}{' (staging)' if account.staging else ''}"),
        ("status", account.status),
        ("email", account.email or "-"),
        ("account URL", account.account_url or "-"),
        ("JWK thumbprint", account.thumbprint),
        ("STI-PA fingerprint", account.fingerprint),
    )
    for label, value in rows:
        console.print(f"{label + ':':<20}{value}", highlight=False, markup=False, soft_wrap=True)


def _show(account: AccountInfo, json_output: bool) -> None:
    if json_output:
        print_json(account.to_dict())
    else:
        _print_account(account)


@account_app.command("add")
def account_add(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option(help="The CA (see: opensti ca list).")],
    email: Annotated[str, typer.Option(help="Contact email for the CA.")],
    agree_tos: Annotated[
        bool, typer.Option("--agree-tos", help="Agree to the CA's terms of service.")
    ] = False,
    staging: StagingOption = False,
    eab_kid: Annotated[
        str | None,
        typer.Option(help="EAB key id from the CA (Peeringhub: its key id alone, no HMAC key)."),
    ] = None,
    eab_hmac_key: Annotated[
        str | None, typer.Option(help="EAB HMAC key from the CA (base64url).")
    ] = None,
    name: NameOption = None,
    json_output: JSONOption = False,
) -> None:
    """Register a new ACME account (a new P-256 key) at a CA."""
    with open_app(ctx) as application:
        account = application.accounts.add_account(
            ca,
            email=email,
            agree_tos=agree_tos,
            staging=staging,
            eab_kid=eab_kid,
            eab_hmac_key=None if eab_hmac_key is None else Secret.from_text(eab_hmac_key),
            name=name,
        )
    _show(account, json_output)


@account_app.command("import")
def account_import(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option(help="The CA the account is at.")],
    key: Annotated[Path, typer.Option(help="The account key (PEM, EC P-256).")],
    account_url: Annotated[
        str | None, typer.Option(help="The account URL, if known (checked at the CA).")
    ] = None,
    staging: StagingOption = False,
    name: NameOption = None,
    json_output: JSONOption = False,
) -> None:
    """Import an account registered elsewhere, found at the CA by its key."""
    key_pem = Secret(read_input_file(key, "key file"))
    with open_app(ctx) as application:
        account = application.accounts.import_account(
            ca, key_pem, account_url=account_url, staging=staging, name=name
        )
    _show(account, json_output)


@account_app.command("list")
def account_list(ctx: typer.Context, json_output: JSONOption = False) -> None:
    """Every ACME account, with its STI-PA fingerprint."""
    with open_app(ctx) as application:
        accounts = application.accounts.list_accounts()
    if json_output:
        print_json([account.to_dict() for account in accounts])
        return
    table = Table("name", "CA", "status", "account URL", "STI-PA fingerprint")
    for account in accounts:
        ca = f"{account.ca}{' (staging)' if account.staging else ''}"
        table.add_row(account.name, ca, account.status, account.account_url, account.fingerprint)
    console.print(table)


@account_app.command("show")
def account_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The account's name.")],
    json_output: JSONOption = False,
    copy: Annotated[
        bool, typer.Option("--copy", help="Put the STI-PA fingerprint on the clipboard.")
    ] = False,
) -> None:
    """The account URL, JWK thumbprint and the fingerprint to paste into the STI-PA portal."""
    with open_app(ctx) as application:
        account = application.accounts.show_account(name)
    _show(account, json_output)
    if copy:
        tool = copy_to_clipboard(account.fingerprint)
        message = (
            f"fingerprint copied to the clipboard ({tool})"
            if tool
            else "no clipboard tool is available (wl-copy, xclip, xsel or pbcopy): "
            "copy the fingerprint shown"
        )
        typer.echo(message, err=True)


@ca_app.command("remove")
def ca_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The CA's name.")],
    json_output: JSONOption = False,
) -> None:
    """Forget a custom CA (refused while ACME accounts use it, naming them)."""
    with open_app(ctx) as application:
        _removed(application.accounts.remove_ca(name), f"CA {name!r}", json_output)


@account_app.command("remove")
def account_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The account's name.")],
    json_output: JSONOption = False,
) -> None:
    """Forget an ACME account (refused while entries use it, naming them); it stays open
    at the CA."""
    with open_app(ctx) as application:
        _removed(application.accounts.remove_account(name), f"ACME account {name!r}", json_output)


def _removed(info: CAInfo | AccountInfo, what: str, json_output: bool) -> None:
    if json_output:
        print_json(info.to_dict())
    else:
        console.print(f"removed {what}", highlight=False, markup=False)
