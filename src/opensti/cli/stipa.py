"""``opensti stipa set|test|list``: the STI-PA API credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opensti.cli._app import app, console, group, print_json
from opensti.cli._context import open_app, read_secret
from opensti.lifecycle.accounts import StiPaInfo

stipa_app = group(help="STI-PA API credentials (account id = primary OCN).")
app.add_typer(stipa_app, name="stipa")

JSONOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _describe(info: StiPaInfo) -> str:
    return (
        f"STI-PA account {info.account_id} ({info.environment}), "
        f"user {info.user_id!r} at {info.base_url}"
    )


@stipa_app.command("set")
def stipa_set(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Option(help="STI-PA account id (the primary OCN).")],
    user_id: Annotated[str, typer.Option(help="STI-PA API user id (under 256 characters).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file.")
    ] = None,
    staging: Annotated[bool, typer.Option("--staging", help="The staging STI-PA.")] = False,
    base_url: Annotated[
        str | None, typer.Option(help="STI-PA API base URL (default: the environment's).")
    ] = None,
    json_output: JSONOption = False,
) -> None:
    """Store (or replace) the STI-PA API user; the password is kept encrypted."""
    password = read_secret(from_stdin=password_stdin, path=password_file, what="password")
    with open_app(ctx) as application:
        info = application.accounts.set_stipa(
            account_id=account_id,
            user_id=user_id,
            password=password,
            staging=staging,
            base_url=base_url,
        )
    if json_output:
        print_json(info.to_dict())
    else:
        console.print(f"stored {_describe(info)}", highlight=False, markup=False)


@stipa_app.command("test")
def stipa_test(
    ctx: typer.Context,
    account_id: Annotated[
        str | None, typer.Option(help="Which account (default: the only one stored).")
    ] = None,
    staging: Annotated[
        bool | None, typer.Option("--staging/--production", help="Which environment.")
    ] = None,
    json_output: JSONOption = False,
) -> None:
    """Log in to the STI-PA with the stored credentials."""
    with open_app(ctx) as application:
        info = application.accounts.test_stipa(account_id, staging=staging)
    if json_output:
        print_json({**info.to_dict(), "login": "ok"})
    else:
        console.print(
            f"OK: logged in to {_describe(info)}", highlight=False, markup=False, soft_wrap=True
        )


@stipa_app.command("list")
def stipa_list(ctx: typer.Context, json_output: JSONOption = False) -> None:
    """The stored STI-PA accounts (passwords are never shown)."""
    with open_app(ctx) as application:
        infos = application.accounts.list_stipa()
    if json_output:
        print_json([info.to_dict() for info in infos])
    for info in [] if json_output else infos:
        console.print(_describe(info), highlight=False, markup=False)
