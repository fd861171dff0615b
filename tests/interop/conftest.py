"""What every interop module starts from: a DemoPKI signer's files, and its chain on an
HTTPS x5u repository on 127.0.0.1 (module-scoped: each module gets its own)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from opensti.sandbox.pki import DemoPKI
from tests._servers import LocalHTTPServer, Route, TLSFiles, make_tls_files, serve

from .credentials import CHAIN_PATH, Credentials, make_credentials


@pytest.fixture(scope="module")
def workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def pki() -> DemoPKI:
    return DemoPKI(dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module")
def creds(workdir: Path, pki: DemoPKI) -> Credentials:
    return make_credentials(workdir / "signer", pki)


@pytest.fixture(scope="module")
def tls(workdir: Path) -> TLSFiles:
    return make_tls_files(workdir / "tls")


@pytest.fixture(scope="module")
def x5u_server(tls: TLSFiles, creds: Credentials) -> Iterator[LocalHTTPServer]:
    """The STI-CR the peers fetch the x5u from: the signer's chain over HTTPS."""
    with serve(tls) as server:
        server.routes[CHAIN_PATH] = Route.body(creds.chain_pem.read_bytes())
        yield server


@pytest.fixture(scope="module")
def x5u(x5u_server: LocalHTTPServer) -> str:
    return x5u_server.url(CHAIN_PATH)
