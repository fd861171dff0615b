"""Deployment tasks of an entry and the outcome of their last run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.core.errors import InvalidInput
from opensti.store._common import add, ensure_absent, get_by, get_by_id
from opensti.store._entries import get_entry_by_id
from opensti.store._models import DeploymentTask, DeploymentTaskKind, EventOutcome
from opensti.store._secrets import Secret, SecretBox
from opensti.store._validate import check_name

__all__ = [
    "TASK_SECRET",
    "TaskChange",
    "add_deployment_task",
    "change_deployment_task",
    "delete_deployment_task",
    "deployment_task_secret",
    "get_deployment_task",
    "list_deployment_tasks",
    "record_task_run",
]

TASK_SECRET = "deployment_task.secret"  # noqa: S105  (a label, not a secret)


def add_deployment_task(
    session: Session,
    box: SecretBox,
    entry_id: int,
    *,
    name: str,
    kind: DeploymentTaskKind,
    config: dict[str, Any],
    secret: Secret | None = None,
    timeout_seconds: int = 60,
) -> DeploymentTask:
    """``config`` is shown in the UI and API: put keys and passwords in ``secret``."""
    check_name(name, "deployment task")
    if not 1 <= timeout_seconds <= 3600:
        raise InvalidInput("a task timeout is between 1 and 3600 seconds", value=timeout_seconds)
    get_entry_by_id(session, entry_id)
    ensure_absent(session, DeploymentTask, "deployment task", entry_id=entry_id, name=name)
    task = DeploymentTask(
        entry_id=entry_id,
        name=name,
        kind=kind,
        config=dict(config),
        secret_ciphertext=None if secret is None else box.seal(secret, TASK_SECRET),
        timeout_seconds=timeout_seconds,
    )
    return add(session, task, "deployment task")


@dataclass(frozen=True)
class TaskChange:
    """A task's new settings; ``secret`` None keeps the stored one unless ``clear_secret``."""

    kind: DeploymentTaskKind
    config: dict[str, Any]
    secret: Secret | None = field(default=None, repr=False)
    clear_secret: bool = False
    enabled: bool = True


def change_deployment_task(
    session: Session, box: SecretBox, task: DeploymentTask, change: TaskChange
) -> DeploymentTask:
    """Apply ``change``; a changed target forgets what was deployed to the old one."""
    if task.kind != change.kind or task.config != change.config:
        task.last_certificate_id, task.last_outcome = None, None
    task.kind, task.config, task.enabled = change.kind, dict(change.config), change.enabled
    if change.secret is not None:
        task.secret_ciphertext = box.seal(change.secret, TASK_SECRET)
    elif change.clear_secret:
        task.secret_ciphertext = None
    session.flush()
    return task


def get_deployment_task(session: Session, entry_id: int, name: str) -> DeploymentTask:
    return get_by(session, DeploymentTask, "deployment task", entry_id=entry_id, name=name)


def delete_deployment_task(session: Session, entry_id: int, name: str) -> None:
    session.delete(get_deployment_task(session, entry_id, name))
    session.flush()


def list_deployment_tasks(session: Session, entry_id: int) -> Sequence[DeploymentTask]:
    return session.scalars(
        select(DeploymentTask)
        .where(DeploymentTask.entry_id == entry_id)
        .order_by(DeploymentTask.name)
    ).all()


def deployment_task_secret(box: SecretBox, task: DeploymentTask) -> Secret | None:
    return box.open_optional(task.secret_ciphertext, TASK_SECRET)


def record_task_run(
    session: Session,
    task_id: int,
    outcome: EventOutcome,
    *,
    at: dt.datetime,
    certificate_id: int | None = None,
    error: str | None = None,
) -> DeploymentTask:
    task = get_by_id(session, DeploymentTask, task_id, "deployment task")
    task.last_outcome, task.last_run_at, task.last_error = outcome, at, error
    task.last_certificate_id = certificate_id
    session.flush()
    return task
