"""Worker processes forked from a server that has bound its listening sockets.

Python runs one request at a time per process, so a server uses every core by forking
workers that inherit the bound sockets and accept on them side by side (the kernel
hands each connection to one of them). The SIP server and ``opensti serve``'s HTTP
front both use this. Fork before any event loop or thread starts: a child gets only the
forking thread, and a loop carried across a fork is unusable.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable

__all__ = ["bind_each", "fork_workers", "stop_workers"]

logger = logging.getLogger(__name__)


def bind_each(binders: Iterable[Callable[[], socket.socket]]) -> list[socket.socket]:
    """Bind every listener before the fork; if one cannot be bound, the ones bound so
    far are closed before the error goes on (a half-bound server never serves)."""
    sockets: list[socket.socket] = []
    try:
        for bind in binders:
            sockets.append(bind())
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def fork_workers(count: int, run: Callable[[], None], *, name: str) -> list[int]:
    """Fork ``count`` children that each call ``run`` and exit: 0 when it returns, 1 when
    it raises. ``os._exit``, so nothing the parent opened is flushed or closed twice."""
    children: list[int] = []
    if count > 0:
        # Objects made so far (imported modules above all) leave the collector's care:
        # a collection in a child would otherwise write to their pages and copy them,
        # so every child would pay again the memory the parent already has.
        gc.freeze()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                run()
            except BaseException:
                logger.exception("%s failed", name)
                status = 1
            finally:
                os._exit(status)
        children.append(pid)
    return children


def stop_workers(children: Iterable[int], *, timeout: float = 30.0) -> dict[int, int]:
    """SIGTERM each child, wait up to ``timeout`` for all, SIGKILL the rest; the exit
    status of each (negative: the signal that ended it)."""
    remaining = set(children)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while remaining:
        for pid in list(remaining):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                remaining.discard(pid)
                continue
            if done:
                statuses[pid] = os.waitstatus_to_exitcode(status)
                remaining.discard(pid)
        if remaining and time.monotonic() > deadline:
            for pid in remaining:
                logger.error("worker %d did not stop in %.0f s: killed", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        elif remaining:
            time.sleep(0.05)
    return statuses
