"""``opensti db upgrade|downgrade``: schema migrations of the configured database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opensti.cli._app import app, console, group
from opensti.config import load_settings
from opensti.store import current_revision, downgrade, open_database, upgrade

db_app = group(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: $OPENSTI_CONFIG, if set)."),
]


def _migrate(config: Path | None, action: str, revision: str) -> None:
    settings = load_settings(config)
    database = open_database(settings.database_url)
    try:
        before = current_revision(database)
        (upgrade if action == "upgrade" else downgrade)(database, revision)
        after = current_revision(database)
    finally:
        database.dispose()
    url = database.url.render_as_string(hide_password=True)
    console.print(f"{action}d {url}: {before or 'empty'} -> {after or 'empty'}", highlight=False)


@db_app.command("upgrade")
def upgrade_command(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    config: ConfigOption = None,
) -> None:
    """Create or migrate the schema (run after every install or upgrade of opensti)."""
    _migrate(config, "upgrade", revision)


@db_app.command("downgrade")
def downgrade_command(
    revision: Annotated[str, typer.Argument(help="Target revision ('base' drops everything).")],
    config: ConfigOption = None,
) -> None:
    """Migrate the schema back to an older revision."""
    _migrate(config, "downgrade", revision)
