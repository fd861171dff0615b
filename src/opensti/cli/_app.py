"""The Typer application and console objects shared by every command module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from opensti.core.errors import InvalidInput


def group(**options: Any) -> typer.Typer:
    """A command group whose ``--help`` never cuts an option name.

    Typer's Rich help lays options out in a table that ellipsizes names to fit the
    terminal (``--identifier-encod…`` at 80 columns); click's plain layout puts a long
    name on a line of its own and wraps only the help text.
    """
    return typer.Typer(rich_markup_mode=None, **options)


app = group(
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
