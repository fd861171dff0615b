"""``opensti user add|list|password|sign-out|setup-link``: the people who sign in to the
web UI. A new password, or ``sign-out``, ends every web session of the user at once.

The first admin is made here (``opensti user add --role admin NAME``), or in the browser
through a one-time setup link (``opensti user setup-link``; ``opensti serve`` prints one
at start while there is no user). A password comes from a prompt or from stdin, never
from the command line (``ps`` would show it).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from opensti.app import App
from opensti.cli._app import app, console, err_console, group, print_json
from opensti.cli._context import open_app, read_secret
from opensti.core.errors import InvalidInput
from opensti.store import (
    Role,
    Secret,
    create_setup_token,
    create_user,
    end_user_sessions,
    get_user,
    has_users,
    list_users,
    set_user_password,
)

__all__ = ["first_run_link"]

user_app = group(help="Web UI users and their roles.", no_args_is_help=True)
app.add_typer(user_app, name="user")


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"role {value!r} is not one of {roles}", value=value) from None


def _prompt_password() -> Secret:
    first = typer.prompt("Password", hide_input=True)
    if typer.prompt("Repeat", hide_input=True) != first:
        raise InvalidInput("the two passwords differ")
    return Secret.from_text(first)


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user name to sign in with.")],
    role: Annotated[str, typer.Option(help="admin, operator or read-only.")] = "operator",
    email: Annotated[str | None, typer.Option(help="Contact address.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user (with --role admin for the first one); asks for the password."""
    chosen = _role(role)
    password = (
        read_secret(from_stdin=True, path=None, what="password")
        if password_stdin
        else _prompt_password()
    )
    with open_app(ctx) as application, application.database.session() as session:
        create_user(session, name=name, password=password, role=chosen, email=email)
    err_console.print(f"user {name} ({chosen.value}) created", highlight=False)


@user_app.command("password")
def user_password(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a new password; every web session of the user ends."""
    password = (
        read_secret(from_stdin=True, path=None, what="password")
        if password_stdin
        else _prompt_password()
    )
    with open_app(ctx) as application, application.database.session() as session:
        set_user_password(session, name, password)
    err_console.print(f"password of {name} changed; its web sessions are ended", highlight=False)


@user_app.command("sign-out")
def user_sign_out(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The user.")]
) -> None:
    """End every web session of a user (a lost laptop, a leaked cookie)."""
    with open_app(ctx) as application, application.database.session() as session:
        ended = end_user_sessions(session, get_user(session, name).id)
    err_console.print(f"{ended} web session(s) of {name} ended", highlight=False)


@user_app.command("list")
def user_list(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every user with role and status."""
    with open_app(ctx) as application, application.database.read_session() as session:
        users = [
            {"name": u.name, "role": u.role.value, "email": u.email, "enabled": u.enabled}
            for u in list_users(session)
        ]
    if json_output:
        print_json(users)
        return
    for user in users:
        state = "" if user["enabled"] else " (disabled)"
        console.print(f"{user['name']}  {user['role']}{state}", highlight=False)


def _link(application: App, base_url: str) -> tuple[str, dt.datetime]:
    with application.database.session() as session:
        token, expires = create_setup_token(session, now=dt.datetime.now(dt.UTC))
    return f"{base_url.rstrip('/')}/setup?token={token.reveal_text()}", expires


def first_run_link(application: App, base_url: str) -> str | None:
    """A new setup link while no user exists (``opensti serve`` prints it), else None."""
    with application.database.read_session() as session:
        if has_users(session):
            return None
    return _link(application, base_url)[0]


@user_app.command("setup-link")
def user_setup_link(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="The web UI's address. Default: the public base URL, else localhost."),
    ] = None,
) -> None:
    """Print a one-time link (valid 1 hour) to create the first admin in the browser."""
    with open_app(ctx) as application:
        base = url or application.settings.public_base_url or "https://localhost:8443"
        link, expires = _link(application, base)
    console.print(link, highlight=False, soft_wrap=True)
    err_console.print(
        f"Open it to create the first admin; it works once, until {expires:%Y-%m-%d %H:%M} UTC.",
        highlight=False,
    )
