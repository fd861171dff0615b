"""Deployment tasks against real files, real scripts and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from opensti.core.errors import InvalidInput, NoActiveCertificate
from opensti.lifecycle.deploy import (
    DeploymentMaterial,
    TaskResult,
    create_deployment_task,
    parse_task_config,
    run_deployment_tasks,
)
from opensti.store import (
    CertificateEntry,
    CertificateState,
    EventOutcome,
    Secret,
    get_certificate,
    list_deployment_tasks,
    list_events,
)
from tests.lifecycle.lifecycle_support import Store

pytestmark = pytest.mark.integration

BASE = "https://cr.example.test"


def _add_task(
    store: Store,
    entry: CertificateEntry,
    name: str,
    kind: str,
    config: dict[str, Any],
    secret: bytes | None = None,
    timeout: int = 30,
) -> None:
    with store.db.session() as session:
        create_deployment_task(
            session,
            store.box,
            entry.name,
            name=name,
            kind=kind,
            config=config,
            secret=None if secret is None else Secret(secret),
            timeout_seconds=timeout,
        )


async def _run(store: Store, entry: CertificateEntry, **options: Any) -> dict[str, TaskResult]:
    results = await run_deployment_tasks(
        store.db, store.box, entry.id, now=store.pki.now, public_base_url=BASE, **options
    )
    return {result.task_name: result for result in results}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


# -- directory --------------------------------------------------------------------------


async def test_directory_task_writes_chain_key_and_pfx(store: Store, tmp_path: Path) -> None:
    entry = store.entry()
    cert = store.certificate(entry)
    target = tmp_path / "out" / "tls"
    _add_task(store, entry, "files", "directory", {"path": str(target)}, secret=b"pfx-pass")
    results = await _run(store, entry)
    assert results["files"].ok, results["files"].error
    chain, key, pfx = target / "chain.pem", target / "key.pem", target / "certificate.pfx"
    assert chain.read_text() == cert.chain_pem
    assert (_mode(chain), _mode(key), _mode(pfx)) == (0o644, 0o600, 0o600)
    loaded_key, leaf, extra = pkcs12.load_key_and_certificates(pfx.read_bytes(), b"pfx-pass")
    assert leaf is not None
    assert format(leaf.serial_number, "x") == cert.serial
    assert extra == [store.pki.intermediate.certificate]
    assert loaded_key is not None
    assert loaded_key.public_key() == leaf.public_key()
    assert sorted(p.name for p in target.iterdir()) == ["certificate.pfx", "chain.pem", "key.pem"]
    with pytest.raises(ValueError, match=r"[Ii]nvalid password|decrypt"):
        pkcs12.load_key_and_certificates(pfx.read_bytes(), b"wrong")


async def test_directory_task_replaces_files_atomically(store: Store, tmp_path: Path) -> None:
    entry = store.entry()
    store.certificate(entry)
    target = tmp_path / "tls"
    _add_task(store, entry, "files", "directory", {"path": str(target), "pfx_file": None})
    await _run(store, entry)
    before = (target / "key.pem").stat().st_ino
    newer = store.certificate(entry)
    assert (await _run(store, entry))["files"].ok
    assert (target / "chain.pem").read_text() == newer.chain_pem
    assert (target / "key.pem").stat().st_ino != before  # a new file renamed into place
    assert not (target / "certificate.pfx").exists()
    assert sorted(p.name for p in target.iterdir()) == ["chain.pem", "key.pem"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
async def test_directory_task_sets_owner_when_root(store: Store, tmp_path: Path) -> None:
    entry = store.entry()
    store.certificate(entry)
    target = tmp_path / "tls"
    _add_task(
        store, entry, "files", "directory", {"path": str(target), "owner": 65534, "group": 65534}
    )
    assert (await _run(store, entry))["files"].ok
    for name in ("chain.pem", "key.pem", "certificate.pfx"):
        info = (target / name).stat()
        assert (info.st_uid, info.st_gid) == (65534, 65534)


async def test_unwritable_directory_fails_without_touching_the_certificate(
    store: Store, tmp_path: Path
) -> None:
    entry = store.entry()
    cert = store.certificate(entry)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    _add_task(store, entry, "files", "directory", {"path": str(blocker / "tls")})
    result = (await _run(store, entry))["files"]
    assert not result.ok
    assert "cannot write" in (result.error or "")
    with store.db.read_session() as session:
        assert get_certificate(session, cert.id).state is CertificateState.ACTIVE
        task = list_deployment_tasks(session, entry.id)[0]
        assert (task.last_outcome, task.last_certificate_id) == (EventOutcome.FAILED, cert.id)
        event = list_events(session, entry.id)[0]
        assert (event.step, event.outcome, event.detail["task"]) == (
            "deploy",
            EventOutcome.FAILED,
            "files",
        )


# -- script -----------------------------------------------------------------------------


async def test_script_gets_paths_and_metadata_but_not_our_secrets(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSTI_SECRET_KEY", "must-not-leak")
    entry = store.entry()
    cert = store.certificate(entry)
    dump = tmp_path / "env.txt"
    program = _script(
        tmp_path, "hook.sh", f'env > "{dump}"\ncat "$OPENSTI_CHAIN_FILE" >> "{dump}"\n'
    )
    _add_task(store, entry, "files", "directory", {"path": str(tmp_path / "tls")})
    _add_task(store, entry, "reload", "script", {"command": [program, "--reload"]})
    results = await _run(store, entry)
    assert results["reload"].ok, results["reload"].error
    assert results["reload"].detail["exit_code"] == 0
    text = dump.read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("OPENSTI_"))
    assert env["OPENSTI_ENTRY"] == "main"
    assert env["OPENSTI_SPC"] == "123H"
    assert env["OPENSTI_SERIAL"] == cert.serial
    assert env["OPENSTI_CERTIFICATE_ID"] == str(cert.id)
    assert env["OPENSTI_X5U"] == f"{BASE}/sti-cr/{cert.id}.pem"
    assert env["OPENSTI_NOT_AFTER"] == cert.not_after.isoformat()  # type: ignore[union-attr]
    assert env["OPENSTI_CHAIN_FILE"] == str(tmp_path / "tls" / "chain.pem")
    assert env["OPENSTI_KEY_FILE"] == str(tmp_path / "tls" / "key.pem")
    assert "OPENSTI_SECRET_KEY" not in env
    assert (cert.chain_pem or "x") in text


async def test_script_alone_gets_a_private_copy_removed_afterwards(
    store: Store, tmp_path: Path
) -> None:
    entry = store.entry()
    cert = store.certificate(entry)
    seen = tmp_path / "seen.txt"
    program = _script(
        tmp_path,
        "hook.sh",
        f'echo "$OPENSTI_KEY_FILE" > "{seen}"\nstat -c %a "$OPENSTI_KEY_FILE" >> "{seen}"\n'
        'grep -c "BEGIN PRIVATE KEY" "$OPENSTI_KEY_FILE"\n',
    )
    _add_task(store, entry, "hook", "script", {"command": [program]})
    result = (await _run(store, entry))["hook"]
    assert result.ok, result.error
    assert result.detail["output"] == "1\n"
    key_path, mode = seen.read_text().split()
    assert mode == "600"
    assert not Path(key_path).exists()
    assert cert.id == result.certificate_id


async def test_failing_script_is_reported_and_retried_alone(store: Store, tmp_path: Path) -> None:
    entry = store.entry()
    cert = store.certificate(entry)
    flag = tmp_path / "fixed"
    program = _script(
        tmp_path,
        "hook.sh",
        f'if [ -e "{flag}" ]; then echo ok; exit 0; fi\n'
        "i=0; while [ $i -lt 500 ]; do echo 'noise noise noise'; i=$((i+1)); done\nexit 3\n",
    )
    _add_task(store, entry, "files", "directory", {"path": str(tmp_path / "tls")})
    _add_task(store, entry, "hook", "script", {"command": [program], "output_limit": 100})
    first = await _run(store, entry)
    assert first["files"].ok
    assert not first["hook"].ok
    assert first["hook"].error == "script exited with status 3"
    assert first["hook"].detail["exit_code"] == 3
    assert len(first["hook"].detail["output"]) == 100
    assert first["hook"].detail["output_truncated"] is True
    flag.touch()
    retry = await _run(store, entry, only_pending=True)
    assert list(retry) == ["hook"]  # the directory task already succeeded for this cert
    assert retry["hook"].ok
    with store.db.read_session() as session:
        assert get_certificate(session, cert.id).state is CertificateState.ACTIVE


async def test_script_timeout_kills_the_process_group(store: Store, tmp_path: Path) -> None:
    entry = store.entry()
    store.certificate(entry)
    pid_file = tmp_path / "pid"
    program = _script(tmp_path, "slow.sh", f'sleep 60 &\necho $! > "{pid_file}"\nwait\n')
    _add_task(store, entry, "slow", "script", {"command": [program]}, timeout=1)
    result = (await _run(store, entry))["slow"]
    assert not result.ok
    assert result.error == "script timed out after 1 s"
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        _wait_gone(child)


def _wait_gone(pid: int) -> None:
    """Raise ProcessLookupError once ``pid`` is gone (reaped by init after the kill)."""
    for _ in range(500):
        os.kill(pid, 0)
        threading.Event().wait(0.01)


# -- webhook ----------------------------------------------------------------------------


@dataclass
class Hook:
    url: str
    status: int = 204
    delay: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A real HTTP server on 127.0.0.1 recording every POST it receives."""
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if stopping.wait(state.delay):
                return
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Hook(f"http://127.0.0.1:{server.server_address[1]}/hooks/cert")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    stopping.set()
    server.shutdown()
    server.server_close()
    thread.join()


