"""A database that refuses work (read-only, corrupt, below a regular file): clean 503
problem JSON, a 503 page, ``/health`` says so, one CLI line; and the files opensti
makes are for its owner only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opensti.api import create_api
from opensti.api.stir import STIRApp
from opensti.app import App
from opensti.config import load_settings
from opensti.store import Role, Secret, create_user
from opensti.web import create_web

OPENSTI = str(Path(sys.executable).with_name("opensti"))
PASSWORD = "correct horse battery"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A migrated SQLite store with an admin user, closed again."""
    directory = tmp_path / "data"
    settings = load_settings(data_dir=directory)
    with App.from_settings(settings) as application, application.database.session() as session:
        create_user(session, name="alice", password=Secret.from_text(PASSWORD), role=Role.ADMIN)
    return directory


def _read_only_url(directory: Path) -> str:
    # SQLite's own read-only mode: works as root too, where chmod would not.
    return f"sqlite:///file:{directory / 'opensti.db'}?mode=ro&uri=true"


@pytest.fixture
def read_only(data_dir: Path) -> Iterator[tuple[App, str]]:
    """The store opened read-only, and an admin token made before it was."""
    with App.from_settings(load_settings(data_dir=data_dir)) as writable:
        token = writable.create_api_token(name="admin", role=Role.ADMIN).reveal_text()
    settings = load_settings(data_dir=data_dir, database_url=_read_only_url(data_dir))
    with App.from_settings(settings, migrate=False) as application:
        yield application, token


async def test_the_api_reads_and_refuses_writes_with_503(read_only: tuple[App, str]) -> None:
    application, token = read_only
    transport = httpx.ASGITransport(app=create_api(application))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        # The token's use cannot be recorded: the read still answers.
        listed = await client.get("/api/v1/tokens", headers=headers)
        assert listed.status_code == 200, listed.text
        made = await client.post(
            "/api/v1/tokens", headers=headers, json={"name": "new", "role": "signer"}
        )
    assert made.status_code == 503
    assert made.headers["content-type"] == "application/problem+json"
    assert made.json()["detail"] == "the database is read-only"
    assert made.json()["type"].endswith("StoreUnavailable")


async def test_sign_in_answers_a_503_page(read_only: tuple[App, str]) -> None:
    application, _ = read_only
    transport = httpx.ASGITransport(app=create_web(application))
    async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
        page = await client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        response = await client.post(
            "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
        )
    assert response.status_code == 503
    assert "the database is read-only" in response.text
    assert "Traceback" not in response.text


async def test_health_reports_a_store_that_refused_a_write(read_only: tuple[App, str]) -> None:
    application, _ = read_only
    app = STIRApp(None, None, health=application.database.health)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stir") as client:
        assert (await client.get("/health")).status_code == 200
        with pytest.raises(Exception, match="read-only"):
            application.create_api_token(name="x", role=Role.SIGNER)
        answer = await client.get("/health")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "database": "the database is read-only"}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSTI_")}
    full_env.update(env or {})
    return subprocess.run(
        [OPENSTI, *args], capture_output=True, text=True, env=full_env, check=False, timeout=60
    )


def _one_line(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_errors_are_one_line(data_dir: Path, tmp_path: Path) -> None:
    read_only = {"OPENSTI_DATABASE_URL": _read_only_url(data_dir)}
    made = _cli("--data-dir", str(data_dir), "token", "create", "--role", "signer", env=read_only)
    _one_line(made, 6, "the database is read-only")
    regular = tmp_path / "regular"
    regular.write_text("")
    _one_line(
        _cli("--data-dir", str(regular / "x"), "token", "create", "--role", "signer"),
        2,
        "Not a directory",
    )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "opensti.db").write_bytes(os.urandom(4096))
    _one_line(
        _cli("--data-dir", str(corrupt), "token", "create", "--role", "signer"),
        6,
        "corrupt",
    )
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'organization = "caf\xe9"\n')
    _one_line(
        _cli("--config", str(config), "--data-dir", str(data_dir), "user", "list"),
        2,
        "is not UTF-8",
    )


def test_data_files_are_for_the_owner_only(data_dir: Path) -> None:
    for name in ("opensti.db", "secret.key"):
        mode = stat.S_IMODE((data_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    for extra in data_dir.glob("opensti.db-*"):
        assert stat.S_IMODE(extra.stat().st_mode) == 0o600, extra
