"""``opensti notify ...`` and ``opensti task run`` as a user runs them: the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opensti.lifecycle.deploy import create_deployment_task
from tests._servers import client_env
from tests.lifecycle.lifecycle_support import Store
from tests.lifecycle.test_notify import smtp_server

pytestmark = pytest.mark.integration

OPENSTI = Path(sys.executable).with_name("opensti")


def run(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in client_env().items() if not k.startswith("OPENSTI_")}
    env.update(store.env)
    return subprocess.run(
        [str(OPENSTI), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_notify_commands_send_a_test_email(store: Store) -> None:
    with smtp_server() as box:
        set_smtp = run(
            store, "notify", "set-smtp", "--host", "127.0.0.1", "--port", str(box.port),
            "--security", "none", "--from", "opensti@carrier.example",
        )  # fmt: skip
        assert set_smtp.returncode == 0, set_smtp.stderr
        assert run(store, "notify", "set-contact", "noc@carrier.example").returncode == 0
        sent = run(store, "notify", "test")
    assert sent.returncode == 0, sent.stderr
    assert "test email sent to noc@carrier.example" in sent.stdout
    assert [str(m["To"]) for m in box.messages] == ["noc@carrier.example"]


def test_notify_refuses_a_password_in_clear(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pw\n")
    result = run(
        store, "notify", "set-smtp", "--host", "127.0.0.1", "--security", "none",
        "--from", "o@carrier.example", "--username", "u", "--password-file", str(secret),
    )  # fmt: skip
    assert result.returncode == 2
    assert "needs starttls or ssl" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_task_run_reports_each_task_and_fails_when_one_fails(store: Store, tmp_path: Path) -> None:
    entry = store.entry()
    store.certificate(entry)
    target = tmp_path / "tls"
    with store.db.session() as session:
        create_deployment_task(
            session, store.box, "main", name="files", kind="directory",
            config={"path": str(target)},
        )  # fmt: skip
        create_deployment_task(
            session, store.box, "main", name="hook", kind="script",
            config={"command": ["/bin/false"]},
        )  # fmt: skip
    result = run(store, "task", "run", "main", "--json")
    assert result.returncode == 5, result.stderr
    outcomes = {
        item["task_name"]: (item["ok"], item["error"]) for item in json.loads(result.stdout)
    }
    assert outcomes == {"files": (True, None), "hook": (False, "script exited with status 1")}
    assert "deployment tasks failed: hook" in result.stderr
    assert os.path.exists(target / "key.pem")
    only_files = run(store, "task", "run", "main", "--task", "files")
    assert only_files.returncode == 0, only_files.stderr
    assert "files (directory): ok" in only_files.stdout
