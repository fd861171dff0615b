"""The ``opensti`` command line.

Every command module registers itself on :data:`app` when imported, which happens
only for the command that runs (:class:`~opensti.cli._app.LazyCommands`, whose table
names each command's modules); :func:`main` is the one place
where an exception becomes a one-line message and an exit code
(:func:`opensti.core.errors.cli_exit_code`): no traceback reaches the user.
"""

from __future__ import annotations

import sys

import click
import typer

from opensti.cli._app import app, err_console
from opensti.core.errors import OpenSTIError, cli_exit_code

__all__ = ["app", "main"]

# Typer up to 0.2x raises click's own exceptions; later releases vendor click and raise
# their copies (typer.Exit, typer.Abort, typer.TyperException). Catch both families,
# so that a bad option value never ends in a traceback.
_EXITS = (click.exceptions.Exit, typer.Exit)
_ABORTS = (click.Abort, typer.Abort, KeyboardInterrupt)
_USAGE_ERRORS = (click.ClickException, getattr(typer, "TyperException", click.ClickException))


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="opensti", standalone_mode=False)
    except _EXITS as exc:
        sys.exit(exc.exit_code)
    except _USAGE_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except _ABORTS:
        err_console.print("aborted")
        sys.exit(130)
    except OpenSTIError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(cli_exit_code(exc))
    sys.exit(result if isinstance(result, int) else 0)
