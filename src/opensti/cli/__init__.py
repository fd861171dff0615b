"""The ``opensti`` command line.

Every command module registers itself on :data:`app`; :func:`main` is the one place
where an exception becomes a one-line message and an exit code
(:func:`opensti.core.errors.cli_exit_code`): no traceback reaches the user.
"""

from __future__ import annotations

import sys

import click
import typer

from opensti.cli._app import app, err_console
from opensti.core.errors import OpenSTIError, cli_exit_code

# Command modules attach their commands to ``app`` on import.
from opensti.cli import passport as _passport  # noqa: F401  isort: skip
from opensti.cli import demo as _demo  # noqa: F401  isort: skip
from opensti.cli import sandbox as _sandbox  # noqa: F401  isort: skip
from opensti.cli import db as _db  # noqa: F401  isort: skip
from opensti.cli import accounts as _accounts  # noqa: F401  isort: skip
from opensti.cli import stipa as _stipa  # noqa: F401  isort: skip
from opensti.cli import cert as _cert  # noqa: F401  isort: skip
from opensti.cli import token as _token  # noqa: F401  isort: skip
from opensti.cli import calls as _calls  # noqa: F401  isort: skip
from opensti.cli import lifecycle as _lifecycle  # noqa: F401  isort: skip
from opensti.cli import lifecycle_loop as _lifecycle_loop  # noqa: F401  isort: skip
from opensti.cli import serve as _serve  # noqa: F401  isort: skip
from opensti.cli import users as _users  # noqa: F401  isort: skip

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
