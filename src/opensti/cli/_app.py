"""The Typer application and console objects shared by every command module."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from opensti.core.errors import InvalidInput


def group(**options: Any) -> typer.Typer:
    """A command group whose ``--help`` never cuts an option name.

    Typer's Rich help lays options out in a table that ellipsizes names to fit the
    terminal (``--identifier-encod…`` at 80 columns); click's plain layout puts a long
    name on a line of its own and wraps only the help text.
    """
    return typer.Typer(rich_markup_mode=None, **options)


#: Which modules register each top-level command (on :data:`app`, when imported).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "account": ("opensti.cli.accounts",),
    "ca": ("opensti.cli.accounts",),
    "calls": ("opensti.cli.calls",),
    "cert": ("opensti.cli.cert", "opensti.cli.lifecycle_loop"),
    "db": ("opensti.cli.db",),
    "demo": ("opensti.cli.demo",),
    "notify": ("opensti.cli.lifecycle",),
    "passport": ("opensti.cli.passport",),
    "sandbox": ("opensti.cli.sandbox",),
    "serve": ("opensti.cli.serve",),
    "stipa": ("opensti.cli.stipa",),
    "task": ("opensti.cli.lifecycle",),
    "token": ("opensti.cli.token",),
    "user": ("opensti.cli.users",),
    "worker": ("opensti.cli.lifecycle_loop",),
}


class LazyCommands(TyperGroup):
    """The root group: a command's module is imported, and its click command built,
    only when that command is asked for.

    Importing every command module (and through them FastAPI, uvicorn, the sandbox,
    ACME) and building all the commands' click objects cost about two seconds on each
    ``opensti`` start, paid again by every script and deployment hook that calls it;
    one command needs a part of that. ``--help`` still lists them all.
    """

    # The click types are Any: typer >= 0.29 bundles its own copy of click.
    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        built = super().get_command(ctx, cmd_name)
        if built is not None or cmd_name not in COMMAND_MODULES:
            return built
        for module in COMMAND_MODULES[cmd_name]:
            importlib.import_module(module)
        command = _build(cmd_name)
        if command is not None:
            self.add_command(command, cmd_name)
        return command


def _build(name: str) -> Any:
    """The click command of one registered top-level command or group, through typer's
    public builder: a root holding only that registration."""
    holder = group()
    holder.registered_commands = [c for c in app.registered_commands if c.name == name]
    holder.registered_groups = [g for g in app.registered_groups if g.name == name]
    return typer.main.get_group(holder).commands.get(name)


app = group(
    cls=LazyCommands,
    name="opensti",
    help="STIR/SHAKEN for voice service providers: certificates, signing, verification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Emoji codes are off: a fingerprint such as "SHA256 ..:EA:AB:69.." contains ":ab:",
# which Rich would otherwise print as an emoji.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    data_dir: Path | None = None
    config: Path | None = None


@app.callback()
def global_options(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory (database, secret key). Default: $OPENSTI_DATA_DIR "
            "or ~/.local/share/opensti.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML settings file (default: $OPENSTI_CONFIG)."),
    ] = None,
) -> None:
    """STIR/SHAKEN for voice service providers: certificates, signing, verification."""
    ctx.obj = GlobalOptions(data_dir, config)


def print_json(value: Any) -> None:
    """One JSON document on stdout, for scripts (no Rich markup or wrapping)."""
    print(json.dumps(value, indent=None, separators=(", ", ": ")))


def read_input_file(path: Path, what: str, *, max_bytes: int = 1024 * 1024) -> bytes:
    """Read a user-named file, turning OS errors into one clear :class:`InvalidInput`."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise InvalidInput(f"{what} {str(path)!r} is larger than {max_bytes} bytes")
    return data
