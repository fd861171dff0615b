"""Alembic migration scripts (run through :mod:`opensti.store._migrate`)."""
