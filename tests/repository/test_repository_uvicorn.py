"""The STI-CR behind a real uvicorn on 127.0.0.1: lifespan loads the chains and polls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn

from opensti.core.certs import load_certificate_chain
from opensti.repository import RepositoryApp, create_repository_app, x5u_for
from tests.lifecycle.lifecycle_support import Store

pytestmark = pytest.mark.integration


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        """The test runner owns the signals."""


@asynccontextmanager
async def _uvicorn(app: RepositoryApp) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_serves_old_and_new_chains_over_a_socket(store: Store) -> None:
    entry = store.entry()
    old = store.certificate(entry, days=2)
    app = create_repository_app(store.db, max_age_cap=3600, refresh_interval=0.05)
    async with _uvicorn(app) as base, httpx.AsyncClient(trust_env=False) as client:
        first = await client.get(x5u_for(old.id, base))
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=3600"
        new = store.certificate(entry, days=2)
        # The poller picks the new chain up; the old one stays served.
        for _ in range(200):
            if app.chains.get(new.id) is not None:
                break
            await asyncio.sleep(0.02)
        responses = [await client.get(x5u_for(c.id, base)) for c in (old, new)]
        not_modified = await client.get(
            x5u_for(new.id, base), headers={"If-None-Match": responses[1].headers["etag"]}
        )
    assert [r.status_code for r in responses] == [200, 200]
    leaves = [load_certificate_chain(r.content).leaf.serial_number for r in responses]
    assert [format(s, "x") for s in leaves] == [old.serial, new.serial]
    assert not_modified.status_code == 304
