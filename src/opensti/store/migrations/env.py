"""Alembic environment: runs on the engine of the opensti Database it is given."""

from __future__ import annotations

from alembic import context

from opensti.store._database import Database, open_database
from opensti.store._models import Base

config = context.config
database = config.attributes.get("database")
if not isinstance(database, Database):
    database = open_database(config.get_main_option("sqlalchemy.url") or "")

with database.engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode recreates the table instead.
        render_as_batch=database.is_sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
