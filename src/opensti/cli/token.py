"""``opensti token create``: bearer tokens for the REST API and the STIR API (signer)."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from opensti.cli._app import app, err_console, group, print_json
from opensti.cli._context import open_app
from opensti.core.errors import InvalidInput
from opensti.store import Role

token_app = group(help="Bearer tokens for the REST API and the STIR API.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    role: Annotated[
        str, typer.Option(help="admin, operator, read-only, or signer (an SBC on the STIR API).")
    ],
    name: Annotated[str | None, typer.Option(help="A name for the token.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a token and print it once: only its hash is kept."""
    try:
        chosen = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"role {role!r} is not one of {roles}", value=role) from None
    name = name or f"{chosen.value}-{secrets.token_hex(3)}"
    with open_app(ctx) as application:
        value = application.create_api_token(name=name, role=chosen).reveal_text()
    if json_output:
        print_json({"name": name, "role": chosen.value, "token": value})
        return
    err_console.print(f"token {name} ({chosen.value}); it is shown only now:", highlight=False)
    print(value)
