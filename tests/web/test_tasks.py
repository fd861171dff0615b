"""Deployment tasks on the entry page: add, edit (the same checks as add, the fields the
form does not show are kept) and delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from opensti.lifecycle.deploy import create_deployment_task
from opensti.store import deployment_task_secret, get_entry, list_deployment_tasks
from tests.lifecycle.acquire_support import World, world
from tests.sandbox.conftest import clock, sandbox_factory
from tests.web.test_pages import post, ui

__all__ = ["clock", "sandbox_factory", "ui", "world"]

pytestmark = pytest.mark.integration


def _tasks(world: World) -> dict[str, Any]:
    with world.app.database.read_session() as session:
        rows = list_deployment_tasks(session, get_entry(session, "east").id)
        return {
            row.name: (
                row.kind.value,
                dict(row.config),
                row.enabled,
                deployment_task_secret(world.app.box, row),
            )
            for row in rows
        }


@pytest.fixture
def entry(world: World) -> str:
    world.app.certificates.add_entry(
        name="east", spc="123H", acme_account=world.ready(), stipa_account_id="123H"
    )
    return "/certificates/east"


async def test_add_edit_and_delete_a_task(
    ui: httpx.AsyncClient, world: World, entry: str, tmp_path: Path
) -> None:
    added = await post(
        ui, entry, f"{entry}/tasks", task_name="files", kind="directory", target=str(tmp_path)
    )
    assert added.status_code == 303
    assert _tasks(world)["files"][:3] == ("directory", {"path": str(tmp_path)}, True)
    page = await ui.get(entry)
    assert 'aria-label="Edit task files"' in page.text

    edit = f"{entry}/tasks/files/edit"
    form = await ui.get(edit)
    assert f'value="{tmp_path}"' in form.text
    before = _tasks(world)
    refused = await post(ui, edit, edit, kind="directory", target="relative/dir", enabled="on")
    assert refused.status_code == 400
    assert "must be an absolute directory" in refused.text
    assert 'value="relative/dir"' in refused.text
    assert _tasks(world) == before

    hook = "https://hooks.example.net/opensti"
    saved = await post(ui, edit, edit, kind="webhook", target=hook, secret="hmac-key-1")
    assert saved.status_code == 303
    kind, config, enabled, secret = _tasks(world)["files"]
    assert (kind, config, enabled) == ("webhook", {"url": hook}, False)
    assert secret is not None
    assert secret.reveal_text() == "hmac-key-1"
    assert "hmac-key-1" not in (await ui.get(edit)).text

    deleted = await post(ui, entry, f"{entry}/tasks/files/delete")
    assert deleted.status_code == 303
    assert _tasks(world) == {}
    missing = await ui.get(edit)
    assert missing.status_code == 404


async def test_edit_keeps_what_the_form_does_not_show(
    ui: httpx.AsyncClient, world: World, entry: str, tmp_path: Path
) -> None:
    """A task made through the API with more settings keeps them when its path changes."""
    with world.app.database.session() as session:
        create_deployment_task(
            session,
            world.app.box,
            "east",
            name="sbc",
            kind="directory",
            config={"path": str(tmp_path), "pfx_file": None, "chain_file": "sbc.pem"},
        )
    edit = f"{entry}/tasks/sbc/edit"
    moved = tmp_path / "moved"
    saved = await post(ui, edit, edit, kind="directory", target=str(moved), enabled="on")
    assert saved.status_code == 303
    assert _tasks(world)["sbc"][1] == {
        "path": str(moved),
        "pfx_file": None,
        "chain_file": "sbc.pem",
    }
    script = await post(ui, edit, edit, kind="script", target="deploy.sh --now", enabled="on")
    assert script.status_code == 400
    assert "the program must be an absolute path" in script.text
