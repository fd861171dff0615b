"""The sandbox fixtures (real STI-PA + STI-CA on 127.0.0.1), shared with tests/sandbox."""

from __future__ import annotations

from tests.sandbox.conftest import clock, sandbox, sandbox_factory

__all__ = ["clock", "sandbox", "sandbox_factory"]
