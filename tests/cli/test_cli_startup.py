"""A command loads what it needs: ``opensti cert list`` does not import the web
stack, the sandbox or the other commands' modules, and ``opensti passport`` not even
the store (each of them cost every ``opensti`` start time, in scripts and deployment
hooks too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from opensti.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

HEAVY = ("fastapi", "starlette", "uvicorn", "opensti.api", "opensti.web", "opensti.sandbox.server")
OTHER_COMMANDS = (
    "opensti.cli.serve",
    "opensti.cli.demo",
    "opensti.cli.sandbox",
    "opensti.cli.calls",
)


def _modules_after(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout.splitlines()[-1])
    return report["code"], set(report["modules"])


def test_a_store_command_leaves_the_web_stack_and_other_commands_unloaded(tmp_path: Path) -> None:
    code, modules = _modules_after(tmp_path, "cert", "list", "--json")
    assert code == 0
    assert "opensti.cli.cert" in modules
    assert not modules & {*HEAVY, *OTHER_COMMANDS}


def test_a_store_at_head_is_opened_without_alembic(tmp_path: Path) -> None:
    """The first command migrates the new store; the next finds it at head and does
    not load alembic at all (nor does ``opensti serve``, in each of its processes)."""
    code, modules = _modules_after(tmp_path, "cert", "list", "--json")
    assert code == 0
    assert "alembic" in modules
    code, modules = _modules_after(tmp_path, "cert", "list", "--json")
    assert code == 0
    assert "opensti.store" in modules
    assert not any(name == "alembic" or name.startswith(("alembic.", "mako")) for name in modules)


def test_a_passport_command_leaves_the_store_unloaded(tmp_path: Path) -> None:
    code, modules = _modules_after(tmp_path, "passport", "decode", "not-a-passport")
    assert code != 0  # the bad token is refused; what matters is what got loaded
    assert not modules & {*HEAVY, "sqlalchemy", "opensti.store", "opensti.app", "alembic"}


def test_help_lists_every_command_from_the_lazy_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("opensti")), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in ("account", "ca", "cert", "passport", "sandbox", "serve", "worker", "user"):
        assert f"\n  {name} " in result.stdout, result.stdout


def test_every_registered_command_is_in_the_lazy_table() -> None:
    """A command module added without a line in the table would never be loaded."""
    import importlib
    import pkgutil

    import opensti.cli
    from opensti.cli._app import COMMAND_MODULES, app

    for module in pkgutil.iter_modules(opensti.cli.__path__, "opensti.cli."):
        importlib.import_module(module.name)
    registered = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert registered == set(COMMAND_MODULES)
    for name, modules in COMMAND_MODULES.items():
        assert all(m.startswith("opensti.cli.") for m in modules), name