async def test_webhook_posts_signed_json(store: Store, hook: Hook) -> None:
    entry = store.entry()
    cert = store.certificate(entry)
    key = b"shared hmac key"
    _add_task(
        store,
        entry,
        "notify-lb",
        "webhook",
        {"url": hook.url, "headers": {"X-Env": "test"}, "allow_http": True},
        secret=key,
    )
    result = (await _run(store, entry))["notify-lb"]
    assert result.ok, result.error
    assert result.detail == {"status": 204}
    headers, body = hook.received[0]
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-opensti-signature"], expected)
    assert headers["content-type"] == "application/json"
    assert headers["x-env"] == "test"
    document = json.loads(body)
    assert document["event"] == "certificate.deployed"
    assert (document["entry"], document["spc"], document["serial"]) == ("main", "123H", cert.serial)
    assert document["x5u"] == f"{BASE}/sti-cr/{cert.id}.pem"
    assert document["chain_pem"] == cert.chain_pem
    assert "PRIVATE KEY" not in body.decode()


async def test_webhook_non_2xx_and_timeout_fail(store: Store, hook: Hook) -> None:
    entry = store.entry()
    store.certificate(entry)
    _add_task(
        store,
        entry,
        "hook",
        "webhook",
        {"url": hook.url, "include_chain": False, "allow_http": True},
        timeout=1,
    )
    hook.status = 500
    refused = (await _run(store, entry))["hook"]
    assert (refused.ok, refused.error) == (False, "webhook answered HTTP 500")
    assert "signature" not in " ".join(hook.received[0][0])  # no key, no signature header
    assert "chain_pem" not in json.loads(hook.received[0][1])
    hook.status, hook.delay = 200, 5.0
    slow = (await _run(store, entry))["hook"]
    assert (slow.ok, slow.error) == (False, "webhook timed out after 1 s")


