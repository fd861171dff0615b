"""Alembic, driven from code: the migrations ship inside the package, no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from opensti.core.errors import InvalidInput
from opensti.store._database import Database, open_database, store_errors

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(database: Database | None = None) -> Config:
    """A Config for alembic's own commands; env.py uses ``database``'s engine if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database is not None:
        config.set_main_option(
            "sqlalchemy.url", database.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        config.attributes["database"] = database
    return config


def _run(url_or_db: str | Database, action: str, revision: str) -> None:
    database = open_database(url_or_db) if isinstance(url_or_db, str) else url_or_db
    try:
        with store_errors():
            getattr(command, action)(alembic_config(database), revision)
    except CommandError as exc:
        raise InvalidInput(f"cannot {action} the database to {revision!r}: {exc}") from None
    finally:
        if isinstance(url_or_db, str):
            database.dispose()


def upgrade(url_or_db: str | Database, revision: str = "head") -> None:
    _run(url_or_db, "upgrade", revision)


def downgrade(url_or_db: str | Database, revision: str) -> None:
    _run(url_or_db, "downgrade", revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
