"""What the store-backed commands share: the global ``--data-dir``/``--config`` options,
opening the :class:`~opensti.app.App`, secrets from stdin or a file, step progress."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn

from opensti.cli._app import GlobalOptions, err_console, read_input_file
from opensti.config import Settings, load_settings
from opensti.core.errors import InvalidInput

if TYPE_CHECKING:  # the store and services load only for the commands that open them
    from opensti.app import App
    from opensti.store import Secret

__all__ = [
    "GlobalOptions",
    "StepProgress",
    "copy_to_clipboard",
    "open_app",
    "read_secret",
    "settings_of",
]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings for one command (file, environment, global options)."""
    options = ctx.find_root().obj
    if not isinstance(options, GlobalOptions):
        options = GlobalOptions()
    if options.data_dir is None:
        return load_settings(options.config)
    return load_settings(options.config, data_dir=options.data_dir)


@contextmanager
def open_app(ctx: typer.Context) -> Iterator[App]:
    """The application for one command, from the settings and the global options."""
    from opensti.app import App

    settings = settings_of(ctx)
    with App.from_settings(settings) as application:
        yield application


def _strip_newline(data: bytes) -> bytes:
    """Only the line end a shell or an editor adds: spaces may belong to a password."""
    return data.removesuffix(b"\n").removesuffix(b"\r")


def read_secret(*, from_stdin: bool, path: Path | None, what: str) -> Secret:
    """A secret from stdin or a file, never from the command line (ps would show it)."""
    if from_stdin == (path is not None):
        raise InvalidInput(f"give the {what} with exactly one of --{what}-stdin or --{what}-file")
    from opensti.store import Secret

    data = sys.stdin.buffer.read(64 * 1024) if from_stdin else read_input_file(path, what)  # type: ignore[arg-type]
    try:
        return Secret.from_text(_strip_newline(data).decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"the {what} is not UTF-8 text") from None


class StepProgress:
    """One line per step on stderr: a spinner while it runs, a tick or a cross after."""

    def __init__(self, labels: Mapping[str, str], *, enabled: bool = True) -> None:
        self._labels = labels
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            console=err_console,
            disable=not enabled,
        )
        self._current: TaskID | None = None

    def __enter__(self) -> StepProgress:
        self._progress.start()
        return self

    def __call__(self, step: str) -> None:
        self._finish()
        label = self._labels.get(step, step)
        self._current = self._progress.add_task(label, total=1)

    def _finish(self) -> None:
        if self._current is not None:
            self._progress.update(self._current, completed=1)
            self._current = None

    def close(self, *, failed: bool = False) -> None:
        """Finish the last step and stop drawing (before printing a summary).

        A failed step is taken off the display and printed after it stops: off a
        terminal the display is written only when it stops, so a cross printed while
        it runs would come before the ticks of the steps that went well.
        """
        description = None
        if failed and self._current is not None:
            description = self._progress.tasks[-1].description
            self._progress.remove_task(self._current)
            self._current = None
        self._finish()
        self._progress.stop()
        if description is not None:
            self._progress.console.print(f"[red]✗[/] {description}", highlight=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(failed=exc is not None)


_CLIPBOARD_TOOLS = (
    ("wl-copy",),
    ("xclip", "-selection", "clipboard"),
    ("xsel", "--clipboard", "--input"),
    ("pbcopy",),
)


def copy_to_clipboard(text: str) -> str | None:
    """Put ``text`` on the clipboard; the tool used, or None when none works here."""
    for command in _CLIPBOARD_TOOLS:
        program = shutil.which(command[0])
        if program is None:
            continue
        try:
            subprocess.run(
                [program, *command[1:]],
                input=text.encode(),
                check=True,
                timeout=5,
                capture_output=True,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        return command[0]
    return None
