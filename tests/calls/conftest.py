"""A store with one entry and its active certificate, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._site import Site, make_site


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    with make_site(tmp_path / "data", database_url=database_url) as made:
        yield made