async def test_webhook_unreachable(store: Store) -> None:
    entry = store.entry()
    store.certificate(entry)
    _add_task(
        store, entry, "hook", "webhook", {"url": "http://127.0.0.1:9/closed", "allow_http": True}
    )
    result = (await _run(store, entry))["hook"]
    assert not result.ok
    assert (result.error or "").startswith("webhook unreachable: ConnectError")


# -- configuration and selection --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("directory", {"path": "relative/dir"}),
        ("directory", {"path": "/srv/x", "key_file": "../key.pem"}),
        ("directory", {"path": "/srv/x", "key_file": "chain.pem"}),
        ("directory", {"path": "/srv/x", "mode": 420}),
        ("script", {"command": "/bin/sh -c 'rm -rf /'"}),
        ("script", {"command": ["relative.sh"]}),
        ("script", {"command": ["/bin/true"], "env": {"OPENSTI_SPC": "x"}}),
        ("webhook", {"url": "ftp://127.0.0.1/"}),
        ("webhook", {"url": "https://127.0.0.1/", "include_chain": 1}),
        ("webhook", {"url": "https://127.0.0.1/", "headers": {"X": "a\r\nInjected: 1"}}),
        # Plain http:// only when the task's config allows it explicitly.
        ("webhook", {"url": "http://127.0.0.1/"}),
        ("webhook", {"url": "http://127.0.0.1/", "allow_http": "yes"}),
        ("carrier-pigeon", {}),
    ],
)
def test_bad_configs_are_refused(kind: str, config: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        parse_task_config(kind, config)


async def test_no_active_certificate_and_unknown_task_names(store: Store, tmp_path: Path) -> None:
    entry = store.entry()
    with pytest.raises(NoActiveCertificate):
        await _run(store, entry)
    store.certificate(entry)
    _add_task(store, entry, "files", "directory", {"path": str(tmp_path / "tls")})
    with pytest.raises(InvalidInput, match="no enabled deployment task"):
        await _run(store, entry, names=["nope"])
    assert list(await _run(store, entry, names=["files"])) == ["files"]


def test_material_repr_hides_the_key(store: Store) -> None:
    entry = store.entry()
    cert = store.certificate(entry)
    with store.db.read_session() as session:
        material = DeploymentMaterial.of(store.box, get_certificate(session, cert.id))
    assert "PRIVATE" not in repr(material)
    assert material.x5u is None
