"""Deployment tasks: hand a newly active certificate to the operator's own systems.

Three kinds (:class:`~opensti.store.DeploymentTaskKind`), configured per entry in a
:class:`~opensti.store.DeploymentTask` row (``config`` is public JSON, the one secret
is sealed in the row):

- ``directory``: write ``chain.pem``, ``key.pem`` (0600) and a PKCS#12 file (0600;
  the task secret is its password) into a directory, each by write-temp, fsync,
  rename, so a reader never sees half a file. Optional owner/group when running as root.
- ``script``: run ``command`` (an argv list, never a shell string) with the file paths
  and the certificate's metadata in ``OPENSTI_*`` environment variables.
- ``webhook``: POST a JSON document; with a task secret, ``X-Opensti-Signature:
  sha256=<hex HMAC-SHA256 of the raw body>``. Any status but 2xx is a failure.

Every task runs under its ``timeout_seconds``. A failure is a :class:`TaskResult`
(recorded on the task row and as a ``deploy`` lifecycle event) and never touches the
certificate: the good certificate stays active, and the task can be run again
(:func:`run_deployment_tasks` with ``only_pending=True`` reruns what has not yet
succeeded for the active certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import grp
import hashlib
import hmac
import json
import logging
import os
import pwd
import signal
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    KeySerializationEncryption,
    NoEncryption,
    pkcs12,
)
from sqlalchemy.orm import Session

from opensti.core.certs import load_certificate_chain
from opensti.core.errors import DeliveryFailed, InvalidInput, NoActiveCertificate, OpenSTIError
from opensti.core.passport import load_private_key
from opensti.repository import x5u_for
from opensti.store import (
    Certificate,
    Database,
    DeploymentTask,
    DeploymentTaskKind,
    EventOutcome,
    Secret,
    SecretBox,
    TaskChange,
    active_certificate,
    add_deployment_task,
    certificate_key,
    change_deployment_task,
    delete_deployment_task,
    deployment_task_secret,
    get_certificate,
    get_deployment_task,
    get_entry,
    get_entry_by_id,
    list_deployment_tasks,
    record_event,
    record_task_run,
)

__all__ = [
    "DEPLOY_STEP",
    "DeployedFiles",
    "DeploymentMaterial",
    "DirectoryConfig",
    "ScriptConfig",
    "TaskResult",
    "WebhookConfig",
    "create_deployment_task",
    "delete_task",
    "parse_task_config",
    "run_deployment_tasks",
    "run_task",
    "update_deployment_task",
]

#: The lifecycle event step of a task run.
DEPLOY_STEP = "deploy"
SIGNATURE_PREFIX = "sha256="
#: Environment variables a script inherits; nothing else (OPENSTI_SECRET_KEY, a
#: database URL with its password) leaks from our environment into it.
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")
_log = logging.getLogger(__name__)


# -- what is deployed -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeploymentMaterial:
    """A certificate with its key and metadata, as every task kind needs it."""

    entry_name: str
    spc: str
    certificate_id: int
    serial: str
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    x5u: str | None
    chain_pem: bytes
    key_pem: Secret = field(repr=False)

    @classmethod
    def of(
        cls, box: SecretBox, certificate: Certificate, *, public_base_url: str | None = None
    ) -> DeploymentMaterial:
        """From an issued certificate row (its entry loaded); x5u from the row or the base URL."""
        if certificate.chain_pem is None:
            raise NoActiveCertificate(f"certificate {certificate.id} has not been issued yet")
        entry = certificate.entry
        if entry is None:
            raise NoActiveCertificate(f"certificate {certificate.id} belongs to a removed entry")
        x5u = certificate.x5u_url
        if x5u is None and public_base_url:
            x5u = x5u_for(certificate.id, public_base_url)
        return cls(
            entry_name=entry.name,
            spc=entry.spc,
            certificate_id=certificate.id,
            serial=certificate.serial or "",
            fingerprint=certificate.fingerprint or "",
            not_before=_aware(certificate.not_before),
            not_after=_aware(certificate.not_after),
            x5u=x5u,
            chain_pem=certificate.chain_pem.encode("ascii"),
            key_pem=certificate_key(box, certificate),
        )

    def metadata(self) -> dict[str, Any]:
        """Public facts about the certificate (the webhook body, the script environment)."""
        return {
            "entry": self.entry_name,
            "spc": self.spc,
            "certificate_id": self.certificate_id,
            "serial": self.serial,
            "fingerprint": self.fingerprint,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "x5u": self.x5u,
        }


def _aware(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        raise NoActiveCertificate("the certificate has no validity period yet")
    return value


@dataclass(frozen=True, slots=True)
class DeployedFiles:
    chain: Path
    key: Path
    pfx: Path | None = None


@dataclass(frozen=True, slots=True)
class TaskResult:
    """The outcome of one task run; ``detail`` holds paths, exit code, output or status."""

    task_id: int
    task_name: str
    kind: DeploymentTaskKind
    certificate_id: int
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kind": str(self.kind)}


# -- configuration ----------------------------------------------------------------------


class _Config:
    """Strict parsing of a task's JSON config: unknown keys and wrong types are refused."""

    def __init__(self, kind: str, raw: object) -> None:
        if not isinstance(raw, dict):
            raise InvalidInput(f"a {kind} task's config must be a JSON object")
        self.kind, self.raw, self.used = kind, raw, set[str]()

    def get(self, key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        value = self.raw.get(key, default)
        # bool is an int to isinstance(); a flag is never a number here, nor the reverse.
        wrong_bool = isinstance(value, bool) != (types is bool)
        if value is not None and (not isinstance(value, types) or wrong_bool):
            raise InvalidInput(f"{self.kind} task: {key!r} has the wrong type", value=value)
        return value

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise InvalidInput(f"{self.kind} task: unknown config keys {unknown}")


def _file_name(value: str, key: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise InvalidInput(f"directory task: {key} must be a plain file name", value=value)
    return value


@dataclass(frozen=True)
class DirectoryConfig:
    path: Path
    chain_file: str = "chain.pem"
    key_file: str = "key.pem"
    #: None: no PKCS#12 file.
    pfx_file: str | None = "certificate.pfx"
    owner: str | int | None = None
    group: str | int | None = None

    @classmethod
    def parse(cls, raw: object) -> DirectoryConfig:
        config = _Config("directory", raw)
        path = config.get("path", str)
        if not path or not Path(path).is_absolute():
            raise InvalidInput("directory task: 'path' must be an absolute directory", value=path)
        names = {
            key: _file_name(config.get(key, str, default), key)
            for key, default in (("chain_file", cls.chain_file), ("key_file", cls.key_file))
        }
        pfx = config.get("pfx_file", str, cls.pfx_file)
        parsed = cls(
            path=Path(path),
            pfx_file=None if pfx is None else _file_name(pfx, "pfx_file"),
            owner=config.get("owner", (str, int)),
            group=config.get("group", (str, int)),
            **names,
        )
        config.done()
        names_used = [parsed.chain_file, parsed.key_file, parsed.pfx_file]
        if len(set(names_used) - {None}) != len([n for n in names_used if n is not None]):
            raise InvalidInput("directory task: the file names must differ")
        return parsed

    def files(self) -> DeployedFiles:
        pfx = None if self.pfx_file is None else self.path / self.pfx_file
        return DeployedFiles(self.path / self.chain_file, self.path / self.key_file, pfx)


@dataclass(frozen=True)
class ScriptConfig:
    command: tuple[str, ...]
    cwd: Path | None = None
    #: Extra environment variables (not OPENSTI_*, which are ours).
    env: tuple[tuple[str, str], ...] = ()
    #: Bytes of combined stdout/stderr kept for the result.
    output_limit: int = 4096

    @classmethod
    def parse(cls, raw: object) -> ScriptConfig:
        config = _Config("script", raw)
        command = config.get("command", list)
        if not command or not all(isinstance(arg, str) and arg for arg in command):
            raise InvalidInput("script task: 'command' must be a non-empty list of strings")
        if not Path(command[0]).is_absolute():
            raise InvalidInput(
                "script task: the program must be an absolute path", value=command[0]
            )
        env = config.get("env", dict, {})
        if not all(
            isinstance(v, str) and not k.upper().startswith("OPENSTI_") for k, v in env.items()
        ):
            raise InvalidInput("script task: 'env' maps names (not OPENSTI_*) to strings")
        limit = config.get("output_limit", int, cls.output_limit)
        if not 0 <= limit <= 1_000_000:
            raise InvalidInput("script task: output_limit is between 0 and 1000000", value=limit)
        cwd = config.get("cwd", str)
        config.done()
        return cls(tuple(command), None if cwd is None else Path(cwd), tuple(env.items()), limit)


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    signature_header: str = "X-Opensti-Signature"
    include_chain: bool = True
    #: Plain http:// only when the task's config says so: the body carries the chain
    #: and the HMAC-signed notice, so by default it travels over TLS.
    allow_http: bool = False

    @classmethod
    def parse(cls, raw: object) -> WebhookConfig:
        config = _Config("webhook", raw)
        url = config.get("url", str)
        if not _is_http_url(url):
            raise InvalidInput("webhook task: 'url' must be an http(s) URL", value=url)
        allow_http = config.get("allow_http", bool, cls.allow_http)
        if not allow_http and not url.lower().startswith("https://"):
            raise InvalidInput(
                "webhook task: the URL must start with https:// (plain http:// only with "
                "'allow_http': true in the task's config, e.g. through the API)",
                value=url,
            )
        headers = config.get("headers", dict, {})
        if not all(isinstance(v, str) and "\n" not in v + k for k, v in headers.items()):
            raise InvalidInput("webhook task: 'headers' maps names to one-line strings")
        parsed = cls(
            url=url,
            headers=tuple(headers.items()),
            signature_header=config.get("signature_header", str, cls.signature_header),
            include_chain=config.get("include_chain", bool, cls.include_chain),
            allow_http=allow_http,
        )
        config.done()
        return parsed


def _is_http_url(value: str | None) -> bool:
    try:
        url = httpx.URL(value or "")
    except httpx.InvalidURL:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


TaskConfig = DirectoryConfig | ScriptConfig | WebhookConfig
_PARSERS: dict[DeploymentTaskKind, Callable[[object], TaskConfig]] = {
    DeploymentTaskKind.DIRECTORY: DirectoryConfig.parse,
    DeploymentTaskKind.SCRIPT: ScriptConfig.parse,
    DeploymentTaskKind.WEBHOOK: WebhookConfig.parse,
}


def parse_task_config(kind: DeploymentTaskKind | str, config: object) -> TaskConfig:
    """Validate a task's config (the UI and CLI call this before storing it)."""
    try:
        parser = _PARSERS[DeploymentTaskKind(kind)]
    except ValueError:
        raise InvalidInput(f"unknown deployment task kind {kind!r}") from None
    return parser(config)


def create_deployment_task(
    session: Session,
    box: SecretBox,
    entry: str,
    *,
    name: str,
    kind: DeploymentTaskKind | str,
    config: dict[str, Any],
    secret: Secret | None = None,
    timeout_seconds: int = 60,
) -> DeploymentTask:
    """Add a task to the named entry after checking its config."""
    parse_task_config(kind, config)
    return add_deployment_task(
        session,
        box,
        get_entry(session, entry).id,
        name=name,
        kind=DeploymentTaskKind(kind),
        config=config,
        secret=secret,
        timeout_seconds=timeout_seconds,
    )


def update_deployment_task(
    session: Session, box: SecretBox, entry: str, name: str, change: TaskChange
) -> DeploymentTask:
    """Change a task of the named entry, with the checks of :func:`create_deployment_task`;
    the loop deploys the active certificate to a changed target again."""
    parse_task_config(change.kind, change.config)
    task = get_deployment_task(session, get_entry(session, entry).id, name)
    return change_deployment_task(session, box, task, change)


def delete_task(session: Session, entry: str, name: str) -> None:
    """Remove a task of the named entry (files it wrote stay where they are)."""
    delete_deployment_task(session, get_entry(session, entry).id, name)


# -- directory --------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Write a temp file beside ``path`` with its final mode and owner, fsync, rename."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _resolve_owner(owner: str | int | None, group: str | int | None) -> tuple[int, int] | None:
    if owner is None and group is None:
        return None
    try:
        user = pwd.getpwnam(owner) if isinstance(owner, str) else None
        uid = user.pw_uid if user else (-1 if owner is None else int(owner))
        if isinstance(group, str):
            gid = grp.getgrnam(group).gr_gid
        else:
            gid = group if group is not None else (user.pw_gid if user else -1)
    except KeyError as exc:
        raise DeliveryFailed(f"no such user or group: {exc.args[0]}") from None
    return uid, gid


def pkcs12_bundle(material: DeploymentMaterial, password: Secret | None) -> bytes:
    """Key, leaf and intermediates as PKCS#12 (encrypted when a password is given)."""
    chain = load_certificate_chain(material.chain_pem)
    encryption: KeySerializationEncryption = (
        BestAvailableEncryption(password.reveal()) if password else NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        material.entry_name.encode("utf-8"),
        load_private_key(material.key_pem.reveal()),
        chain.leaf,
        list(chain.intermediates) or None,
        encryption,
    )


def write_files(
    config: DirectoryConfig, material: DeploymentMaterial, password: Secret | None
) -> dict[str, Any]:
    files = config.files()
    owner = _resolve_owner(config.owner, config.group)
    detail: dict[str, Any] = {}
    if owner is not None and os.geteuid() != 0:
        detail["owner"] = "not applied: not running as root"
        owner = None
    try:
        config.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomic(files.chain, material.chain_pem, 0o644, owner)
        _write_atomic(files.key, material.key_pem.reveal(), 0o600, owner)
        if files.pfx is not None:
            _write_atomic(files.pfx, pkcs12_bundle(material, password), 0o600, owner)
    except OSError as exc:
        raise DeliveryFailed(f"cannot write to {config.path}: {exc.strerror or exc}") from None
    written = [files.chain, files.key] + ([files.pfx] if files.pfx else [])
    return {**detail, "files": [str(path) for path in written]}


# -- script -----------------------------------------------------------------------------


def script_environment(
    config: ScriptConfig, material: DeploymentMaterial, files: DeployedFiles
) -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.update(config.env)
    for key, value in material.metadata().items():
        env[f"OPENSTI_{key.upper()}"] = "" if value is None else str(value)
    env["OPENSTI_CHAIN_FILE"], env["OPENSTI_KEY_FILE"] = str(files.chain), str(files.key)
    env["OPENSTI_PFX_FILE"] = "" if files.pfx is None else str(files.pfx)
    return env


async def _collect(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, int]:
    """Read to the end, keeping at most ``limit`` bytes (a chatty script cannot fill memory)."""
    kept, total = bytearray(), 0
    while chunk := await stream.read(65536):
        total += len(chunk)
        kept += chunk[: max(0, limit - len(kept))]
    return bytes(kept), total


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_script(
    config: ScriptConfig, material: DeploymentMaterial, files: DeployedFiles, timeout: float
) -> dict[str, Any]:
    """Run the command in its own process group; on timeout the whole group is killed."""
    try:
        process = await asyncio.create_subprocess_exec(
            *config.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=script_environment(config, material, files),
            cwd=config.cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise DeliveryFailed(f"cannot run {config.command[0]}: {exc.strerror or exc}") from None
    assert process.stdout is not None
    try:
        output, total = await asyncio.wait_for(
            _collect(process.stdout, config.output_limit), timeout
        )
        code = await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        _kill_group(process)
        await process.wait()
        raise DeliveryFailed(f"script timed out after {timeout:g} s") from None
    finally:
        _kill_group(process)  # Children left behind in the group.
    detail = {
        "exit_code": code,
        "output": output.decode("utf-8", "replace"),
        "output_truncated": total > len(output),
    }
    if code != 0:
        raise DeliveryFailed(f"script exited with status {code}", value=detail)
    return detail


# -- webhook ----------------------------------------------------------------------------


def webhook_signature(key: Secret, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return SIGNATURE_PREFIX + hmac.new(key.reveal(), body, hashlib.sha256).hexdigest()


def webhook_body(config: WebhookConfig, material: DeploymentMaterial, now: dt.datetime) -> bytes:
    document: dict[str, Any] = {
        "event": "certificate.deployed",
        "timestamp": now.isoformat(),
        **material.metadata(),
    }
    if config.include_chain:
        document["chain_pem"] = material.chain_pem.decode("ascii")
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")


async def post_webhook(
    config: WebhookConfig,
    material: DeploymentMaterial,
    key: Secret | None,
    timeout: float,
    now: dt.datetime,
) -> dict[str, Any]:
    body = webhook_body(config, material, now)
    headers = {"content-type": "application/json", "user-agent": "opensti", **dict(config.headers)}
    if key is not None:
        headers[config.signature_header] = webhook_signature(key, body)
    # No proxies from the environment and no redirects: the body goes where it is told.
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        try:
            response = await client.post(config.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryFailed(f"webhook timed out after {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"webhook unreachable: {type(exc).__name__}: {exc}") from None
    detail = {"status": response.status_code}
    if not response.is_success:
        raise DeliveryFailed(f"webhook answered HTTP {response.status_code}", value=detail)
    return detail


# -- running ----------------------------------------------------------------------------


async def run_task(
    task: DeploymentTask,
    material: DeploymentMaterial,
    *,
    secret: Secret | None,
    now: dt.datetime,
    files: DeployedFiles | None = None,
) -> TaskResult:
    """Run one task (no database access); ``files`` are what a script is pointed at."""
    timeout = float(task.timeout_seconds)
    try:
        detail = await asyncio.wait_for(
            _dispatch(task, material, secret, now, files, timeout), timeout + 1
        )
    except TimeoutError:
        return _failed(task, material, f"timed out after {timeout:g} s", {})
    except OpenSTIError as exc:
        detail = exc.value if isinstance(exc.value, dict) else {}
        return _failed(task, material, exc.message, detail)
    return TaskResult(task.id, task.name, task.kind, material.certificate_id, True, None, detail)


def _failed(
    task: DeploymentTask, material: DeploymentMaterial, error: str, detail: dict[str, Any]
) -> TaskResult:
    _log.warning("deployment task %s of %s failed: %s", task.name, material.entry_name, error)
    return TaskResult(task.id, task.name, task.kind, material.certificate_id, False, error, detail)


async def _dispatch(
    task: DeploymentTask,
    material: DeploymentMaterial,
    secret: Secret | None,
    now: dt.datetime,
    files: DeployedFiles | None,
    timeout: float,
) -> dict[str, Any]:
    config = parse_task_config(task.kind, task.config)
    if isinstance(config, DirectoryConfig):
        return await asyncio.to_thread(write_files, config, material, secret)
    if isinstance(config, WebhookConfig):
        return await post_webhook(config, material, secret, timeout, now)
    if files is not None:
        return await run_script(config, material, files, timeout)
    # No directory task wrote the files: give the script a private copy for its run.
    with tempfile.TemporaryDirectory(prefix="opensti-deploy-") as private:
        scratch = DirectoryConfig(Path(private), pfx_file=None)
        await asyncio.to_thread(write_files, scratch, material, None)
        return await run_script(config, material, scratch.files(), timeout)


def _order(task: DeploymentTask) -> tuple[int, str]:
    # Directory tasks first: the files they write are what scripts are pointed at.
    return (0 if task.kind is DeploymentTaskKind.DIRECTORY else 1, task.name)


def _directory_files(task: DeploymentTask) -> DeployedFiles | None:
    """Where a directory task puts the files (None for other kinds or a broken config)."""
    if task.kind is not DeploymentTaskKind.DIRECTORY:
        return None
    try:
        return DirectoryConfig.parse(task.config).files()
    except InvalidInput:
        return None


def _needs_run(task: DeploymentTask, certificate_id: int) -> bool:
    return (
        task.last_certificate_id != certificate_id
        or task.last_outcome is not EventOutcome.SUCCEEDED
    )


def _load(
    session: Session,
    box: SecretBox,
    entry_id: int,
    certificate_id: int | None,
    public_base_url: str | None,
) -> tuple[DeploymentMaterial, list[DeploymentTask]]:
    entry = get_entry_by_id(session, entry_id)
    cert = active_certificate(session, entry_id) if certificate_id is None else None
    if certificate_id is not None:
        cert = get_certificate(session, certificate_id)
        if cert.entry_id != entry_id:
            raise InvalidInput(f"certificate {certificate_id} is not of entry {entry.name!r}")
    if cert is None:
        raise NoActiveCertificate(f"entry {entry.name!r} has no active certificate")
    tasks = [task for task in list_deployment_tasks(session, entry_id) if task.enabled]
    return DeploymentMaterial.of(box, cert, public_base_url=public_base_url), tasks


async def run_deployment_tasks(
    db: Database,
    box: SecretBox,
    entry_id: int,
    *,
    now: dt.datetime,
    certificate_id: int | None = None,
    names: Collection[str] | None = None,
    only_pending: bool = False,
    public_base_url: str | None = None,
) -> Sequence[TaskResult]:
    """Run an entry's enabled tasks for a certificate (default: the active one).

    ``only_pending`` skips tasks that already succeeded for that certificate (a retry
    after a failure). Each run is recorded on its task row and as a ``deploy`` event.
    Nothing here changes a certificate's state, whatever the outcome.
    """
    with db.read_session() as session:
        material, tasks = _load(session, box, entry_id, certificate_id, public_base_url)
        secrets = {task.id: deployment_task_secret(box, task) for task in tasks}
    if names is not None:
        unknown = set(names) - {task.name for task in tasks}
        if unknown:
            raise InvalidInput(f"no enabled deployment task named {sorted(unknown)}")
        tasks = [task for task in tasks if task.name in names]
    results: list[TaskResult] = []
    files: DeployedFiles | None = None
    for task in sorted(tasks, key=_order):
        written = _directory_files(task)
        if only_pending and not _needs_run(task, material.certificate_id):
            files = files or written
            continue
        result = await run_task(task, material, secret=secrets[task.id], now=now, files=files)
        if result.ok:
            files = files or written
        _record(db, entry_id, result, now)
        results.append(result)
    return results


def _record(db: Database, entry_id: int, result: TaskResult, now: dt.datetime) -> None:
    outcome = EventOutcome.SUCCEEDED if result.ok else EventOutcome.FAILED
    with db.session() as session:
        record_task_run(
            session,
            result.task_id,
            outcome,
            at=now,
            certificate_id=result.certificate_id,
            error=result.error,
        )
        record_event(
            session,
            entry_id,
            DEPLOY_STEP,
            outcome,
            at=now,
            error=result.error,
            certificate_id=result.certificate_id,
            detail={"task": result.task_name, "kind": str(result.kind), **result.detail},
        )
