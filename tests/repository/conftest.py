"""A migrated store with sandbox certificates (see tests/lifecycle/lifecycle_support.py)."""

from __future__ import annotations

from tests.lifecycle.lifecycle_support import store

__all__ = ["store"]
