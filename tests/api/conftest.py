"""Fixtures for the STIR API tests: a TLS root for the repository, and the deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._servers import TLSFiles, make_tls_files
from tests.api.api_support import mgmt, repository_site, site_dir
from tests.api.stir_support import Deployment, deployment
from tests.sandbox.conftest import clock, sandbox_factory

__all__ = ["clock", "mgmt", "repository_site", "sandbox_factory", "site_dir"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def site(tls: TLSFiles) -> Iterator[Deployment]:
    with deployment(tls) as running:
        yield running
