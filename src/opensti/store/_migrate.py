"""Alembic, driven from code: the migrations ship inside the package, no alembic.ini.

Alembic (and Mako under it) is imported only when a migration runs or a revision is
asked for: ``opensti serve`` starts on a schema at head without it, which keeps some
10 MiB out of each of its processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from opensti.core.errors import InvalidInput
from opensti.store._database import Database, open_database, store_errors

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
    "upgrade_if_behind",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The newest migration's revision (tests/store/test_migrations.py holds it to
#: alembic's head): a store at it needs no migration, so no alembic.
HEAD_REVISION = "0010_call_log_indexes"


def alembic_config(database: Database | None = None) -> Config:
    """A Config for alembic's own commands; env.py uses ``database``'s engine if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database is not None:
        config.set_main_option(
            "sqlalchemy.url", database.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        config.attributes["database"] = database
    return config


def _run(url_or_db: str | Database, action: str, revision: str) -> None:
    from alembic import command
    from alembic.util.exc import CommandError

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


def upgrade_if_behind(database: Database) -> None:
    """:func:`upgrade` to head unless the store is there already (read without alembic)."""
    try:
        with database.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DatabaseError:  # no version table yet: a new store
        versions = []
    if [tuple(row) for row in versions] != [(HEAD_REVISION,)]:
        upgrade(database)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
