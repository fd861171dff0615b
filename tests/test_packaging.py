"""The wheel users install (``pip install .``, README command 1) carries every file the
code reads at run time, not only the modules: an editable install hides a missing one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"

pytestmark = pytest.mark.integration


def _data_files() -> set[str]:
    """Every non-Python file under src/opensti, as a wheel names it."""
    return {
        path.relative_to(SOURCE).as_posix()
        for path in (SOURCE / "opensti").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


def _clean_copy(target: Path) -> Path:
    """The files git would give a fresh clone, as they are in the work tree: no build
    leftovers (an old egg-info's file list would hide missing package data)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_the_wheel_carries_every_data_file(tmp_path: Path) -> None:
    tree = _clean_copy(tmp_path / "tree")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "-q", "-w", str(tmp_path / "dist"), str(tree)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("opensti-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    expected = _data_files()
    assert any(name.startswith("opensti/web/templates/") for name in expected)
    assert expected - packed == set()
