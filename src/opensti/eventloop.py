"""The event loop the long-running servers use: uvloop where it is installed.

uvloop roughly halves the per-request cost of the asyncio loop for the HTTP front and
the SIP listeners; asyncio's own loop stays the fallback (and what one-shot CLI
commands use, where start-up matters more than throughput).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run_server_loop"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_server_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a server's main coroutine to completion on the fastest loop available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
