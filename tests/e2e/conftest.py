"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright without its own browser download) against a real ``opensti serve``
subprocess on 127.0.0.1, on a fresh data dir (SQLite), with a real sandbox STI-PA +
STI-CA (HTTPS on 127.0.0.1) whose published trust files the server is configured
with, as an operator would configure it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opensti.sandbox.server import STIPA_CERT_FILE, TRUST_ANCHORS_FILE, SandboxHandle
from tests._servers import client_env, free_port
from tests.sandbox.conftest import SandboxFactory, clock, sandbox_factory

__all__ = ["clock", "sandbox_factory"]

CHROMIUM = Path("/usr/bin/chromium")
OPENSTI = str(Path(sys.executable).with_name("opensti"))
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
_SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")
_SETUP_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/setup\?token=[A-Za-z0-9_-]+)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason="needs Debian's chromium at /usr/bin/chromium")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


@dataclass
class Served:
    """A running ``opensti serve``: its URL, its environment (for CLI calls on the same
    store), the sandbox it talks to, and what it printed."""

    url: str
    env: dict[str, str]
    sandbox: SandboxHandle
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OPENSTI, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )

    def setup_link(self, timeout: float = 10) -> str | None:
        """The one-time setup link ``opensti serve`` printed after its address, if any."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                match = _SETUP_LINK.search(line)
                if match:
                    return match.group(1)
            time.sleep(0.1)
        return None


def _environment(data_dir: Path, sandbox: SandboxHandle, port: int) -> dict[str, str]:
    published = sandbox.state.config.data_dir
    assert sandbox.tls_root_path is not None
    return client_env(
        OPENSTI_DATA_DIR=str(data_dir),
        OPENSTI_TLS_CA_FILE=str(sandbox.tls_root_path),
        OPENSTI_STIPA_TRUST_ANCHORS=str(published / STIPA_CERT_FILE),
        OPENSTI_CA_TRUST_ANCHORS=str(published / TRUST_ANCHORS_FILE),
        OPENSTI_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        OPENSTI_LOG_LEVEL="WARNING",
    )


def _read_until_serving(process: subprocess.Popen[str], output: list[str]) -> str:
    """Lines of stdout up to the "serving on" one."""
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            stderr = process.stderr.read() if process.stderr else ""
            pytest.fail(f"opensti serve exited: {stderr}")
        output.append(line)
        match = _SERVING.search(line)
        if match:
            return match.group(1)


def start_serve(data_dir: Path, sandbox: SandboxHandle) -> Served:
    port = free_port()
    env = _environment(data_dir, sandbox, port)
    command = [OPENSTI, "serve", "--insecure-http", "--host=127.0.0.1", f"--port={port}"]
    process = subprocess.Popen(
        [*command, "--tick=0.3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output: list[str] = []
    # A watchdog: a server that never prints its address must not hang the test.
    timer = threading.Timer(60, process.kill)
    timer.start()
    try:
        url = _read_until_serving(process, output)
    finally:
        timer.cancel()
    served = Served(url, env, sandbox, process, output)
    # Keep reading both pipes so a chatty server never blocks on a full one.
    assert process.stdout is not None
    assert process.stderr is not None
    for stream, lines in ((process.stdout, output), (process.stderr, served.errors)):
        threading.Thread(target=lambda s=stream, into=lines: into.extend(s), daemon=True).start()
    return served


def stop_serve(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    try:
        code = served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        served.process.kill()
        pytest.fail("opensti serve did not stop on SIGTERM")
    assert code == 0, "".join(served.errors)


@pytest.fixture
def served(sandbox_factory: SandboxFactory, tmp_path: Path) -> Iterator[Served]:
    """``opensti serve`` on a fresh store, with no user yet."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    running = start_serve(data_dir, sandbox_factory())
    try:
        yield running
    finally:
        stop_serve(running)


@pytest.fixture
def served_with_admin(served: Served) -> Served:
    """The same, with an admin made by ``opensti user add``."""
    done = served.cli("user", "add", "--role", "admin", "--password-stdin", ADMIN, stdin=PASSWORD)
    assert done.returncode == 0, done.stderr
    return served


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module's tests on this worker (starting one costs
    seconds); each test gets a context of its own, as fresh as a new profile."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(FLAGS)
        )
        try:
            yield browser
        finally:
            browser.close()


def _page(browser: Any, *, javascript: bool) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 860}, java_script_enabled=javascript
    )
    if javascript:
        context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A page in a fresh browser context; clipboard permissions granted for Copy."""
    yield from _page(chromium, javascript=True)


@pytest.fixture
def no_script_page(chromium: Any) -> Iterator[Any]:
    """A page in a fresh browser context with JavaScript switched off."""
    yield from _page(chromium, javascript=False)
