"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright without its own browser download) against a real uvicorn on 127.0.0.1
serving the web app over an App wired to the sandbox."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from opensti.store import Role, Secret, create_user
from tests.lifecycle.acquire_support import World, world
from tests.sandbox.conftest import clock, sandbox_factory

__all__ = ["clock", "sandbox_factory", "world"]

CHROMIUM = Path("/usr/bin/chromium")
ADMIN, PASSWORD = "admin", "e2e password 1"
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# Screenshots go to artifacts/ (ignored by git); OPENSTI_SCREENSHOTS=docs/screenshots
# refreshes the ones the README shows.
SCREENSHOTS = Path(__file__).resolve().parents[2] / os.environ.get(
    "OPENSTI_SCREENSHOTS", "artifacts/screenshots"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason="needs Debian's chromium at /usr/bin/chromium")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def server(world: World) -> Iterator[str]:
    """uvicorn serving create_web(app) on a free 127.0.0.1 port, in a thread."""
    from opensti.web import create_web

    with world.app.database.session() as session:
        create_user(session, name=ADMIN, password=Secret.from_text(PASSWORD), role=Role.ADMIN)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_web(world.app), log_level="warning", lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    instance.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    """A page in a fresh Chromium profile; clipboard permissions granted for Copy."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(FLAGS),
            viewport={"width": 1280, "height": 860},
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            context.close()
