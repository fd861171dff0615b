"""The STI-CR behind a real uvicorn on 127.0.0.1: lifespan loads the chains and polls."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from opensti.core.certs import load_certificate_chain
from opensti.repository import create_repository_app, x5u_for
from tests._servers import serve_asgi
from tests.lifecycle.lifecycle_support import Store

pytestmark = [pytest.mark.integration, pytest.mark.db_dialect]


async def test_serves_old_and_new_chains_over_a_socket(store: Store) -> None:
    entry = store.entry()
    old = store.certificate(entry, days=2)
    app = create_repository_app(store.db, max_age_cap=3600, refresh_interval=0.05)
    async with serve_asgi(app, lifespan="on") as base, httpx.AsyncClient(trust_env=False) as client:
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
